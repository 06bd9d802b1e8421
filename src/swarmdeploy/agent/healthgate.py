"""Health checks that gate a new release (``deploy.health``, docs/protocol.md §4.3).

:func:`run_checks` decides, from the signed :class:`~swarmdeploy.protocol.manifest.HealthCheck`
and the persisted :class:`~swarmdeploy.agent.state.HealthPhase`, whether a freshly started
release is healthy. It does no I/O itself: the checks go through :class:`Probes` (the real
ones are :class:`DeviceProbes`), time through a wall clock and a sleep, so that tests drive it
with fakes.

The rules:

* the first attempt runs ``initial_delay_s`` after the run commands first started
  (``phase.started_ms``), then one every ``interval_s``;
* an attempt runs the ``command`` check and asks the ``http`` URL; it passes when both do;
* with ``up_for_s`` the run commands must also have stayed up that long in this agent
  process (after an agent restart the window starts again);
* a run command that ends or crashes during the checks fails them at once;
* every attempt is counted and persisted *before* it runs (``on_attempt``), so an agent
  killed during the checks resumes with the attempts it has left, not with new ones;
* ``deadline_s`` after ``phase.started_ms`` the checks fail whatever is left.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from swarmdeploy.agent.output import OutputLine
from swarmdeploy.agent.process import Launcher
from swarmdeploy.agent.runner import SequenceConfig, run_command
from swarmdeploy.agent.state import HealthPhase
from swarmdeploy.protocol.manifest import HealthCheck

#: Most characters of a check's output kept in the reason (the manager caps reasons too).
MAX_DETAIL_CHARS = 1024
#: Longest a single command or HTTP check may take (it is also cut at the deadline).
MAX_CHECK_S = 30.0
#: How often a wait looks whether a run command went down.
POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Probe:
    """The outcome of one check: ``ok`` and what it said (capped)."""

    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of the checks: healthy, or not with the failing check's reason."""

    healthy: bool
    reason: str = ""


class Probes(Protocol):
    """The checks on the device."""

    async def command(self, command: str, timeout_s: float) -> Probe:
        """Run ``command`` (sandboxed like the run commands); ok when it exits 0."""

    async def http(self, url: str, timeout_s: float) -> Probe:
        """GET ``url``; ok for a 2xx answer."""

    def down(self) -> str | None:
        """Why the release is not up (a run command ended or crashed), or None."""


