"""The on-disk log spool (crash safety, seq continuity, size cap) and the recent-lines ring."""

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


def outputs(spool: LogSpool, after: int = 0) -> list[str]:
    return [s.entry.output for s in spool.pending(after, limit=10_000)]


def test_append_pending_ack(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin")
    seqs = [spool.append(line(f"l{i}")) for i in range(5)]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert outputs(spool) == ["l0", "l1", "l2", "l3", "l4"]
    batch = spool.pending(limit=2)
    assert [s.seq for s in batch] == seqs[:2]
    assert [s.seq for s in spool.pending(after_seq=seqs[2])] == seqs[3:]
    assert spool.ack(seqs[2]) == 3
    assert outputs(spool) == ["l3", "l4"]
    assert spool.ack(seqs[1]) == 0  # already acknowledged
    spool.close()


def test_reopen_keeps_records_and_seq(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin")
    first = spool.append(line("a"))
    spool.append(line("b"))
    spool.ack(first)
    spool.close()
    again = LogSpool(tmp_path / "spool.bin")
    assert outputs(again) == ["b"]
    assert again.append(line("c")) == first + 2
    again.close()


def test_everything_acked_seq_still_grows_after_reopen(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin")
    last = [spool.append(line(str(i))) for i in range(3)][-1]
    spool.ack(last)
    assert len(spool) == 0 and spool.size_bytes == os.path.getsize(tmp_path / "spool.bin") == 16
    spool.close()
    again = LogSpool(tmp_path / "spool.bin")
    assert again.append(line("x")) == last + 1
    again.close()


def test_torn_last_record_ignored_and_seq_keeps_increasing(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    seqs = [spool.append(line(f"l{i}")) for i in range(3)]
    spool.close()
    os.truncate(path, os.path.getsize(path) - 3)  # power loss in the middle of the last write
    again = LogSpool(path)
    assert outputs(again) == ["l0", "l1"]
    new = again.append(line("after"))
    assert new > seqs[1]
    assert [s.seq for s in again.pending()] == [seqs[0], seqs[1], new]
    again.close()


def test_garbage_tail_ignored(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    spool.append(line("ok"))
    spool.close()
    with open(path, "ab") as fh:
        fh.write(b"\x00\x00\x00\x05\xde\xad\xbe\xefjunk")
    again = LogSpool(path)
    assert outputs(again) == ["ok"]
    assert again.size_bytes == os.path.getsize(path)
    again.close()


def test_damaged_header_moved_aside_and_seq_still_grows(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    spool = LogSpool(path)
    old = spool.append(line("x"))
    spool.close()
    path.write_bytes(b"garbage!" + path.read_bytes()[8:])
    again = LogSpool(path)
    assert len(again) == 0 and again.next_seq > old
    assert len(list(tmp_path.glob("spool.bin.corrupt-*"))) == 1
    again.close()


def test_size_cap_drops_oldest_non_error_lines_first(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    spool.append(line("first error", error=True))
    for i in range(300):
        spool.append(line(f"noise {i:04d} " + "x" * 40))
        assert os.path.getsize(tmp_path / "spool.bin") <= SMALL.max_bytes
    texts = outputs(spool)
    assert texts[0] == "first error"  # errors survive
    assert spool.dropped_total > 0
    markers = [s.entry for s in spool.pending(limit=10_000) if "spool full" in s.entry.output]
    assert markers and all(m.error for m in markers)
    assert texts[-1].startswith("noise 0299")  # the newest lines are kept
    seqs = [s.seq for s in spool.pending(limit=10_000)]
    assert seqs == sorted(set(seqs))
    spool.close()


def test_size_cap_with_only_errors_never_fills_disk(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    for i in range(300):
        spool.append(line(f"error {i} " + "e" * 40, error=True))
        assert spool.size_bytes <= SMALL.max_bytes
    assert outputs(spool)[-1].startswith("error 299")
    spool.close()


def test_oversized_record_is_cut(tmp_path: Path) -> None:
    spool = LogSpool(tmp_path / "spool.bin", SMALL)
    spool.append(line("y" * 5000))
    (got,) = outputs(spool)
    assert got.endswith(" [cut]") and len(got) < 1024
    spool.close()


def test_too_small_cap_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogSpool(tmp_path / "s", SpoolConfig(max_bytes=1000, max_record_bytes=1024))


_WRITER = """
import sys
from pathlib import Path
from swarmdeploy.agent.spool import LogEntry, LogSpool
spool = LogSpool(Path(sys.argv[1]))
print("ready", flush=True)
i = 0
while True:
    spool.append(LogEntry(0, "t", "run", "c", f"line {i}" * 20))
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
    seqs = [s.seq for s in spool.pending(limit=1_000_000)]
    assert len(seqs) > 100 and seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert spool.append(line("after restart")) == seqs[-1] + 1
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
