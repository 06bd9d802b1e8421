"""One damaged record in the log spool costs only itself (issue #10 item 10,
docs/reliability.md); spool files of older agents still open."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgspec

from swarmdeploy.agent.spool import AGENT_COMMAND, LogEntry, LogSpool


def _entries(n: int) -> list[LogEntry]:
    return [LogEntry(i, "t", "run", "c", f"line-{i}") for i in range(1, n + 1)]


def _spool_with(path: Path, entries: list[LogEntry]) -> None:
    spool = LogSpool(path)
    for entry in entries:
        spool.append(entry)
    spool.close()


def test_damaged_record_in_the_middle_loses_only_itself_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    _spool_with(path, _entries(10))
    data = bytearray(path.read_bytes())
    where = data.index(b"line-5")
    data[where : where + 6] = b"LINE-X"  # the CRC no longer matches
    path.write_bytes(bytes(data))
    spool = LogSpool(path)
    got = spool.pending(limit=100)
    outputs = [x.entry.output for x in got]
    assert outputs[:9] == [f"line-{i}" for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)]
    assert [x.seq for x in got] == list(range(1, 11))  # no gap for the manager
    marker = got[-1].entry
    assert marker.command == AGENT_COMMAND and marker.error
    assert "log spool damaged" in marker.output and "after line 4" in marker.output
    spool.close()
    again = LogSpool(path)  # the damage is gone from the file: no second marker
    assert [x.entry.output for x in again.pending(limit=100)] == outputs
    again.close()


def test_spool_of_an_older_agent_is_read_and_converted(tmp_path: Path) -> None:
    path = tmp_path / "spool.bin"
    encoder = msgspec.msgpack.Encoder()
    data = b"SDSPOOL2" + struct.pack(">QQ", 1, 0)
    for entry in _entries(3):
        payload = encoder.encode(entry)
        data += struct.pack(">II", len(payload), zlib.crc32(payload)) + payload
    path.write_bytes(data)
    spool = LogSpool(path)
    spool.append(LogEntry(4, "t", "run", "c", "line-4"))
    first = spool.pending(limit=2)
    assert [x.entry.output for x in first] == ["line-1", "line-2"]
    spool.ack(2)  # rewrites the file: now in the current format
    assert path.read_bytes().startswith(b"SDSPOOL3")
    spool.close()
    reopened = LogSpool(path)
    assert [(x.seq, x.entry.output) for x in reopened.pending()] == [(3, "line-3"), (4, "line-4")]
    reopened.close()
