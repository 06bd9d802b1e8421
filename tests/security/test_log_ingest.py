"""What a registered device may write into the logs (issue 9, item 8): the manager sets the
origin and clamps the time to receipt, refuses lines for tasks the device is not part of,
and keeps one line per record -- over the real agent link (in-memory transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmdeploy.protocol import messages as m
from swarmdeploy.storage.records import LogQuery, LogRecord
from tests.manager.link.conftest import Rig, deploy_doc, link_rig

FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with link_rig(tmp_path) as running:
        yield running


async def _stored(rig: Rig, target_id: str) -> list[LogRecord]:
    page = await rig.api.storage.query_logs(LogQuery(target=target_id, per_page=1000))
    return sorted(page.items, key=lambda r: r.seq or 0)


async def test_device_cannot_write_as_the_manager_or_into_other_tasks(rig: Rig) -> None:
    mine = await rig.agent("dev-a")
    await rig.agent("dev-b")
    task_b = await rig.create_task(deploy_doc(ids=["dev-b"]))
    task_a = await rig.create_task(deploy_doc(ids=["dev-a"]))
    await mine.send(m.LogBatch(entries=[
        m.LogEntry(seq=1, time_ms=1_000, task=task_b, stage="run", output="fake success"),
        m.LogEntry(seq=2, time_ms=1_000, task=task_a, command="$manager",
                   output="stop requested by key admin (audit #1)"),
        m.LogEntry(seq=3, time_ms=1_000, task=task_a, stage="run", output="real line"),
        m.LogEntry(seq=4, time_ms=1_000, task="terminal", stage="terminal", output="ok"),
    ]))  # fmt: skip
    assert (await mine.take(m.LogAck)).upto_seq == 4  # refused lines are consumed, not resent
    stored = await _stored(rig, "dev-a")
    assert [(r.seq, r.task, r.output) for r in stored] == [
        (3, task_a, "real line"), (4, "terminal", "ok"),
    ]  # fmt: skip
    other = await rig.api.storage.query_logs(LogQuery(task=task_b, per_page=100))
    assert all(r.target != "dev-a" for r in other.items)


async def test_future_time_is_clamped_and_line_breaks_cannot_forge_rows(rig: Rig) -> None:
    agent = await rig.agent("dev-a")
    forged = "done\n2026-01-01T00:00:00.000+00:00 dev-b x run $manager | stop by key admin"
    before = rig.clock()
    await agent.send(m.LogBatch(entries=[
        m.LogEntry(seq=1, time_ms=FAR_FUTURE_MS, stage="run", output=forged),
    ]))  # fmt: skip
    await agent.take(m.LogAck)
    (record,) = await _stored(rig, "dev-a")
    assert before <= record.time <= rig.clock()
    assert "\n" not in record.output and "\\x0a2026-01-01" in record.output
    dump = await rig.api.client.get("/logs", headers={"Accept": "text/plain"})
    rows = dump.text.splitlines()
    assert len(rows) == 2 and "dev-b" not in rows[1].split(" | ")[0]
