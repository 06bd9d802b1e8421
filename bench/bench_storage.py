"""Storage benchmark: bulk log ingest and full-text query time, SQLite and PostgreSQL.

``python -m bench storage [--rows N] [--backends sqlite,sqlite-encrypted,postgresql,blobs]
[--out FILE]``

Ingest goes through ``Storage.add_logs`` in batches of 1,000 lines (one transaction each, the
way the manager stores what agents send). The lines are realistic, varied tool output (apt,
compilers, Python tracebacks, sensors, network errors) from a seeded generator. Queries run
through ``Storage.query_logs`` (first page of 100 plus the total count), each timed several
times; the median is reported. PostgreSQL runs on a throw-away server started like the tests'
(durability off, as in tests: ``fsync=off``), so its ingest figure is an upper bound for a
production server with fsync on.

``sqlite-encrypted`` is the SQLite backend through SQLCipher (``--encrypt-storage``, raw
256-bit key). ``blobs`` times the blob store plaintext and encrypted (XChaCha20-Poly1305 per
64 KiB chunk): storing a 64 MiB archive and reading it back in 256 KiB ranges, as agents fetch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from swarmdeploy.manager.services.blobs import FileBlobStore
from swarmdeploy.manager.services.encrypted_blobs import EncryptedFileBlobStore
from swarmdeploy.storage import LogQuery, LogRecord, Storage
from swarmdeploy.storage.factory import open_storage

if TYPE_CHECKING:
    from tests.fixtures_pg import PgServer

BATCH_ROWS = 1000
TARGETS = 200
RESULTS = Path(__file__).parent / "results" / "storage.json"
BLOB_BYTES = 64 * 2**20
BLOB_READ_BYTES = 256 * 1024

QUERIES: dict[str, LogQuery] = {
    "one common word": LogQuery(output="setting"),
    "two words (AND)": LogQuery(output="undefined reference"),
    "three words incl. an address": LogQuery(output="connection refused 10.0.3.17"),
    "rare word + target filter": LogQuery(output="traceback", target="dev-0042"),
    "absent word": LogQuery(output="zzyzx"),
    "no text, target + time range": LogQuery(target="dev-0007", since=1_000_000, until=5_000_000),
}


class LineGenerator:
    """Seeded generator of varied, realistic log output."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        syllables = ["lib", "py", "ros", "zmq", "gl", "ssl", "core", "net", "cam", "nav", "io"]
        tails = ["", "2", "3", "-dev", "-utils", "-common", "d", "-bin", "5", "-tools"]
        self.packages = sorted({a + b + t for a in syllables for b in syllables for t in tails})
        verbs = ("read", "init", "send", "parse", "open")
        nouns = ("frame", "sensor", "config", "socket", "buffer", "motor", "gps")
        self.functions = [f"{v}_{n}" for v in verbs for n in nouns]
        self.templates = [
            self._setting_up, self._get, self._gcc, self._undefined, self._traceback,
            self._progress, self._sensor, self._refused, self._download, self._info,
        ]  # fmt: skip

    def _pkg(self) -> str:
        return self.rng.choice(self.packages)

    def _ver(self) -> str:
        r = self.rng
        return f"{r.randint(0, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}-{r.randint(1, 9)}"

    def _setting_up(self) -> str:
        return f"Setting up {self._pkg()} ({self._ver()}) ..."

    def _get(self) -> str:
        r = self.rng
        return (
            f"Get:{r.randint(1, 400)} http://deb.debian.org/debian bookworm/main arm64 "
            f"{self._pkg()} arm64 {self._ver()} [{r.randint(5, 9000)} kB]"
        )

    def _gcc(self) -> str:
        name = self.rng.choice(self.functions)
        return f"gcc -O2 -Wall -fPIC -c src/{name}.c -o build/{name}.o"

    def _undefined(self) -> str:
        r = self.rng
        return (
            f"/usr/bin/ld: build/{r.choice(self.functions)}.o: in function `main': "
            f"undefined reference to `{r.choice(self.functions)}_{r.randint(0, 99)}'"
        )

    def _traceback(self) -> str:
        r = self.rng
        if r.random() < 0.3:
            return "Traceback (most recent call last):"
        return f'  File "/opt/app/{r.choice(self.functions)}.py", line {r.randint(1, 900)}, in run'

    def _progress(self) -> str:
        r = self.rng
        pct = r.randint(0, 100)
        bar = "#" * (pct // 5)
        return f"{pct:3d}% [{bar:<20}] {r.uniform(0.1, 90):.1f} MB/s eta {r.randint(0, 600)}s"

    def _sensor(self) -> str:
        r = self.rng
        return (
            f"sensor imu{r.randint(0, 3)} accel=({r.gauss(0, 1):.3f},{r.gauss(0, 1):.3f},"
            f"{r.gauss(9.8, 0.1):.3f}) temp={r.uniform(20, 80):.1f}C at "
            f"{r.uniform(-90, 90):.5f},{r.uniform(-180, 180):.5f}"
        )

    def _refused(self) -> str:
        r = self.rng
        address = f"10.0.{r.randint(0, 9)}.{r.randint(1, 40)}:{r.choice([5556, 5557, 8080])}"
        return f"WARN connection refused by {address}, retrying in {r.randint(1, 30)}s"

    def _download(self) -> str:
        r = self.rng
        digest = f"{r.getrandbits(128):032x}"
        return f"downloaded artifacts/{self._pkg()}-{self._ver()}.tar.gz sha256={digest}"

    def _info(self) -> str:
        r = self.rng
        verbs = ["started", "stopped", "reconnected", "calibrated", "updated", "checked"]
        what = f"{r.choice(verbs)} {self._pkg()}"
        return f"INFO [{r.choice(self.functions)}] {what} in {r.randint(1, 5000)} ms"

    def batches(self, rows: int) -> Iterator[list[LogRecord]]:
        """``rows`` lines in batches of ``BATCH_ROWS``; (target, seq) unique, times increasing."""
        r = self.rng
        seqs = [0] * TARGETS
        for start in range(0, rows, BATCH_ROWS):
            batch = []
            for i in range(start, min(rows, start + BATCH_ROWS)):
                t = r.randrange(TARGETS)
                seqs[t] += 1
                output = r.choice(self.templates)()
                batch.append(
                    LogRecord(
                        time=1_000_000 + i * 10,
                        target=f"dev-{t:04d}",
                        task=f"task-{i // 50_000}",
                        stage=r.choice(["install", "run", "build"]),
                        command=r.choice(["apt-get install -y app", "make", "./app --serve"]),
                        output=output,
                        error=output.startswith(("WARN", "/usr/bin/ld", "Traceback")),
                        seq=seqs[t],
                    )
                )
            yield batch


async def _ingest(storage: Storage, batches: list[list[LogRecord]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        await storage.add_logs(batch)
    return time.perf_counter() - started


async def _query_ms(storage: Storage, query: LogQuery, repeat: int) -> tuple[float, int]:
    timings, total = [], 0
    await storage.query_logs(query)  # warm caches once
    for _ in range(repeat):
        started = time.perf_counter()
        page = await storage.query_logs(query)
        timings.append((time.perf_counter() - started) * 1000)
        total = page.total
    return statistics.median(timings), total


async def run_backend(
    url: str, batches: list[list[LogRecord]], repeat: int, sqlite_key: bytes | None = None
) -> dict[str, object]:
    """Ingest every batch into a fresh database at ``url`` (encrypted with ``sqlite_key``)
    and time the queries."""
    storage = open_storage(url, sqlite_key=sqlite_key)
    await storage.open()
    try:
        rows = sum(len(b) for b in batches)
        seconds = await _ingest(storage, batches)
        stored = await storage.count_logs()
        queries = {}
        for name, query in QUERIES.items():
            median_ms, matches = await _query_ms(storage, query, repeat)
            queries[name] = {"median_ms": round(median_ms, 2), "matches": matches}
            print(f"  {name:<32} {median_ms:8.2f} ms  ({matches} matching rows)")
        dedupe_s = await _ingest(storage, batches[:10])
        started = time.perf_counter()
        purged = await storage.purge_logs(keep_rows=rows - rows // 10)
        purge_s = time.perf_counter() - started
        print(f"  purge of {purged} oldest rows (keep_rows): {purge_s:.2f} s")
        result: dict[str, object] = {
            "rows": rows,
            "stored": stored,
            "ingest_seconds": round(seconds, 2),
            "ingest_rows_per_s": round(rows / seconds),
            "resend_10k_duplicates_seconds": round(dedupe_s, 3),
            "queries": queries,
            "purge_10_percent": {"rows": purged, "seconds": round(purge_s, 2)},
        }
        print(f"  ingest: {rows} rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s")
        return result
    finally:
        await storage.close()


def _pg_server() -> PgServer:
    # The throw-away server of the test suite (initdb + pg_ctl on a free loopback port).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures_pg import start_pg_server

    return start_pg_server()


def _sqlite_run(
    batches: list[list[LogRecord]], repeat: int, key: bytes | None = None
) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run_backend(f"{tmp}/bench.db", batches, repeat, key))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
    result["file_mb"] = round(size / 2**20, 1)
    return result


def _sqlite_encrypted_run(batches: list[list[LogRecord]], repeat: int) -> dict[str, object]:
    return _sqlite_run(batches, repeat, os.urandom(32))


async def _blob_figures(store: FileBlobStore, data: bytes) -> dict[str, float]:
    started = time.perf_counter()
    digest = await store.put(data)
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for offset in range(0, len(data), BLOB_READ_BYTES):
        await store.read_range(digest, offset, BLOB_READ_BYTES)
    read_s = time.perf_counter() - started
    mib = len(data) / 2**20
    return {"put_mib_per_s": round(mib / put_s, 1), "read_mib_per_s": round(mib / read_s, 1)}


def _blobs_run(batches: list[list[LogRecord]], repeat: int) -> dict[str, object]:
    del batches
    data = os.urandom(BLOB_BYTES)
    result: dict[str, object] = {"blob_mib": BLOB_BYTES // 2**20, "read_bytes": BLOB_READ_BYTES}
    for name in ("plain", "encrypted"):
        runs = []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                store = (
                    FileBlobStore(Path(tmp))
                    if name == "plain"
                    else EncryptedFileBlobStore(Path(tmp), os.urandom(32))
                )
                runs.append(asyncio.run(_blob_figures(store, data)))
        result[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"  blobs {name}: {result[name]}")
    return result


def _postgres_run(batches: list[list[LogRecord]], repeat: int) -> dict[str, object]:
    server = _pg_server()
    try:
        return asyncio.run(run_backend(server.create_database("bench"), batches, repeat))
    finally:
        server.stop()


def main(argv: list[str]) -> int:
    """Run the benchmark, print the figures and write them as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench storage", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    print(f"generating {args.rows:,} log lines ...")
    batches = list(LineGenerator().batches(args.rows))
    results: dict[str, object] = {}
    runners = {
        "sqlite": _sqlite_run,
        "sqlite-encrypted": _sqlite_encrypted_run,
        "postgresql": _postgres_run,
        "blobs": _blobs_run,
    }
    for backend in args.backends.split(","):
        if backend not in runners:
            parser.error(f"unknown backend {backend!r}")
        print(f"{backend}:")
        results[backend] = runners[backend](batches, args.repeat)
    document = {
        "benchmark": "storage",
        "batch_rows": BATCH_ROWS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0
