"""Selector benchmark: ``GET /targets?select=`` and standing-release reconciliation on SQLite.

``python -m bench selectors [--targets N] [--standing M] [--out FILE]``

Registers ``N`` targets (tags from a seeded generator) in a SQLite file, then times, median
of several runs: ``Storage.list_targets`` with plain, all-of and negated selectors (first
page of 100 and the total), ``TaskService._select``-like paging through every match, and
``AppService.reconcile`` of one device against ``M`` standing releases (what a registration
or a tag edit costs the manager). Results go to ``bench/results/selectors.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from swarmdeploy.manager.dispatch import MemoryDispatcher
from swarmdeploy.manager.services.apps import AppService
from swarmdeploy.protocol.selector import Selector, parse_selector
from swarmdeploy.protocol.states import TargetEvent
from swarmdeploy.storage import Storage
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import TargetRecord, TaskAppRecord, TaskRecord, TaskTargetRecord

RESULTS = Path(__file__).parent / "results" / "selectors.json"
TAGS = ["camera", "gateway", "outdoor", "lab", "arm", "x86", "eu", "us", "beta", "robot"]
SELECTORS = {
    "any-of one tag": "camera",
    "any-of + all-of": "camera,gateway,+outdoor",
    "any-of + negation": "camera,!lab",
    "negation only": "!lab,!beta",
}


class _Quiet:
    async def announce_rows(self, task: TaskRecord, rows: list[TaskTargetRecord]) -> None:
        """Nothing to announce to (no link in a benchmark)."""

    async def apply(
        self, task_id: str, target_id: str, event: TargetEvent, *, reason: str = ""
    ) -> object:
        """No state change needed."""
        return None


async def _fill(storage: Storage, count: int) -> None:
    rng = random.Random(1)
    secret = b"bench"
    await storage.create_token_set(
        "bench", [secret + str(i).encode() for i in range(count)], created_at=1, expires_at=10**13
    )
    for i in range(count):
        tags = tuple(sorted(rng.sample(TAGS, rng.randint(1, 4))))
        record = TargetRecord(f"dev-{i:05d}", f"c{i}", f"k{i}", 1, 1, tags=tags)
        await storage.register_target(secret + str(i).encode(), record, now=1)


async def _timed(call: Callable[[], Awaitable[object]], runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        begun = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - begun) * 1000)
    return round(statistics.median(samples), 2)


async def _every_match(storage: Storage, sel: Selector) -> int:
    """Page through every match as task creation does (1,000 per page)."""
    page, seen = 1, 0
    while True:
        result = await storage.list_targets(selector=sel, page=page, per_page=1000)
        seen += len(result.items)
        if page * 1000 >= result.total:
            return seen
        page += 1


async def run(targets: int, standing: int) -> dict[str, object]:
    """Fill a fresh SQLite store and time the selector paths."""
    with tempfile.TemporaryDirectory() as tmp:
        storage = open_storage(f"sqlite+aiosqlite:///{tmp}/bench.db")
        await storage.open()
        try:
            await _fill(storage, targets)
            results: dict[str, object] = {}
            for name, text in SELECTORS.items():
                sel = parse_selector(text)
                page = await storage.list_targets(selector=sel, per_page=100)
                results[name] = {
                    "matches": page.total,
                    "first_page_ms": await _timed(
                        functools.partial(storage.list_targets, selector=sel, per_page=100)
                    ),
                    "all_matches_ms": await _timed(functools.partial(_every_match, storage, sel)),
                }
            for i in range(standing):
                task = TaskRecord(f"s{i}", "", False, {}, created_at=i + 1, expires_at=10**13)
                await storage.add_task(task, [])
                text = f"{TAGS[i % len(TAGS)]},!{TAGS[(i + 3) % len(TAGS)]}"
                await storage.add_task_app(
                    TaskAppRecord(f"s{i}", f"app{i % 20}", i + 1, selector=text, standing=True)
                )
            apps = AppService(
                storage,
                announcer=_Quiet(),
                states=_Quiet(),
                dispatcher=MemoryDispatcher(max_per_target=10),
                clock=lambda: 2,
            )
            device = TargetRecord("late", "cl", "kl", 1, 1, tags=("camera", "outdoor"))
            results["reconcile_one_device_ms"] = await _timed(lambda: apps.reconcile(device), 3)
        finally:
            await storage.close()
    return results


def main(argv: list[str]) -> int:
    """Run the benchmark and save its JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench selectors")
    parser.add_argument("--targets", type=int, default=10_000)
    parser.add_argument("--standing", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.targets, args.standing))
    doc = {
        "benchmark": "selectors",
        "backend": "sqlite",
        "targets": args.targets,
        "standing_releases": args.standing,
        "python": platform.python_version(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    json.dump(doc, sys.stdout, indent=1)
    print()
    return 0
