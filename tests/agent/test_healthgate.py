"""The health check runner (``deploy.health``) against fake probes and a fake clock."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from swarmdeploy.agent.healthgate import MAX_DETAIL_CHARS, Probe, Verdict, http_probe, run_checks
from swarmdeploy.agent.state import HealthPhase
from swarmdeploy.protocol.manifest import HealthCheck


class FakeClock:
    """Wall time that only moves when the runner sleeps (or a probe takes time)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeProbes:
    """Answers from lists (the last answer repeats); ``down_at`` makes the release go down."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        command: list[Probe] | None = None,
        http: list[Probe] | None = None,
        down_at: float | None = None,
    ) -> None:
        self._clock = clock
        self._command = command or [Probe(True)]
        self._http = http or [Probe(True)]
        self.down_at = down_at
        self.calls: list[str] = []

    async def command(self, command: str, timeout_s: float) -> Probe:
        self.calls.append(f"command@{self._clock.now:g}")
        return self._command.pop(0) if len(self._command) > 1 else self._command[0]

    async def http(self, url: str, timeout_s: float) -> Probe:
        self.calls.append(f"http@{self._clock.now:g}")
        return self._http.pop(0) if len(self._http) > 1 else self._http[0]

    def down(self) -> str | None:
        if self.down_at is not None and self._clock.now >= self.down_at:
            return "command 'serve' ended with exit status 1"
        return None


def _run(
    spec: HealthCheck, probes: FakeProbes, clock: FakeClock, phase: HealthPhase | None = None
) -> tuple[Verdict, HealthPhase, list[int]]:
    phase = phase or HealthPhase(started_ms=int(clock.now * 1000))
    saved: list[int] = []
    verdict = asyncio.run(
        run_checks(
            spec,
            phase,
            probes,
            clock=clock,
            sleep=clock.sleep,
            up_since=clock.now,
            on_attempt=lambda: saved.append(phase.attempts_done),
        )
    )
    return verdict, phase, saved


def test_passing_checks_are_healthy_after_the_initial_delay() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock)
    spec = HealthCheck(command="true", http="http://127.0.0.1:1/", initial_delay_s=2)
    verdict, phase, _ = _run(spec, probes, clock)
    assert verdict == Verdict(True)
    assert probes.calls == ["command@1002", "http@1002"]
    assert phase.attempts_done == 1


def test_failing_http_past_its_attempts_gives_the_last_output() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock, http=[Probe(False, "HTTP 500 Internal Server Error: broken")])
    spec = HealthCheck(http="http://127.0.0.1:1/h", interval_s=1, attempts=3)
    verdict, phase, saved = _run(spec, probes, clock)
    assert not verdict.healthy
    assert verdict.reason == (
        "health check failed 3 time(s): GET http://127.0.0.1:1/h: "
        "HTTP 500 Internal Server Error: broken"
    )
    assert probes.calls == ["http@1000", "http@1001", "http@1002"]
    assert saved[0] == 1 and phase.attempts_done == 3


def test_a_late_success_within_the_attempts_is_healthy() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock, command=[Probe(False, "exit status 1"), Probe(True)])
    verdict, phase, _ = _run(HealthCheck(command="check", interval_s=0.5), probes, clock)
    assert verdict.healthy and phase.attempts_done == 2


def test_up_for_fails_when_a_run_command_goes_down() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock, down_at=1003)
    verdict, _, _ = _run(HealthCheck(up_for_s=5), probes, clock)
    assert verdict == Verdict(False, "run command down: command 'serve' ended with exit status 1")


def test_up_for_passes_once_the_commands_stayed_up() -> None:
    clock = FakeClock()
    verdict, _, _ = _run(HealthCheck(up_for_s=5), FakeProbes(clock), clock)
    assert verdict.healthy
    assert clock.now >= 1005


def test_deadline_ends_the_checks_before_the_attempts() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock, command=[Probe(False, "exit status 3: not ready")])
    spec = HealthCheck(command="check", interval_s=4, attempts=10, deadline_s=10)
    verdict, phase, _ = _run(spec, probes, clock)
    assert not verdict.healthy
    assert verdict.reason.startswith("health checks not passed within the deadline of 10 s")
    assert "not ready" in verdict.reason
    assert phase.attempts_done == 3  # at 0, 4 and 8 s


def test_resumed_phase_uses_only_the_attempts_left() -> None:
    clock = FakeClock(now=2000.0)
    phase = HealthPhase(started_ms=1_995_000, attempts_done=2, last_failure="GET x: HTTP 500")
    probes = FakeProbes(clock, http=[Probe(False, "HTTP 500")])
    spec = HealthCheck(http="http://127.0.0.1:1/", interval_s=1, attempts=3)
    verdict, phase, _ = _run(spec, probes, clock, phase)
    assert probes.calls == ["http@2000"]
    assert verdict.reason.startswith("health check failed 3 time(s)")


def test_resumed_phase_with_no_attempts_left_fails_with_the_stored_reason() -> None:
    clock = FakeClock(now=2000.0)
    phase = HealthPhase(started_ms=1_999_000, attempts_done=3, last_failure="GET x: HTTP 500")
    probes = FakeProbes(clock)
    verdict, _, _ = _run(HealthCheck(http="http://127.0.0.1:1/", attempts=3), probes, clock, phase)
    assert probes.calls == []
    assert verdict == Verdict(False, "health check failed 3 time(s): GET x: HTTP 500")


def test_resumed_after_the_deadline_fails_at_once() -> None:
    clock = FakeClock(now=5000.0)
    phase = HealthPhase(started_ms=1_000_000, attempts_done=1)
    probes = FakeProbes(clock)
    verdict, _, _ = _run(HealthCheck(command="c", deadline_s=60), probes, clock, phase)
    assert probes.calls == []
    assert "deadline of 60 s" in verdict.reason


def test_long_output_is_capped_in_the_reason() -> None:
    clock = FakeClock()
    probes = FakeProbes(clock, command=[Probe(False, "x" * 10_000)])
    verdict, _, _ = _run(HealthCheck(command="c", attempts=1), probes, clock)
    assert len(verdict.reason) < MAX_DETAIL_CHARS + 100
    assert verdict.reason.endswith("(truncated)")


class _Status(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"state: " + str(self.status).encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[http.server.HTTPServer]:
    srv = http.server.HTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_http_probe_accepts_2xx_and_refuses_500(server: http.server.HTTPServer) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    assert http_probe(url, 5) == Probe(True, "HTTP 200 OK: state: 200")
    _Status.status = 500
    try:
        assert http_probe(url, 5) == Probe(False, "HTTP 500 Internal Server Error: state: 500")
    finally:
        _Status.status = 200


def test_http_probe_names_a_refused_connection() -> None:
    with socket_port() as port:
        probe = http_probe(f"http://127.0.0.1:{port}/", 2)
    assert not probe.ok and probe.detail.startswith("no answer: ")


class socket_port:
    """A loopback port that nobody listens on (bound, not listening)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
