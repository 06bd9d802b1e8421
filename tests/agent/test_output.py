"""Line splitting with a cap per line."""

from __future__ import annotations

import pytest

from swarmdeploy.agent.output import SPLIT_MARKER, LineSplitter, OutputLine, Stream


def _split(chunks: list[bytes], cap: int = 8) -> list[str]:
    got: list[OutputLine] = []
    splitter = LineSplitter("cmd", Stream.STDOUT, got.append, cap)
    for chunk in chunks:
        splitter.feed(chunk)
    splitter.close()
    return [line.text for line in got]


def test_lines_across_chunks_are_joined() -> None:
    assert _split([b"he", b"llo\nwor", b"ld\n"]) == ["hello", "world"]


def test_crlf_and_last_line_without_newline_are_delivered() -> None:
    assert _split([b"a\r\nb"]) == ["a", "b"]


def test_empty_lines_are_kept() -> None:
    assert _split([b"\n\nx\n"]) == ["", "", "x"]


def test_line_of_exactly_the_cap_is_not_split() -> None:
    assert _split([b"12345678\n"]) == ["12345678"]


def test_long_line_is_split_with_marker_and_nothing_lost() -> None:
    texts = _split([b"abcdefghijklmnopqrst\n"])
    assert texts == ["abcdefgh" + SPLIT_MARKER, "ijklmnop" + SPLIT_MARKER, "qrst"]


def test_long_line_without_newline_never_buffers_more_than_cap() -> None:
    got: list[OutputLine] = []
    splitter = LineSplitter("cmd", Stream.STDERR, got.append, 8)
    for _ in range(100):
        splitter.feed(b"x" * 5)
    assert len(got) == 62  # 500 bytes: 62 full pieces of 8 delivered, 4 bytes pending
    assert all(line.error for line in got)
    splitter.close()
    assert got[-1].text == "xxxx"


def test_split_never_cuts_a_utf8_character() -> None:
    texts = _split(["aaaaaaa\u00e9bbb\n".encode()], cap=8)  # é is 2 bytes at offset 7..8
    assert texts[0] == "aaaaaaa" + SPLIT_MARKER
    assert texts[1] == "\u00e9bbb"


def test_invalid_utf8_is_replaced() -> None:
    assert _split([b"\xff\xfeok\n"]) == ["\ufffd\ufffdok"]


def test_tiny_cap_is_refused() -> None:
    with pytest.raises(ValueError):
        LineSplitter("cmd", Stream.STDOUT, lambda line: None, 2)


def test_failing_sink_does_not_stop_the_splitter() -> None:
    seen: list[str] = []

    def sink(line: OutputLine) -> None:
        seen.append(line.text)
        if line.text == "bad":
            raise RuntimeError("sink bug")

    splitter = LineSplitter("cmd", Stream.STDOUT, sink, 16)
    splitter.feed(b"bad\ngood\n")
    assert seen == ["bad", "good"]
