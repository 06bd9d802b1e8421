"""The REST API at fleet scale: list and read routes with 5,000 targets, and ``POST /tasks``.

``python -m bench api [--targets 5000] [--requests 200] [--posts 200]
[--database sqlite|postgresql|URL] [--out FILE]``

A real ``swarmdeploy manager`` process (SQLite by default; ``--database postgresql`` starts
the test suite's throw-away PostgreSQL server) on a database seeded through the storage API
before it starts: ``--targets`` targets with tags, a health report (OS, agent version, trust,
a GPS position on every other one), a location on every third; then, through the API,
signed tasks: one to 1,000 targets and one to every target, plus three small ones of other
apps; per-target states of the two large tasks are spread over the lifecycle (written
through storage while the manager is stopped). Then, sequentially over one keep-alive
connection, ``--requests`` requests each of

* ``GET /targets?perPage=1000`` (pages 1..5 in turn),
* ``GET /targets?tags=site-3&perPage=1000`` (a tenth of the fleet),
* ``GET /tasks/{id}`` of the task to every target,
* ``GET /tasks``,

and ``--posts`` signed ``POST /tasks`` matching 1,000 targets (time until answered). Each
route's p50/p95/p99/max and body size are saved to ``bench/results/api.json`` under the
database's name (``sqlite``, ``postgresql``), with the load average of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import io
import json
import os
import secrets
import statistics
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import zmq
from tests.cli.manager_proc import free_port, running_manager

from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import (
    ContactWrite,
    Location,
    StateWrite,
    TargetRecord,
    WriteBatch,
)

RESULTS = Path(__file__).parent / "results" / "api.json"
#: Target ids are zero-padded so that id order is numeric order.
ID_FORMAT = "dev-{:05d}"
#: The states the two large tasks' rows are spread over (every one the lifecycle has).
STATES = (
    "pending", "announced", "accepted", "transferring", "installing", "installed",
    "running", "exited", "failed", "declined", "install_failed", "stopped", "expired",
)  # fmt: skip
_CHUNK = 500


def _tags(i: int) -> list[str]:
    tags = ["fleet", f"site-{i % 10}", f"batch-{i % 7}"]
    if i < 1000:
        tags.append("k1000")
    if i % 4 == 0:
        tags.append("camera")
    return tags


def _health(i: int, now: int) -> dict[str, Any]:
    """A health report as the agent link stores it (unknown optional fields in ``__extra__``)."""
    health: dict[str, Any] = {
        "cpu_percent": 3.5 + i % 50,
        "load_1m": 0.25,
        "mem_total_bytes": 4 << 30,
        "mem_available_bytes": 3 << 30,
        "disk_total_bytes": 32 << 30,
        "disk_free_bytes": 20 << 30,
        "agent_rss_bytes": 30 << 20,
        "os": "Debian GNU/Linux 12 (bookworm)",
        "arch": "aarch64" if i % 3 else "x86_64",
        "agent_version": "0.9.0",
        "__extra__": {
            "transport": "zmq",
            "security": {
                "mode": "verified",
                "anchors": ["sha256:" + "ab" * 32],
                "revocation_list": 2,
                "terminal": "sandboxed",
                "on_revoked": "keep",
                "sandbox": "bwrap",
                "confinement": {
                    "seccomp": True,
                    "limits": {"mechanism": "rlimit", "processes": 256, "openFiles": 1024},
                },
            },
        },
    }
    if i % 2 == 0:
        health["position"] = {
            "lat": 45.0 + (i % 100) / 1000,
            "lon": 7.6 + (i % 77) / 1000,
            "alt_m": 240.5,
            "error_m": 4.0,
            "at_ms": now,
            "source": "gpsd",
        }
    return health


async def _seed_targets(url: str, count: int) -> None:
    """``count`` targets registered with tokens, then one health report each (batched)."""
    storage = open_storage(url)
    await storage.open()
    try:
        now = int(time.time() * 1000)
        tokens = [secrets.token_bytes(16) for _ in range(count)]
        hashes = [hashlib.sha256(t).digest() for t in tokens]
        await storage.create_token_set("bench", hashes, created_at=now, expires_at=now + 3_600_000)
        for i, token_hash in enumerate(hashes):
            public, _ = zmq.curve_keypair()
            record = TargetRecord(
                id=ID_FORMAT.format(i),
                curve_key=public.decode(),
                identity_key=base64.b64encode(secrets.token_bytes(32)).decode(),
                created_at=now,
                updated_at=now,
                name=f"Device {i}",
                tags=tuple(_tags(i)),
                location=Location(45.1 + i / 1e5, 7.7) if i % 3 == 0 else None,
            )
            await storage.register_target(token_hash, record, now=now)
        for start in range(0, count, _CHUNK):
            contacts = [
                ContactWrite(ID_FORMAT.format(i), now, _health(i, now))
                for i in range(start, min(count, start + _CHUNK))
            ]
            await storage.commit_batch(WriteBatch(contacts=contacts))
    finally:
        await storage.close()


async def _spread_states(url: str, task_ids: list[str]) -> None:
    """Every row of ``task_ids`` moved to one of :data:`STATES` (round robin)."""
    storage = open_storage(url)
    await storage.open()
    try:
        now = int(time.time() * 1000)
        for task_id in task_ids:
            rows = await storage.task_targets(task_id)
            writes = [
                StateWrite(task_id, r.target_id, STATES[n % len(STATES)], now,
                           reason="bench: disk full" if STATES[n % len(STATES)] == "failed" else "")
                for n, r in enumerate(rows)
            ]  # fmt: skip
            for start in range(0, len(writes), _CHUNK):
                await storage.commit_batch(WriteBatch(states=writes[start : start + _CHUNK]))
    finally:
        await storage.close()


def _zip_b64() -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("run.sh", "#!/bin/sh\necho hello\n")
    return base64.b64encode(buf.getvalue()).decode()


def _descriptor(tags: list[str], app: str, zip_b64: str) -> dict[str, Any]:
    return {
        "description": f"bench api {app}",
        "app": app,
        "source": {"zip": zip_b64},
        "deploy": {"run": {"commands": ["sh run.sh"]}, "target": {"tags": tags}},
    }


def _post(http: httpx.Client, descriptor: dict[str, Any]) -> str:
    resp = http.post("/tasks", json=descriptor)
    if resp.status_code != 201:
        raise RuntimeError(f"POST /tasks: {resp.status_code} {resp.text[:300]}")
    return str(resp.json()["id"])


def _figures(times_s: list[float], sizes: list[int]) -> dict[str, Any]:
    ms = sorted(t * 1000 for t in times_s)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "requests": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(cuts[94], 1),
        "p99_ms": round(cuts[98], 1),
        "max_ms": round(ms[-1], 1),
        "body_bytes": round(statistics.median(sizes)),
    }


def _manager(base: str) -> psutil.Process:
    port = base.rsplit(":", 1)[1]
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "manager" in cmdline and port in cmdline:
            return proc
    raise RuntimeError(f"no manager process on port {port}")


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _timed(
    http: httpx.Client, method: str, paths: list[str], count: int, body: Any = None
) -> dict[str, Any]:
    """``count`` requests, cycling through ``paths``; each must succeed. Besides the
    latencies, the manager's CPU time per request (robust against a loaded machine)."""
    proc = _manager(str(http.base_url).rstrip("/"))
    cpu_before = _cpu_s(proc)
    times, sizes = [], []
    for n in range(count):
        path = paths[n % len(paths)]
        started = time.perf_counter()
        resp = http.request(method, path, json=body)
        content = resp.content
        times.append(time.perf_counter() - started)
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {resp.status_code} {resp.text[:300]}")
        sizes.append(len(content))
    cpu_ms = (_cpu_s(proc) - cpu_before) * 1000 / count
    return {**_figures(times, sizes), "manager_cpu_ms_per_request": round(cpu_ms, 1)}


