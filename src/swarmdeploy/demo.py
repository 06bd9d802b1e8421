"""``make demo``: a guided walk through swarmdeploy on an embedded SQLite data dir.

Starts a real manager process on a free loopback port, then exercises the REST API with real
requests — token sets, device registration with freshly generated keys, tags assigned through
the API, a deployment by tag, the per-target state table, logs, metrics and the refusals an
operator should expect — prints what it did and exits 0. ``--keep`` leaves the manager
running (Ctrl+C stops it); ``--data-dir`` keeps the data in a directory of your choice.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from typing import Any

import nacl.signing
import yaml
import zmq

from swarmdeploy.cli.client import ApiError, ManagerClient

_COUNT_PY = b"""#!/usr/bin/env python3
import json
with open('config.json') as f:
    config = json.load(f)
print('loaded config file: %s' % config)
for i in range(1, config['total'] + 1):
    print('hello %d' % i)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _package_b64() -> str:
    """The demo package: a Python script and its config, as in the original's python example."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("count_to_total.py", _COUNT_PY)
        zf.writestr("config.json", b'{"total": 3}')
    return base64.b64encode(buf.getvalue()).decode()


def _say(step: str, detail: str = "") -> None:
    print(f"\n== {step}" + (f"\n   {detail}" if detail else ""), flush=True)


@contextlib.contextmanager
def _manager(data_dir: str, port: int, admin_key: str) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "SWARMDEPLOY_ADMIN_KEY": admin_key}
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", data_dir]
    cmd += ["--http-port", str(port), "--zmq-pub-port", str(_free_port())]
    cmd += ["--zmq-sub-port", str(_free_port())]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_healthy(client: ManagerClient, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise SystemExit(f"the manager exited with status {proc.returncode}:\n{err}")
        with contextlib.suppress(ApiError):
            if client.request("GET", "/health")["status"] == "ok":
                return
        time.sleep(0.1)
    raise SystemExit("the manager did not become healthy in time")


def _register(base: str, token: str, device_id: str, tags: list[str]) -> dict[str, Any]:
    public, _secret = zmq.curve_keypair()
    identity = nacl.signing.SigningKey.generate().verify_key.encode()
    body = {
        "id": device_id,
        "tags": tags,
        "location": {"lat": 50.7374 + secrets.randbelow(100) / 10_000, "lon": 7.0982},
        "publicKey": public.decode(),
        "identityKey": base64.b64encode(identity).decode(),
    }
    with ManagerClient(base, None) as anon:
        doc: dict[str, Any] = anon.request(
            "POST", "/rpc/targets", json=body, headers={"X-Auth-Token": token}
        )
    return doc


def _expect_refusal(what: str, call: Any) -> None:
    try:
        call()
    except ApiError as exc:
        print(f"   refused as expected — {what}: {exc}")
        return
    raise SystemExit(f"expected a refusal for: {what}")


def walk_through(base: str, admin_key: str) -> dict[str, Any]:
    """Exercise the API against a running manager; returns a summary."""
    admin = ManagerClient(base, admin_key)
    _say("token set", "POST /token_sets?name=demo&total=3 (tokens are shown once)")
    tokens = admin.request("POST", "/token_sets", params={"name": "demo", "total": 3})["tokens"]
    print("   tokens:", ", ".join(tokens))

    _say("registration", "three devices register with a token each (POST /rpc/targets)")
    for i, token in enumerate(tokens):
        doc = _register(base, token, f"device-{i}", ["swarm"] if i < 2 else ["lab"])
        print(f"   {doc['id']}: certificate issued, manager key {doc['zeromq']['publicKey'][:8]}…")
    _expect_refusal("a spent token", lambda: _register(base, tokens[0], "device-x", ["swarm"]))

    _say("tags through the API", "PUT /targets/device-2 {tags: [swarm, lab]}")
    admin.request("PUT", "/targets/device-2", json={"tags": ["swarm", "lab"]})
    listing = admin.request("GET", "/targets", params={"tags": "swarm"})
    print("   targets tagged swarm:", ", ".join(t["id"] for t in listing["items"]))

    _say("operator key", "POST /api_keys {name: alice, role: operator}")
    alice = admin.request("POST", "/api_keys", json={"name": "alice", "role": "operator"})
    viewer = admin.request("POST", "/api_keys", json={"name": "bob", "role": "viewer"})
    operator = ManagerClient(base, alice["key"])

    descriptor = {
        "description": "count to total, the python example",
        "debug": True,
        "source": {"zip": _package_b64()},
        "deploy": {
            "install": {"commands": ["chmod +x count_to_total.py"]},
            "run": {"commands": ["./count_to_total.py"], "autoRestart": False},
            "target": {"tags": ["swarm"]},
        },
    }
    _say("deployment by tag", "POST /tasks (YAML) matching tag swarm")
    task = operator.request(
        "POST",
        "/tasks",
        content=yaml.safe_dump(descriptor).encode(),
        headers={"Content-Type": "application/yaml"},
    )
    shown = operator.request("GET", f"/tasks/{task['id']}")
    print(f"   task {task['id']}: status {shown['status']}, matched {shown['match']}")
    for row in shown["targets"]:
        print(f"   {row['id']:<10} {row['role']:<7} {row['state']}")

    _say("refusals an operator should expect")
    with ManagerClient(base, viewer["key"]) as as_viewer:
        _expect_refusal(
            "a viewer cannot deploy",
            lambda: as_viewer.request("POST", "/tasks", json=descriptor),
        )
    bad = {"deploy": {"run": {"commands": ["x"], "restart": True}, "target": {"ids": ["a"]}}}
    _expect_refusal("an unknown field", lambda: operator.request("POST", "/tasks", json=bad))
    _expect_refusal("an unknown target", lambda: admin.request("DELETE", "/targets/nope"))

    _say("logs and metrics", "GET /logs?task=…, GET /metrics")
    logs = admin.request("GET", "/logs", params={"task": task["id"]})
    print(f"   {logs['total']} log line(s) for the task so far")
    metrics = admin.request("GET", "/metrics")
    for line in str(metrics).splitlines():
        if line.startswith(("swarmdeploy_targets", "swarmdeploy_tasks")):
            print("  ", line)

    _say("revocation", "DELETE /targets/device-1 drops its key")
    admin.request("DELETE", "/targets/device-1")
    remaining = admin.request("GET", "/targets")["total"]
    for client in (admin, operator):
        client.close()
    return {"task": task["id"], "targets": remaining, "tokens": len(tokens)}


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the manager running")
    parser.add_argument("--data-dir", help="data directory (default: a temporary one)")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        data_dir = args.data_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="swarmdeploy-demo-")
        )
        port, admin_key = _free_port(), secrets.token_urlsafe(32)
        base = f"http://127.0.0.1:{port}"
        _say("manager", f"swarmdeploy manager --data-dir {data_dir} --http-port {port} (SQLite)")
        proc = stack.enter_context(_manager(data_dir, port, admin_key))
        with ManagerClient(base, None) as probe:
            _wait_healthy(probe, proc, timeout_s=30)
        summary = walk_through(base, admin_key)
        _say(
            "done",
            f"task {summary['task']} stored; {summary['targets']} target(s) left after one "
            f"revocation; {summary['tokens']} tokens spent.",
        )
        if args.keep:
            print(f"\nmanager running at {base} (admin key {admin_key}); Ctrl+C stops it")
            with contextlib.suppress(KeyboardInterrupt):
                proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