def cap(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` cut to ``limit`` characters (marked)."""
    return text if len(text) <= limit else text[: limit - 15] + " ...(truncated)"


async def run_checks(
    spec: HealthCheck,
    phase: HealthPhase,
    probes: Probes,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    up_since: float,
    on_attempt: Callable[[], object],
) -> Verdict:
    """Run the checks of ``spec`` (module docstring) from where ``phase`` stands; ``clock``
    is wall time in seconds, ``up_since`` when the run commands (re)started by that clock.
    ``phase`` is updated in place and ``on_attempt`` persists it before every attempt."""
    started = phase.started_ms / 1000
    deadline_at = started + spec.deadline_s
    waited = await _wait_until(started + spec.initial_delay_s, deadline_at, probes, clock, sleep)
    if waited is not None:
        return waited
    while phase.attempts_done < spec.attempts:
        now = clock()
        if now >= deadline_at:
            break
        phase.attempts_done += 1
        on_attempt()
        failed = await _attempt(spec, probes, min(MAX_CHECK_S, max(deadline_at - now, 0.1)))
        down = probes.down()
        if down is not None:
            return Verdict(False, f"run command down: {down}")
        if failed is None:
            return await _stay_up(spec, probes, clock, sleep, up_since, deadline_at)
        phase.last_failure = failed
        on_attempt()
        if phase.attempts_done < spec.attempts:
            waited = await _wait_until(clock() + spec.interval_s, deadline_at, probes, clock, sleep)
            if waited is not None:
                return waited
    return Verdict(False, _given_up(spec, phase, clock() >= deadline_at))


def _given_up(spec: HealthCheck, phase: HealthPhase, late: bool) -> str:
    last = f": {phase.last_failure}" if phase.last_failure else ""
    if late and phase.attempts_done < spec.attempts:
        return f"health checks not passed within the deadline of {spec.deadline_s:g} s{last}"
    return f"health check failed {phase.attempts_done} time(s){last}"


async def _attempt(spec: HealthCheck, probes: Probes, timeout_s: float) -> str | None:
    """One attempt: None if the command and HTTP checks passed, else why not."""
    if spec.command:
        probe = await probes.command(spec.command, timeout_s)
        if not probe.ok:
            return cap(f"command {spec.command!r}: {probe.detail}")
    if spec.http:
        probe = await probes.http(spec.http, timeout_s)
        if not probe.ok:
            return cap(f"GET {spec.http}: {probe.detail}")
    return None


async def _stay_up(
    spec: HealthCheck,
    probes: Probes,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
    up_since: float,
    deadline_at: float,
) -> Verdict:
    """The checks passed; with ``up_for_s`` the run commands must stay up long enough."""
    if not spec.up_for_s:
        return Verdict(True)
    if up_since + spec.up_for_s > deadline_at:
        return Verdict(
            False,
            f"the run commands cannot stay up {spec.up_for_s:g} s before the deadline "
            f"of {spec.deadline_s:g} s",
        )
    waited = await _wait_until(up_since + spec.up_for_s, deadline_at + 1, probes, clock, sleep)
    return waited or Verdict(True)


async def _wait_until(
    when: float,
    deadline_at: float,
    probes: Probes,
    clock: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]],
) -> Verdict | None:
    """Sleep until ``when`` (not past ``deadline_at``) watching the run commands: a
    :class:`Verdict` if one went down meanwhile, else None."""
    end = min(when, deadline_at)
    while True:
        reason = probes.down()
        if reason is not None:
            return Verdict(False, f"run command down: {reason}")
        left = end - clock()
        if left <= 0:
            return None
        await sleep(min(left, POLL_S))


class DeviceProbes:
    """The real checks: the command through the run stage's sandbox launcher, HTTP with
    :mod:`http.client` against the device itself (no redirect is followed)."""

    def __init__(
        self,
        *,
        cwd: Path,
        env: dict[str, str],
        launcher: Callable[[], Launcher],
        config: SequenceConfig,
        down: Callable[[], str | None],
    ) -> None:
        self._cwd = cwd
        self._env = env
        self._launcher = launcher
        self._config = config
        self._down = down

    async def command(self, command: str, timeout_s: float) -> Probe:
        """Run ``command`` to its end or ``timeout_s``; its output (capped) is the detail."""
        lines: list[str] = []
        size = 0

        def keep(line: OutputLine) -> None:
            nonlocal size
            if size < MAX_DETAIL_CHARS:
                lines.append(line.text)
                size += len(line.text) + 1

        launcher = await asyncio.to_thread(self._launcher)
        config = SequenceConfig(
            timeout_s=timeout_s,
            grace_s=self._config.grace_s,
            max_line_bytes=self._config.max_line_bytes,
        )
        result = await run_command(
            command, cwd=self._cwd, env=self._env, on_line=keep, config=config, launcher=launcher
        )
        output = cap("\n".join(lines).strip())
        if result.ok:
            return Probe(True, output)
        if result.timed_out:
            why = f"timed out after {timeout_s:g} s"
        elif result.exit_code is None:
            why = result.error or "could not be started"
        else:
            why = f"exit status {result.exit_code}"
        return Probe(False, f"{why}: {output}" if output else why)

    async def http(self, url: str, timeout_s: float) -> Probe:
        """GET ``url`` (in a thread); ok for 2xx. The detail is the status and the start of
        the body, or the connection error."""
        return await asyncio.to_thread(http_probe, url, timeout_s)

    def down(self) -> str | None:
        """Why a run command is down, if one is."""
        return self._down()


def http_probe(url: str, timeout_s: float) -> Probe:
    """GET ``url`` once (blocking); ok for a 2xx status. :mod:`http.client` is imported
    here: with the email package it pulls in, it costs every agent about 1 MB of memory,
    and only agents running an HTTP health check need it."""
    import http.client

    parts = urllib.parse.urlsplit(url)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        conn.request("GET", path, headers={"User-Agent": "swarmdeploy-agent health check"})
        response = conn.getresponse()
        body = response.read(MAX_DETAIL_CHARS).decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        return Probe(False, cap(f"no answer: {exc}"))
    finally:
        conn.close()
    text = f"HTTP {response.status} {response.reason}"
    detail = cap(f"{text}: {body}" if body else text)
    return Probe(200 <= response.status < 300, detail)
