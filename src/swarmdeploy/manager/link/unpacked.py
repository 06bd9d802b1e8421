"""The unpacked size of an artifact, measured while its blob is hashed (docs/protocol.md
§6.3: ``announce.unpacked_bytes``).

The agent assesses an announcement with ``unpacked_bytes`` (0 = unknown: it then assumes
three times the payload, which makes a small device decline even a tiny task). The manager
knows better from the archive itself, read once per process while the package is checked:

* gzip (tar.gz): the bytes the stream decompresses to (the tar stream: data plus its 512-byte
  headers -- an upper bound of what lands on the disk), counted piece by piece without
  keeping the output;
* zip: the sum of the uncompressed sizes in the central directory, found through the end
  record in the last :data:`TAIL_BYTES` of the archive (0 if the directory does not fit in
  them or uses ZIP64 sizes);
* anything else: 0 (unknown).
"""

from __future__ import annotations

import struct
import zlib

#: How much of an archive's end is kept to find a zip's central directory.
TAIL_BYTES = 1 << 20
_EOCD = struct.Struct("<4s4H2LH")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_DECOMPRESS_PIECE = 1 << 20


class UnpackedMeter:
    """Fed the pieces of one archive in order; :meth:`result` is its unpacked size."""

    def __init__(self) -> None:
        self._kind: str | None = None
        self._inflate: zlib._Decompress | None = None
        self._inflated = 0
        self._failed = False
        self._tail = b""
        self._total = 0

    def feed(self, piece: bytes) -> None:
        """The next piece of the archive."""
        if self._kind is None:
            self._kind = "gzip" if piece[:2] == b"\x1f\x8b" else "zip"
            if self._kind == "gzip":
                self._inflate = zlib.decompressobj(wbits=31)
        self._total += len(piece)
        if self._inflate is not None:
            self._inflate_piece(piece)
        else:
            self._tail = (self._tail + piece)[-TAIL_BYTES:]

    def _inflate_piece(self, piece: bytes) -> None:
        assert self._inflate is not None
        if self._failed:
            return
        data = piece
        try:
            while data:
                out = self._inflate.decompress(data, _DECOMPRESS_PIECE)
                self._inflated += len(out)
                data = self._inflate.unconsumed_tail
        except zlib.error:
            self._failed = True

    def result(self) -> int:
        """The unpacked size in bytes; 0 when unknown."""
        if self._kind == "gzip":
            return 0 if self._failed else self._inflated
        return _zip_size(self._tail, self._total)


def _zip_size(tail: bytes, total: int) -> int:
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        return 0
    _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    start = cd_offset - (total - len(tail))
    if start < 0 or start + cd_size > len(tail):
        return 0
    size, pos = 0, start
    for _ in range(count):
        if pos + _CENTRAL.size > len(tail):
            return 0
        fields = _CENTRAL.unpack_from(tail, pos)
        if fields[0] != b"PK\x01\x02" or fields[11] == 0xFFFFFFFF:
            return 0  # damaged, or ZIP64 sizes: unknown
        size += fields[11]
        pos += _CENTRAL.size + fields[12] + fields[13] + fields[14]
    return size
