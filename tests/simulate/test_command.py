"""``swarmdeploy simulate`` as a real process against a real manager process on loopback:
simulated agents register, verify and pull a signed task and end in the states the failure
rate asks for; SIGTERM stops them cleanly; a wrong trust anchor spends no token."""

from __future__ import annotations

import base64
import io
import os
import pathlib
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator

import pytest

from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e

AGENTS = 5


@pytest.fixture
def fleet(tmp_path: pathlib.Path) -> Iterator[LocalFleet]:
    """A started manager."""
    with LocalFleet(tmp_path) as f:
        f.start_manager(timeout_s=60)
        yield f


def _simulate(fleet: LocalFleet, *args: str) -> tuple[subprocess.Popen[str], pathlib.Path]:
    out = fleet.root / f"simulate-{len(list(fleet.root.glob('simulate-*')))}.log"
    cmd = [sys.executable, "-m", "swarmdeploy", "simulate", "--manager", fleet.url, "--plain"]
    cmd += ["--trust-anchor", str(fleet.manager_dir / "ca.pem"), *args]
    with out.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    return proc, out


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def _deploy(fleet: LocalFleet, tag: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("payload.bin", os.urandom(300_000))  # two chunks
    descriptor = {
        "source": {"zip": base64.b64encode(buf.getvalue()).decode()},
        "deploy": {"run": {"commands": ["true"]}, "target": {"tags": [tag]}},
    }
    task_id: str = fleet.api.request("POST", "/tasks", json=descriptor)["id"]
    return task_id


def test_failure_rate_one_every_install_fails_with_a_reason(fleet: LocalFleet) -> None:
    proc, out = _simulate(
        fleet, "--agents", str(AGENTS), "--token-set", "load", f"--api-key={fleet.admin_key}",
        "--failure-rate", "1.0", "--install-time", "0.3", "--tags", "load",
    )  # fmt: skip
    ids = [f"sim-load-{i:04d}" for i in range(1, AGENTS + 1)]
    try:
        fleet.wait_online(ids, timeout_s=60)
        task_id = _deploy(fleet, "load")
        fleet.wait_states(task_id, dict.fromkeys(ids, "install_failed"), timeout_s=60)
        reasons = {t["reason"] for t in fleet.task(task_id)["targets"]}
        assert reasons == {"simulated install failure (failure rate 1)"}
        markers = fleet.logs(task=task_id)
        assert any("simulated install failure" in line["output"] for line in markers)
    finally:
        status = _stop(proc)
    assert status == 0, out.read_text()
    assert f"{AGENTS}/{AGENTS} registered" in out.read_text()
    # every agent said bye: the manager lists them offline at once
    wait_for(lambda: not any(fleet.target(i)["online"] for i in ids), timeout_s=30,
             what="simulated agents offline after bye")  # fmt: skip


def test_failure_rate_zero_with_tokens_of_an_existing_set_every_agent_exits(
    fleet: LocalFleet,
) -> None:
    tokens = fleet.tokens("existing", AGENTS)
    tokens_file = fleet.root / "tokens.txt"
    tokens_file.write_text("# from POST /token_sets\n" + "\n".join(tokens) + "\n")
    proc, out = _simulate(
        fleet, "--agents", str(AGENTS), "--token-set", "existing",
        "--tokens-file", str(tokens_file), "--failure-rate", "0.0", "--id-prefix", "ok-",
    )  # fmt: skip
    ids = [f"ok-{i:04d}" for i in range(1, AGENTS + 1)]
    try:
        fleet.wait_online(ids, timeout_s=60)
        task_id = _deploy(fleet, "simulated")
        fleet.wait_states(task_id, dict.fromkeys(ids, "exited"), timeout_s=60)
    finally:
        status = _stop(proc)
    assert status == 0, out.read_text()


def test_untrusted_manager_ca_refused_before_any_token_is_used(fleet: LocalFleet) -> None:
    anchor = fleet.root / "other-ca.txt"
    anchor.write_text("ed25519:" + base64.b64encode(os.urandom(32)).decode() + "\n")
    cmd = [sys.executable, "-m", "swarmdeploy", "simulate", "--manager", fleet.url, "--plain"]
    cmd += ["--agents", "2", "--token-set", "never", f"--api-key={fleet.admin_key}"]
    cmd += ["--trust-anchor", str(anchor)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    assert "does not match --trust-anchor" in done.stderr
    with pytest.raises(ApiError) as exc:
        fleet.api.request("GET", "/token_sets/never")
    assert exc.value.status == 404


def test_existing_token_set_without_its_tokens_names_tokens_file(fleet: LocalFleet) -> None:
    fleet.tokens("taken", 1)
    cmd = [sys.executable, "-m", "swarmdeploy", "simulate", "--manager", fleet.url, "--plain"]
    cmd += ["--agents", "1", "--token-set", "taken", f"--api-key={fleet.admin_key}"]
    cmd += ["--trust-anchor", str(fleet.manager_dir / "ca.pem")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    assert "--tokens-file" in done.stderr and "'taken'" in done.stderr


def test_duration_ends_the_run_by_itself_with_status_0(fleet: LocalFleet) -> None:
    proc, out = _simulate(
        fleet, "--agents", "1", "--token-set", "short", f"--api-key={fleet.admin_key}",
        "--duration", "3",
    )  # fmt: skip
    try:
        status = proc.wait(timeout=90)
    finally:
        _stop(proc)
    assert status == 0, out.read_text()
    assert "simulator stopped:" in out.read_text()
