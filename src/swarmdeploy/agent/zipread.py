"""A small, strict reader of the zip archives most packages are, for the agent process itself.

:mod:`zipfile` costs the agent about 0.4 MB of memory for good (with :mod:`shutil`,
:mod:`importlib.util`, bz2 and lzma, which it imports), so :mod:`swarmdeploy.agent.archive`
runs it in a short-lived child -- an interpreter start of about 50 ms of CPU per deployment
on a busy device. This reader needs only :mod:`struct` and :mod:`zlib`, which the agent has
loaded already, and takes the zips that zip tools, ``zipfile`` and swarmdeploy's own CLI
write: one disk, no data before the first entry, no zip64, no encryption, members stored or
deflated. For any other zip :func:`read_directory` returns ``None`` and the caller hands the
archive to :mod:`zipfile` (docs/adr/0016).

It is strict where it reads: every offset and length is checked against the archive's size,
a member's local header must name the same file as its directory entry, and a member must
inflate to exactly its recorded size with its recorded CRC-32. Whatever breaks a rule raises
:class:`~swarmdeploy.agent.errors.ArchiveError` naming it. What the members *contain* (names,
links, sizes against the limits) is :mod:`~swarmdeploy.agent.archive`'s to check, as for
every other format.
"""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, BinaryIO, NamedTuple

from swarmdeploy.agent.errors import ArchiveError

if TYPE_CHECKING:
    from types import TracebackType

_END = struct.Struct("<4s4H2LH")  # end of central directory record
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # central directory file header
_LOCAL = struct.Struct("<4s2B4HL2L2H")  # local file header
_END_MAGIC, _CENTRAL_MAGIC, _LOCAL_MAGIC = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
_ZIP64_LOCATOR_MAGIC = b"PK\x06\x07"
_MAX_COMMENT = 0xFFFF
_STORED, _DEFLATED = 0, 8
#: General purpose flags this reader refuses to handle: encryption (bits 0 and 6) and
#: compressed patch data (bit 5).
_FOREIGN_FLAGS = 1 | 1 << 5 | 1 << 6
_UTF8_NAME = 1 << 11
_ZIP64_MARK = 0xFFFFFFFF
#: Bytes read from the archive at a time, and what a read without a size returns at most.
_PIECE = 1 << 16


class ZipMember(NamedTuple):
    """One entry of the central directory."""

    name: str
    #: The name as stored: the local header must hold the same bytes.
    raw_name: bytes
    #: The Unix mode in the high half of the external attributes (0 when none was written).
    mode: int
    method: int
    crc: int
    compressed_size: int
    file_size: int
    header_offset: int

    def is_dir(self) -> bool:
        """A directory entry (its name ends with ``/``)."""
        return self.name.endswith("/")


def read_directory(raw: BinaryIO, max_entries: int) -> list[ZipMember] | None:
    """The members of the zip archive ``raw`` (a seekable stream), or ``None`` if the archive
    uses something this reader leaves to :mod:`zipfile`. Raises :class:`ArchiveError` for a
    malformed archive and for one with more than ``max_entries`` entries."""
    size = raw.seek(0, 2)
    tail_start = max(size - _END.size - _MAX_COMMENT, 0)
    raw.seek(tail_start)
    tail = raw.read()
    at = tail.rfind(_END_MAGIC)
    if at < 0 or len(tail) - at < _END.size:
        raise ArchiveError("cannot unpack archive: no zip end record (truncated?)")
    _, disk, cd_disk, here, total, cd_size, cd_offset, comment = _END.unpack_from(tail, at)
    end_at = tail_start + at
    if end_at + _END.size + comment != size:
        return None  # a comment that holds the magic, or data after the archive
    if disk or cd_disk or here != total or _ZIP64_MARK in (cd_size, cd_offset):
        return None  # several disks, or zip64
    if total == 0xFFFF or tail[max(at - 20, 0) : at].startswith(_ZIP64_LOCATOR_MAGIC):
        return None
    if cd_offset + cd_size != end_at:
        return None  # data before the first entry (a self-extracting stub)
    if total > max_entries:
        raise ArchiveError(f"archive has {total} entries (limit {max_entries})")
    raw.seek(cd_offset)
    directory = raw.read(cd_size)
    if len(directory) != cd_size:
        raise ArchiveError("cannot unpack archive: the zip directory is truncated")
    members = []
    pos = 0
    for _ in range(total):
        member = _central_entry(directory, pos, cd_offset)
        if member is None:
            return None
        members.append(member[0])
        pos = member[1]
    if pos != cd_size:
        raise ArchiveError("cannot unpack archive: the zip directory does not match its size")
    return members