def _measure(base: str, key: str, big: str, args: argparse.Namespace) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    pages = -(-args.targets // 1000)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
        list_paths = [f"/targets?perPage=1000&page={p}" for p in range(1, pages + 1)]
        _timed(http, "GET", list_paths, 2 * pages)  # warm-up: caches, first-use imports
        out["targets_per_page_1000"] = _timed(http, "GET", list_paths, args.requests)
        tagged = ["/targets?tags=site-3&perPage=1000"]
        out["targets_by_tag"] = _timed(http, "GET", tagged, args.requests)
        out["task_get_all_targets"] = _timed(http, "GET", [f"/tasks/{big}"], args.requests)
        out["tasks_list"] = _timed(http, "GET", ["/tasks"], args.requests)
        descriptor = _descriptor(["k1000"], "bench-post", _zip_b64())
        out["task_post_1000_targets"] = _timed(http, "POST", ["/tasks"], args.posts, descriptor)
    return out


@contextlib.contextmanager
def _database(kind: str, data_dir: Path) -> Iterator[str]:
    """The database URL: the manager's default SQLite file, a fresh database on a
    throw-away PostgreSQL server, or the URL given (it must be empty)."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'swarmdeploy.db'}"
        return
    if kind != "postgresql":
        yield kind
        return
    from tests.fixtures_pg import start_pg_server  # the test suite's throw-away server

    server = start_pg_server()
    try:
        yield server.create_database("api")
    finally:
        server.stop()


def _manager_args(url: str) -> list[str]:
    return ["--database", url, "--zmq-pub-port", str(free_port()),
            "--zmq-sub-port", str(free_port()), "--no-gui"]  # fmt: skip


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Seed, create the tasks, spread their states, then measure (see the module doc)."""
    data_dir = root / "data"
    data_dir.mkdir()
    with _database(args.database, data_dir) as url:
        started = time.monotonic()
        asyncio.run(_seed_targets(url, args.targets))
        seeded_s = time.monotonic() - started
        zip_b64 = _zip_b64()
        with running_manager(data_dir, *_manager_args(url)) as (base, key):
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=base, headers=headers, timeout=120) as http:
                for app, tags in (("web", ["site-1"]), ("sensor", ["camera"]), ("ui", ["batch-2"])):
                    _post(http, _descriptor(tags, app, zip_b64))
                k1000 = _post(http, _descriptor(["k1000"], "k1000", zip_b64))
                big = _post(http, _descriptor(["fleet"], "fleet", zip_b64))
        asyncio.run(_spread_states(url, [k1000, big]))
        with running_manager(data_dir, *_manager_args(url)) as (base, key):
            if args.pause_s:
                print(f"manager at {base}; measuring in {args.pause_s} s", flush=True)
                time.sleep(args.pause_s)  # a benchmark: time to attach a profiler by hand
            figures = _measure(base, key, big, args)
    return {
        "targets": args.targets,
        "seed_s": round(seeded_s, 1),
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        **figures,
    }


def main(argv: list[str]) -> int:
    """Run the benchmark; print and save the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench api")
    parser.add_argument("--targets", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=200, help="per GET route")
    parser.add_argument("--posts", type=int, default=200, help="POST /tasks to 1,000 targets")
    parser.add_argument("--database", default="sqlite", help="sqlite, postgresql or a URL")
    parser.add_argument("--pause-s", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.targets < 1000:
        parser.error("--targets must be at least 1000 (a task matches 1,000 targets)")
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        figures = {"load_avg_before": load_before, **run(args, Path(tmp))}
    print(json.dumps(figures, indent=2))
    name = args.database if args.database in ("sqlite", "postgresql") else "url"
    saved = json.loads(args.out.read_text()) if args.out.exists() else {}
    saved[name] = figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(saved, indent=2) + "\n")
    return 0
