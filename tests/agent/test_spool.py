"""The on-disk log spool (gap-free seq, crash safety, size cap) and the recent-lines ring."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from swarmdeploy.agent.spool import LogEntry, LogSpool, RecentLines, SpoolConfig

SMALL = SpoolConfig(max_bytes=8192, max_record_bytes=1024)


def line(text: str, error: bool = False, task: str = "t1") -> LogEntry:
    return LogEntry(time.time_ns() // 1_000_000, task, "run", "cmd", text, error)


def sent(spool: LogSpool, after: int = 0, limit: int = 10_000) -> list[tuple[int, str]]:
    return [(s.seq, s.entry.output) for s in spool.pending(after, limit=limit)]


def drain_all(spool: LogSpool, errors: list[str] | None = None) -> list[tuple[int, str]]:
    """Everything in the spool, paging through it like a connected agent (pending + ack).

    Error lines' texts are also collected into ``errors`` when given.
    """
    out: list[tuple[int, str]] = []
    while batch := spool.pending(limit=10_000):
        out += [(s.seq, s.entry.output) for s in batch]
        if errors is not None:
            errors += [s.entry.output for s in batch if s.entry.error]
        spool.ack(batch[-1].seq)
    return out


@pytest.fixture
def spool(tmp_path: Path) -> LogSpool:
    return LogSpool(tmp_path / "spool.bin")


def test_new_spool_numbers_from_one(spool: LogSpool) -> None:
    for i in range(3):
        spool.append(line(f"l{i}"))
    assert sent(spool) == [(1, "l0"), (2, "l1"), (3, "l2")]
    assert spool.next_seq == 4 and spool.acked_seq == 0
    spool.close()


def test_pending_after_seq_and_limit(spool: LogSpool) -> None:
    for i in range(5):
        spool.append(line(f"l{i}"))
    assert sent(spool, limit=2) == [(1, "l0"), (2, "l1")]
    assert sent(spool, after=3) == [(4, "l3"), (5, "l4")]
    spool.close()


def test_ack_drops_acknowledged_lines(spool: LogSpool) -> None:
    for i in range(5):
        spool.append(line(f"l{i}"))
    spool.pending()
    assert spool.ack(3) == 3
    assert sent(spool) == [(4, "l3"), (5, "l4")]
    assert spool.ack(2) == 0  # already acknowledged
    spool.append(line("l5"))
    assert sent(spool, after=5) == [(6, "l5")]
    spool.close()


def test_reopen_keeps_lines_and_numbering(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin")
    for i in range(3):
        spool.append(line(f"l{i}"))
    spool.pending()
    spool.ack(1)
    spool.close()
    again = LogSpool(tmp_path / "spool.bin")
    again.append(line("l3"))
    assert sent(again) == [(2, "l1"), (3, "l2"), (4, "l3")]
    again.close()


def test_everything_acked_numbering_continues_after_reopen(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin")
    for i in range(3):
        spool.append(line(str(i)))
    spool.pending()
    spool.ack(3)
    assert len(spool) == 0 and spool.size_bytes == os.path.getsize(tmp_path / "spool.bin")
    spool.close()
    again = LogSpool(tmp_path / "spool.bin")
    again.append(line("x"))
    assert sent(again) == [(4, "x")]
    again.close()


def test_ack_beyond_sent_lines_renumbers_unsent_after_it(spool: LogSpool) -> None:
    # A lost or restored spool: the manager already holds up to 100 (protocol §6.7).
    spool.append(line("a"))
    spool.append(line("b"))
    assert spool.ack(100) == 0
    assert sent(spool) == [(101, "a"), (102, "b")]
    spool.close()


def test_ack_beyond_handed_out_drops_only_those(spool: LogSpool) -> None:
    for text in "abcd":
        spool.append(line(text))
    assert sent(spool, limit=2) == [(1, "a"), (2, "b")]
    assert spool.ack(50) == 2
    assert sent(spool) == [(51, "c"), (52, "d")]
    spool.close()


def test_torn_last_record_ignored_and_numbering_has_no_gap(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    for i in range(3):
        spool.append(line(f"l{i}"))
    spool.close()
    os.truncate(path, os.path.getsize(path) - 3)  # power loss in the middle of the last write
    again = LogSpool(path)
    again.append(line("after"))
    assert sent(again) == [(1, "l0"), (2, "l1"), (3, "after")]
    again.close()


def test_torn_tail_never_renumbers_handed_out_lines(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    spool.append(line("a"))
    spool.append(line("b"))
    assert [s for s, _ in sent(spool)] == [1, 2]  # fixed: the manager may store them
    spool.append(line("c"))
    spool.close()
    os.truncate(path, os.path.getsize(path) - 3)
    again = LogSpool(path)
    again.append(line("d"))
    assert sent(again) == [(1, "a"), (2, "b"), (3, "d")]
    again.close()


def test_garbage_tail_ignored(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    spool.append(line("ok"))
    spool.close()
    with open(path, "ab") as fh:
        fh.write(b"\x00\x00\x00\x05\xde\xad\xbe\xefjunk")
    again = LogSpool(path)
    assert sent(again) == [(1, "ok")]
    assert again.size_bytes == os.path.getsize(path)
    again.close()


def test_damaged_header_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    spool.append(line("x"))
    spool.close()
    path.write_bytes(b"garbage!" + path.read_bytes()[8:])
    again = LogSpool(path)
    assert len(again) == 0 and again.next_seq == 1  # the manager's welcome re-aligns it
    assert len(list(tmp_path.glob("spool.bin.corrupt-*"))) == 1
    again.close()


def test_size_cap_drops_oldest_unsent_non_error_lines_first(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    spool.append(line("first error", error=True))
    for i in range(300):
        spool.append(line(f"noise {i:04d} " + "x" * 40))
        assert os.path.getsize(tmp_path / "spool.bin") <= SMALL.max_bytes
    assert spool.dropped_total > 0
    errors: list[str] = []
    got = drain_all(spool, errors)
    assert got[0] == (1, "first error")  # errors survive
    assert errors[0] == "first error" and len(errors) > 1
    assert all(text.startswith("log spool full: dropped") for text in errors[1:])
    assert got[-1][1].startswith("noise 0299")  # the newest lines are kept
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1))  # no gap
    spool.close()


def test_size_cap_never_drops_handed_out_lines(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    for i in range(10):
        spool.append(line(f"early {i}"))
    handed = sent(spool)
    for i in range(300):
        spool.append(line(f"later {i} " + "y" * 40))
    assert drain_all(spool)[: len(handed)] == handed
    assert spool.size_bytes <= SMALL.max_bytes
    spool.close()


def test_handed_out_volume_is_bounded(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    for i in range(100):
        spool.append(line(f"{i} " + "z" * 40))
    batch = spool.pending(limit=1000)
    assert 0 < len(batch) < 100
    assert sum(len(s.entry.output) for s in batch) <= SMALL.max_bytes // 4
    spool.close()


def test_size_cap_with_only_errors_never_fills_disk(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    for i in range(300):
        spool.append(line(f"error {i} " + "e" * 40, error=True))
        assert spool.size_bytes <= SMALL.max_bytes
    assert drain_all(spool)[-1][1].startswith("error 299")
    spool.close()


def test_oversized_record_is_cut(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    spool.append(line("y" * 5000))
    ((_, got),) = sent(spool)
    assert got.endswith(" [cut]") and len(got) < 1024
    spool.close()


def test_too_small_cap_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogSpool(tmp_path / "s", SpoolConfig(max_bytes=4096, max_record_bytes=1024))


_WRITER = """
import sys
from pathlib import Path
from swarmdeploy.agent.spool import LogEntry, LogSpool
spool = LogSpool(Path(sys.argv[1]))
print("ready", flush=True)
i = 0
while True:
    spool.append(LogEntry(0, "t", "run", "c", f"line {i} " * 20))
    i += 1
"""


def test_writer_killed_mid_append_leaves_a_valid_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 5
        while os.path.getsize(path) < 200_000 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    spool = LogSpool(path)
    got = sent(spool, limit=1_000_000)
    assert len(got) > 100
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1))
    assert [text for _, text in got] == [f"line {i} " * 20 for i in range(len(got))]
    spool.close()


def test_recent_lines_bounded_by_lines_and_bytes() -> None:
    ring = RecentLines(max_lines=3, max_bytes=1000)
    for i in range(5):
        ring.add(line(str(i)))
    assert [e.output for e in ring.snapshot()] == ["2", "3", "4"]
    ring.add(line("z" * 1000))
    assert [e.output for e in ring.snapshot()] == ["z" * 1000]


def test_recent_lines_drain_hands_out_once() -> None:
    ring = RecentLines()
    ring.add(line("a"))
    assert [e.output for e in ring.drain()] == ["a"]
    assert ring.drain() == [] and len(ring) == 0