def _central_entry(directory: bytes, pos: int, end: int) -> tuple[ZipMember, int] | None:
    """The directory entry at ``pos`` and the position after it (``None``: not for this
    reader); ``end`` is where the members' data must end."""
    if len(directory) - pos < _CENTRAL.size:
        raise ArchiveError("cannot unpack archive: the zip directory is truncated")
    fields = _CENTRAL.unpack_from(directory, pos)
    magic, flags, method, crc, csize, fsize = fields[0], fields[5], fields[6], *fields[9:12]
    name_len, extra_len, comment_len, disk_start, _, attrs, offset = fields[12:]
    if magic != _CENTRAL_MAGIC:
        raise ArchiveError("cannot unpack archive: bad zip directory entry")
    if flags & _FOREIGN_FLAGS or method not in (_STORED, _DEFLATED) or disk_start:
        return None
    if _ZIP64_MARK in (csize, fsize, offset):
        return None
    if method == _STORED and csize != fsize:
        raise ArchiveError("cannot unpack archive: a stored zip member with two sizes")
    start = pos + _CENTRAL.size
    after = start + name_len + extra_len + comment_len
    if after > len(directory):
        raise ArchiveError("cannot unpack archive: the zip directory is truncated")
    raw_name = directory[start : start + name_len]
    if offset + _LOCAL.size + name_len + csize > end:
        raise ArchiveError(f"cannot unpack archive: zip member {raw_name[:80]!r} lies outside")
    name = _decode_name(raw_name, flags)
    member = ZipMember(name, raw_name, attrs >> 16, method, crc, csize, fsize, offset)
    return member, after


def _decode_name(raw_name: bytes, flags: int) -> str:
    try:
        return raw_name.decode("utf-8" if flags & _UTF8_NAME else "cp437")
    except UnicodeDecodeError:
        raise ArchiveError(f"zip member name is not UTF-8: {raw_name[:80]!r}") from None


class MemberReader:
    """The content of one member, read in pieces: inflated, bounded by its recorded size
    and checked against its CRC-32 at the end."""

    def __init__(self, raw: BinaryIO, member: ZipMember) -> None:
        raw.seek(member.header_offset)
        header = raw.read(_LOCAL.size)
        if len(header) != _LOCAL.size or header[:4] != _LOCAL_MAGIC:
            raise ArchiveError(f"cannot unpack archive: no local header for {member.name!r}")
        name_len, extra_len = _LOCAL.unpack(header)[10:]
        if raw.read(name_len) != member.raw_name:
            raise ArchiveError(f"cannot unpack archive: zip headers disagree on {member.name!r}")
        raw.seek(extra_len, 1)
        self._raw = raw
        self._member = member
        self._in_left = member.compressed_size
        self._out_left = member.file_size
        self._inflate = zlib.decompressobj(-15) if member.method == _DEFLATED else None
        self._flushed = False
        self._crc = 0

    def __enter__(self) -> MemberReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (the archive stream is the caller's)."""

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (``b""`` at the end, once the size and CRC-32 checked out)."""
        size = size if size > 0 else _PIECE  # zlib takes a bound of 0 as "no bound"
        while True:
            try:
                data = self._next(size)
            except zlib.error as exc:
                raise ArchiveError(f"zip member {self._member.name!r} is corrupt: {exc}") from None
            if data or self._done():
                break
        self._out_left -= len(data)
        if self._out_left < 0:
            raise ArchiveError(f"zip member {self._member.name!r} exceeds its recorded size")
        self._crc = zlib.crc32(data, self._crc)
        if not data and (self._out_left or self._crc != self._member.crc):
            raise ArchiveError(f"zip member {self._member.name!r} is corrupt (size or CRC-32)")
        return data

    def _next(self, size: int) -> bytes:
        inflate = self._inflate
        if inflate is not None and inflate.unconsumed_tail:
            return inflate.decompress(inflate.unconsumed_tail, size)
        if not self._in_left:
            if inflate is None or self._flushed:
                return b""
            self._flushed = True
            return inflate.flush()
        chunk = self._raw.read(min(self._in_left, max(size, _PIECE)))
        if not chunk:
            raise ArchiveError(f"cannot unpack archive: zip member {self._member.name!r} is cut")
        self._in_left -= len(chunk)
        return chunk if inflate is None else inflate.decompress(chunk, size)

    def _done(self) -> bool:
        inflate = self._inflate
        return not self._in_left and (inflate is None or not inflate.unconsumed_tail)
