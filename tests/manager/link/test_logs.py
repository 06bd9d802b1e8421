"""The §6.7 seq rule: only the contiguous run after the highest stored seq is stored; the
highest seq comes from storage."""

from __future__ import annotations

from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.link.logs import LogSequencer, select
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.protocol.messages import LogEntry
from swarmdeploy.storage.records import LogRecord
from swarmdeploy.storage.sqlite import ScratchSqliteStorage

NOW = 10**12


def entries(*seqs: int) -> list[LogEntry]:
    return [LogEntry(seq=s, time_ms=s, output=f"line {s}") for s in seqs]


def test_contiguous_run_after_highest_is_selected() -> None:
    batch = select("t", 2, entries(1, 2, 3, 4), received_ms=NOW)
    assert [r.seq for r in batch.records] == [3, 4]
    assert (batch.upto_seq, batch.duplicates, batch.dropped) == (4, 2, 0)
    assert batch.records[0].target == "t" and batch.records[0].output == "line 3"


def test_lines_after_a_gap_are_dropped() -> None:
    batch = select("t", 0, entries(1, 2, 4, 5), received_ms=NOW)
    assert [r.seq for r in batch.records] == [1, 2]
    assert (batch.upto_seq, batch.dropped) == (2, 2)


def test_out_of_order_batch_is_sorted_first() -> None:
    assert select("t", 0, entries(3, 1, 2), received_ms=NOW).upto_seq == 3


def test_nothing_new_acks_the_highest() -> None:
    batch = select("t", 9, entries(5, 9), received_ms=NOW)
    assert batch.records == [] and batch.upto_seq == 9


async def test_sequencer_starts_from_storage_and_refreshes_at_hello() -> None:
    storage = ScratchSqliteStorage()
    await storage.open()
    logs = LogService(storage, events=EventHub(queue_size=8), metrics=Metrics(), clock=lambda: 1)
    # the highest seq is not the newest line by time (the agent's clock moved back)
    await storage.add_logs([LogRecord(10_000 - s, "t", "", "", "", "x", seq=s) for s in (1, 2, 3)])
    sequencer = LogSequencer(storage, logs)
    assert await sequencer.highest("t") == 3
    batch = await sequencer.receive("t", entries(3, 4), now=NOW)
    assert [r.seq for r in batch.records] == [4] and batch.upto_seq == 4
    # another replica stored 5 and 6 meanwhile; the next hello reads them
    await storage.add_logs([LogRecord(1, "t", "", "", "", "x", seq=s) for s in (5, 6)])
    assert await sequencer.highest("t") == 4
    assert await sequencer.highest("t", refresh=True) == 6
    assert await sequencer.highest("t", agent_acked=9) == 9  # what the agent saw acked
    await storage.close()
