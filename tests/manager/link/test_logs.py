"""The §6.7 seq rule: only the contiguous run after the highest stored seq is stored."""

from __future__ import annotations

from swarmdeploy.manager.link.logs import select
from swarmdeploy.protocol.messages import LogEntry


def entries(*seqs: int) -> list[LogEntry]:
    return [LogEntry(seq=s, time_ms=s, output=f"line {s}") for s in seqs]


def test_contiguous_run_after_highest_is_selected() -> None:
    batch = select("t", 2, entries(1, 2, 3, 4))
    assert [r.seq for r in batch.records] == [3, 4]
    assert (batch.upto_seq, batch.duplicates, batch.dropped) == (4, 2, 0)
    assert batch.records[0].target == "t" and batch.records[0].output == "line 3"


def test_lines_after_a_gap_are_dropped() -> None:
    batch = select("t", 0, entries(1, 2, 4, 5))
    assert [r.seq for r in batch.records] == [1, 2]
    assert (batch.upto_seq, batch.dropped) == (2, 2)


def test_out_of_order_batch_is_sorted_first() -> None:
    assert select("t", 0, entries(3, 1, 2)).upto_seq == 3


def test_nothing_new_acks_the_highest() -> None:
    batch = select("t", 9, entries(5, 9))
    assert batch.records == [] and batch.upto_seq == 9
