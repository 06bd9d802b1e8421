"""Agent idle memory: RSS of a real ``swarmdeploy agent`` process connected over CurveZMQ.

``python -m bench agent [--idle-s 5] [--out FILE]``

A tiny manager runs in this process: the registration endpoint (``POST /rpc/targets`` on
127.0.0.1, a stub answering like the real manager, with a real Ed25519 CA) and the manager
side of the CurveZMQ transport with the test-side protocol peer
(``tests/agent/fake_manager.py``: ``welcome``, acks, manifests and chunks). The agent runs
with the CA as its trust anchor (``--trust-anchor``, not in lab mode), exactly as a device.
Three states, each after ``--idle-s`` seconds of idling (heartbeats and health reports):

* ``first_start_with_registration``: the first start, which registers over plain HTTP (a
  registration with an ``https://`` manager also needs OpenSSL);
* ``registered_restart``: a restart of the registered agent (the steady state of a device);
* ``after_deployment``: the same process after a signed deployment -- a zip of 1 MB
  (announce, accept, chunked pull, SHA-256, signature check, unpack, one install command)
  whose run command keeps running, supervised, while the agent idles;
* ``restart_with_deployment``: a restart with that deployment installed (its files and
  signature checked again, its run command started again): what a device in the field
  usually runs as.

VmRSS and VmHWM (``/proc/<pid>/status``), PSS (``/proc/<pid>/smaps_rollup``) and the CPU
time the process used so far (with its waited-for children, e.g. the unpacking child) are
read then and saved to ``bench/results/agent.json``, with the deployment's time from the
announcement to ``running``. Target (issue 3): under 30 MB in every state.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import msgspec
import psutil
from tests.agent.fake_manager import FakeManager
from tests.agent.registration_server import (
    Script,
    new_ca,
    registration_answer,
    registration_server,
)
from tests.crypto.signing_rig import operator_cert

from swarmdeploy.crypto.ca import CertificateAuthority
from swarmdeploy.crypto.curve import generate_keypair
from swarmdeploy.crypto.operator import seed_signer
from swarmdeploy.crypto.signing import sign_manifest
from swarmdeploy.protocol.manifest import encode_manifest
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import ManagerLinkConfig
from swarmdeploy.transport.zmq import ZmqManagerTransport

RESULTS = Path(__file__).parent / "results" / "agent.json"
TARGET = "bench-agent"
TARGET_MB = 30.0
DAY_MS = 86_400_000
PAYLOAD_BYTES = 1 << 20


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (also in MiB), VmHWM (peak) and PSS of ``pid`` in MB (10^6 bytes)."""
    status = Path(f"/proc/{pid}/status").read_text()
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()

    def kb(pattern: str, text: str) -> float:
        match = re.search(pattern + r":\s+(\d+) kB", text)
        return int(match.group(1)) * 1024 / 1e6 if match else 0.0

    rss = kb("VmRSS", status)
    return {
        "rss_mb": round(rss, 1),
        "rss_mib": round(rss * 1e6 / (1 << 20), 1),
        "peak_rss_mb": round(kb("VmHWM", status), 1),
        "pss_mb": round(kb("Pss", rollup), 1),
        "cpu_s": cpu_seconds(pid),
    }


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` so far, with that of its children it waited for (user + system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return round(sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK"), 2)


async def _wait(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the agent did not get there in time")
        await asyncio.sleep(0.05)


def _env(data_dir: Path, url: str, anchor: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}
    env.update(
        {
            "SWARMDEPLOY_AGENT_DATA_DIR": str(data_dir),
            "SWARMDEPLOY_AGENT_MANAGER": url,
            "SWARMDEPLOY_AGENT_TOKEN": "abcd-efgh-ijkl",
            "SWARMDEPLOY_AGENT_ID": TARGET,
            "SWARMDEPLOY_AGENT_TRUST_ANCHOR": str(anchor),
            "SWARMDEPLOY_AGENT_HEALTH_INTERVAL_S": "1",
            "SWARMDEPLOY_AGENT_RECONNECT_IVL_MAX_S": "0.5",
            "SWARMDEPLOY_AGENT_DISK_MARGIN_BYTES": "0",
            "SWARMDEPLOY_AGENT_LOW_DISK_BYTES": "0",
            "SWARMDEPLOY_AGENT_LOG_LEVEL": "WARNING",
        }
    )
    return env


def _package() -> bytes:
    """A zip like the original's examples: an incompressible payload and a service script."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("payload.bin", os.urandom(PAYLOAD_BYTES))
        zf.writestr("service.sh", "#!/bin/sh\necho service up\nexec sleep 600\n")
    return buffer.getvalue()


class World:
    """The tiny manager: ZeroMQ transport, protocol peer, CA and an operator it certified."""

    def __init__(self, transport: ZmqManagerTransport, manager: FakeManager) -> None:
        self.transport = transport
        self.manager = manager
        self.ca: CertificateAuthority = new_ca()
        self.seed = os.urandom(32)
        now = time.time_ns() // 1_000_000
        self.certificate = operator_cert(
            self.seed, ca=self.ca, not_before_ms=now - DAY_MS, not_after_ms=now + DAY_MS
        )

    async def deploy(self, task_id: str, sequence: int) -> float:
        """Add, sign and announce a deployment; wait until its run command is running.
        Returns the seconds from the announcement to ``running``."""
        served = self.manager.add_task(
            task_id,
            archive=_package(),
            install=["chmod +x service.sh && wc -c payload.bin"],
            run=["./service.sh"],
            debug=False,
        )
        now = time.time_ns() // 1_000_000
        facts = {"sequence": sequence, "target_ids": [TARGET], "created_at_ms": now - 1000,
                 "expires_at_ms": now + DAY_MS}  # fmt: skip
        served.manifest = msgspec.structs.replace(served.manifest, **facts)
        served.manifest_bytes = encode_manifest(served.manifest)
        served.signature, served.certificate = sign_manifest(
            served.manifest_bytes, seed_signer(self.seed), self.certificate
        )
        started = time.monotonic()
        await self.manager.announce(TARGET, task_id)
        states = (TargetState.RUNNING, TargetState.INSTALL_FAILED, TargetState.DECLINED)
        await _wait(lambda: self.manager.state(TARGET, task_id) in states, 60)
        if self.manager.state(TARGET, task_id) is not TargetState.RUNNING:
            reason = self.manager.reason(TARGET, task_id)
            raise RuntimeError(f"the bench deployment did not run: {reason}")
        return round(time.monotonic() - started, 3)


class Agent:
    """One agent process (``python -m swarmdeploy.entry agent``), stderr to ``log``."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "swarmdeploy.entry", "agent"], env=env, stderr=err
            )

    async def idle_figures(self, world: World, idle_s: float) -> dict[str, float]:
        """Idle ``idle_s`` seconds, then read the memory figures."""
        await asyncio.sleep(idle_s)
        figures = memory_mb(self.proc.pid)
        figures["health_reports"] = float(len(world.manager.health))
        return figures

    def service_running(self) -> bool:
        """Whether the deployed service (``sleep 600``) runs below the agent again."""
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
            return any(c.cmdline()[-2:] == ["sleep", "600"] for c in children)
        except psutil.Error:
            return False

    async def stop(self) -> None:
        """SIGTERM and wait; a non-zero exit status is an error."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        if status != 0:
            raise RuntimeError(f"the agent exited with {status}; see {self.log}")


async def _started(world: World, env: dict[str, str], log: Path) -> Agent:
    hellos = len(world.manager.hellos)
    agent = Agent(env, log)
    try:
        await _wait(lambda: len(world.manager.hellos) > hellos, 30)
    except BaseException:
        await agent.stop()
        raise
    return agent


async def measure(world: World, workdir: Path, idle_s: float) -> dict[str, dict[str, float]]:
    """The three states of the module docstring, in order, on one data dir."""
    keys = world.transport.config.keys
    answer = registration_answer(TARGET, keys.public, world.ca, world.transport.ports)
    script = Script([(201, {}, answer)])
    anchor = workdir / "anchor.pem"
    anchor.write_bytes(world.ca.cert_pem())
    log = workdir / "agent.log"
    figures: dict[str, dict[str, float]] = {}
    with registration_server(script) as url:
        env = _env(workdir / "agent", url, anchor)
        allow = asyncio.create_task(_allow_after_registration(world.transport, script))
        agent = await _started(world, env, log)
        try:
            figures["first_start_with_registration"] = await agent.idle_figures(world, idle_s)
        finally:
            await agent.stop()
            await allow
    agent = await _started(world, env, log)
    try:
        figures["registered_restart"] = await agent.idle_figures(world, idle_s)
        deploy_s = await world.deploy("bench-deploy", sequence=1)
        figures["after_deployment"] = await agent.idle_figures(world, idle_s)
        figures["after_deployment"]["announce_to_running_s"] = deploy_s
    finally:
        await agent.stop()
    agent = await _started(world, env, log)
    try:
        await _wait(agent.service_running, 30)
        figures["restart_with_deployment"] = await agent.idle_figures(world, idle_s)
    finally:
        await agent.stop()
    return figures


async def run(idle_s: float) -> dict[str, dict[str, float]]:
    """Start the tiny manager, measure the three states; return the figures."""
    keys = generate_keypair()
    transport = ZmqManagerTransport(ManagerLinkConfig(keys=keys, zmq_sub_port=0, zmq_pub_port=0))
    await transport.start()
    manager = FakeManager(transport)
    await manager.start()
    try:
        with tempfile.TemporaryDirectory(prefix="sd-bench-agent-") as tmp:
            return await measure(World(transport, manager), Path(tmp), idle_s)
    finally:
        await manager.close()


async def _allow_after_registration(transport: ZmqManagerTransport, script: Script) -> None:
    await _wait(lambda: bool(script.requests), 30)
    await transport.allow(TARGET, script.requests[0].body["publicKey"])


def main(argv: list[str]) -> int:
    """Run the benchmark, print the figures and write them to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m bench agent")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.idle_s))
    meets = all(values["rss_mb"] < TARGET_MB for values in figures.values())
    document = {
        "benchmark": "agent idle memory (ZeroMQ transport)",
        "idle_s": args.idle_s,
        "target_rss_mb": TARGET_MB,
        "meets_target": meets,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for name, values in figures.items():
        print(
            f"{name:32s} RSS {values['rss_mb']:5.1f} MB ({values['rss_mib']:.1f} MiB)"
            f"  PSS {values['pss_mb']:5.1f} MB"
            f"  peak {values['peak_rss_mb']:5.1f} MB  CPU {values['cpu_s']:.2f} s"
        )
    print(f"target: RSS < {TARGET_MB:.0f} MB in every state -> {'met' if meets else 'NOT met'}")
    return 0
