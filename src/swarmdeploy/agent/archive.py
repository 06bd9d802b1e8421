"""Safe unpacking of task archives (zip, tar, tar.gz) and packing of build artifacts.

Unpacking rules (DESIGN.md "Archives are unpacked safely"; each is tested with a hostile
archive in ``tests/agent/test_archive.py``):

* names must be relative: no leading ``/``, no drive letter, no ``..`` component, no NUL or
  backslash (an ambiguous separator); ``./`` prefixes are ignored;
* regular files, directories, symbolic links and hard links only: device files, fifos and
  sockets are refused;
* a hard link must name a regular file extracted earlier from the same archive;
* a symbolic link must be relative, and resolving it inside the tree -- following every
  link on the way, at every step -- must never leave the tree. Links are created only after
  every file was written (files are opened with ``O_EXCL | O_NOFOLLOW``), so no write ever goes
  through a link. Links are allowed at all because real packages (virtualenvs, ``node_modules``)
  contain them; the step-wise resolution is what makes chains like ``a -> .``, ``b -> a/..``
  harmless;
* at most ``max_entries`` entries and ``max_total_bytes`` of file content, counted on the bytes
  actually written (a zip header may lie about sizes); the decompressed tar stream is capped too;
* names must be unique (a duplicate could replace a checked entry).

Everything is written into a fresh temporary directory next to ``dest`` and renamed into place
at the end, so a failed unpack leaves nothing behind but what :func:`remove_partial` cleans.
"""

from __future__ import annotations

import enum
import functools
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, BinaryIO, NamedTuple, Protocol, Self

from swarmdeploy.agent.errors import ArchiveError, PackError
from swarmdeploy.agent.fsutil import create_temp_dir, remove_tree
from swarmdeploy.agent.zipread import MemberReader, ZipMember, read_directory

if TYPE_CHECKING:  # imported where used (in the child of unpack): they pull in bz2 and lzma
    import tarfile
    from types import TracebackType

_CHUNK = 64 * 1024
_TMP_PREFIX = ".unpack-"
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_LINK_TARGET = 4096


# NamedTuples rather than dataclasses: the child of :func:`unpack` imports this module for
# every deployment, and dataclasses (with the inspect module it loads) would be half of that.


class ArchiveLimits(NamedTuple):
    """Bounds of one unpack."""

    max_entries: int = 20_000
    max_total_bytes: int = 1 << 30
    max_name_bytes: int = 1024
    max_link_hops: int = 40


class UnpackResult(NamedTuple):
    """What an unpack produced."""

    path: Path
    files: int
    directories: int
    links: int
    total_bytes: int


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Kind(enum.Enum):
    FILE = "file"
    DIR = "directory"
    SYMLINK = "symbolic link"
    HARDLINK = "hard link"
    SPECIAL = "special file"


class _Member(Protocol):
    """An open archive member: read in pieces, closed with the ``with`` block."""

    def read(self, size: int, /) -> bytes: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None: ...


class _Entry(NamedTuple):
    name: str
    kind: _Kind
    executable: bool
    link: str | None
    open: Callable[[], _Member | None]


def unpack(source: bytes | Path, dest: Path, limits: ArchiveLimits | None = None) -> UnpackResult:
    """:func:`unpack_here`, in this process for the zips :mod:`.zipread` takes, else in a
    short-lived child (:func:`_child_main`). Same contract.

    The archive modules (zipfile, tarfile, gzip and the bz2, lzma and shutil they import)
    thus never stay in the long-lived agent (about 0.6 MB of RSS); the price of the child
    is one interpreter start. That start is kept short: isolated mode without ``site``
    (``-I -S``; this package's directory is put on the path instead) and no module this one
    does not need: about 35 ms of CPU for a 1 MiB archive on a quiet machine, 50 ms on two
    cores shared with ten agents -- what the zip reader saves (docs/adr/0016). A child that
    fails otherwise is an :class:`ArchiveError` too, and what it left behind is removed.
    """
    limits = limits or ArchiveLimits()
    if os.path.lexists(dest):
        raise ArchiveError(f"unpack destination {dest} exists already")
    try:
        return unpack_here(source, dest, limits, stdlib=False)
    except _NeedsStdlib:
        pass
    if not sys.executable:  # an embedded interpreter cannot start a child
        return unpack_here(source, dest, limits)
    import subprocess

    before = set(dest.parent.glob(_TMP_PREFIX + "*"))
    source_arg = str(source) if isinstance(source, Path) else "-"  # "-": the bytes on stdin
    argv = [*_child_command(), str(dest), source_arg, *map(str, limits)]
    data = None if isinstance(source, Path) else bytes(source)
    child = subprocess.run(argv, input=data, capture_output=True, check=False)
    kind, _, text = child.stdout.decode("utf-8", "replace").strip().partition(" ")
    if child.returncode == 0 and kind == "unpacked":
        return UnpackResult(dest, *map(int, text.split()))
    for leftover in set(dest.parent.glob(_TMP_PREFIX + "*")) - before:
        remove_tree(leftover)
    if kind != "refused":
        last = child.stderr.decode("utf-8", "replace").strip().rpartition("\n")[2]
        text = f"cannot unpack archive: the unpacking process failed ({child.returncode}: {last})"
    raise ArchiveError(text)


def unpack_here(
    source: bytes | Path, dest: Path, limits: ArchiveLimits | None = None, *, stdlib: bool = True
) -> UnpackResult:
    """Unpack a zip, tar or tar.gz archive into the new directory ``dest`` in this process.

    ``dest`` must not exist; its parent must. Raises :class:`ArchiveError` for malformed or
    unsafe archives and for archives over a limit; in that case nothing is left at ``dest``.
    ``stdlib=False`` reads zips with :mod:`.zipread` and loads no archive module: an archive
    that needs one raises :class:`_NeedsStdlib` (nothing is left at ``dest`` either).
    """
    limits = limits or ArchiveLimits()
    if os.path.lexists(dest):
        raise ArchiveError(f"unpack destination {dest} exists already")
    try:
        tmp = create_temp_dir(dest.parent, _TMP_PREFIX)
    except OSError as exc:
        raise ArchiveError(f"cannot unpack into {dest}: {exc.strerror or exc}") from exc
    try:
        with _open_source(source) as raw:
            result = _extract(_entries(raw, limits, stdlib=stdlib), tmp, limits)
        os.rename(tmp, dest)
    except BaseException as exc:
        remove_tree(tmp)
        foreign = _foreign_errors() if stdlib else _OWN_ERRORS
        if isinstance(exc, ArchiveError | _NeedsStdlib) or not isinstance(exc, foreign):
            raise
        raise ArchiveError(f"cannot unpack archive: {exc}") from exc
    return UnpackResult(dest, *result)


def _child_command() -> list[str]:
    """How :func:`unpack` starts its child; its arguments follow. The directory that holds
    the ``swarmdeploy`` package goes first on the child's path (``-I`` leaves out the
    working directory and the environment, ``-S`` the site packages)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); "
        "from swarmdeploy.agent.archive import _child_main; sys.exit(_child_main(sys.argv[1:]))"
    )
    return [sys.executable, "-I", "-S", "-c", code, str(Path(__file__).resolve().parents[2])]


def _child_main(argv: list[str]) -> int:
    """The child of :func:`unpack` (also ``python -m swarmdeploy.agent.archive DEST
    SOURCE|- LIMIT...``): :func:`unpack_here` (``-``: the archive on stdin); prints
    ``unpacked <counts>`` or ``refused <reason>``."""
    dest, source_arg, *limits = argv
    source = sys.stdin.buffer.read() if source_arg == "-" else Path(source_arg)
    try:
        result = unpack_here(source, Path(dest), ArchiveLimits(*map(int, limits)))
    except ArchiveError as exc:
        print("refused", exc)
        return 1
    print("unpacked", result.files, result.directories, result.links, result.total_bytes)
    return 0


def remove_partial(parent: Path) -> list[Path]:
    """Remove leftovers of unpacks interrupted by a crash in ``parent``; return them."""
    removed = list(parent.glob(_TMP_PREFIX + "*"))
    for child in removed:
        remove_tree(child)
    return removed


class _NeedsStdlib(Exception):
    """:func:`unpack_here` with ``stdlib=False`` met an archive that needs zipfile or
    tarfile (:func:`unpack` hands it to the child)."""


#: What reading a zip with :mod:`.zipread` and writing its files may raise besides
#: :class:`ArchiveError`: errors of the archive or of the disk (as :func:`_foreign_errors`;
#: a ``UnicodeDecodeError`` is a ``ValueError``).
_OWN_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)


def _foreign_errors() -> tuple[type[BaseException], ...]:
    """Errors of the archive libraries that mean "bad archive" (translated at this seam)."""
    import tarfile
    import zipfile
    import zlib

    return (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,  # zipfile: encrypted entry
        NotImplementedError,  # zipfile: unsupported compression
        UnicodeDecodeError,
        ValueError,
    )


def _open_source(source: bytes | Path) -> BinaryIO:
    if isinstance(source, bytes | bytearray):
        return io.BytesIO(source)
    return open(source, "rb")  # the caller closes it (with-statement)


def _entries(raw: BinaryIO, limits: ArchiveLimits, *, stdlib: bool) -> Iterator[_Entry]:
    head = raw.read(262)
    raw.seek(0)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        if stdlib:
            return _zip_entries(raw, limits)
        members = read_directory(raw, limits.max_entries)
        if members is not None:
            return _own_zip_entries(raw, members, limits)
    if not stdlib:
        raise _NeedsStdlib
    if head.startswith(b"\x1f\x8b"):
        import gzip

        return _tar_entries(gzip.GzipFile(fileobj=raw, mode="rb"), limits)
    if head[257:262] == b"ustar":
        return _tar_entries(raw, limits)
    raise ArchiveError("unknown archive format (expected zip, tar or tar.gz)")


def _zip_entries(raw: BinaryIO, limits: ArchiveLimits) -> Iterator[_Entry]:
    import zipfile

    with zipfile.ZipFile(raw) as zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise ArchiveError(f"archive has {len(infos)} entries (limit {limits.max_entries})")
        _check_declared(sum(info.file_size for info in infos), limits)
        for info in infos:
            opener = functools.partial(zf.open, info)
            mode = info.external_attr >> 16
            yield _zip_entry(info.filename, mode, info.is_dir(), info.file_size, opener)


def _own_zip_entries(
    raw: BinaryIO, members: list[ZipMember], limits: ArchiveLimits
) -> Iterator[_Entry]:
    _check_declared(sum(m.file_size for m in members), limits)
    for m in members:
        opener = functools.partial(MemberReader, raw, m)
        yield _zip_entry(m.name, m.mode, m.is_dir(), m.file_size, opener)


def _check_declared(declared: int, limits: ArchiveLimits) -> None:
    if declared > limits.max_total_bytes:
        raise ArchiveError(f"archive declares {declared} bytes (limit {limits.max_total_bytes})")


def _zip_entry(
    name: str, mode: int, is_dir: bool, size: int, opener: Callable[[], _Member]
) -> _Entry:
    """A zip member as an entry; ``mode`` is the Unix mode of its external attributes."""
    ftype = mode & 0o170000
    if is_dir:
        return _Entry(name, _Kind.DIR, False, None, opener)
    if ftype == 0o120000:
        if size > _MAX_LINK_TARGET:
            raise ArchiveError(f"link {name!r} has an over-long target")
        with opener() as src:
            target = b"".join(iter(functools.partial(src.read, _CHUNK), b"")).decode("utf-8")
        return _Entry(name, _Kind.SYMLINK, False, target, opener)
    kind = _Kind.FILE if ftype in (0, 0o100000) else _Kind.SPECIAL
    return _Entry(name, kind, bool(mode & 0o111), None, opener)


def _tar_entries(stream: _Readable, limits: ArchiveLimits) -> Iterator[_Entry]:
    # Headers count against the cap too: a pax header is read into memory by tarfile.
    import tarfile

    capped = _CappedReader(stream, limits.max_total_bytes + limits.max_entries * 1536 + (1 << 20))
    with tarfile.open(fileobj=capped, mode="r|") as tf:
        for member in tf:
            yield _tar_entry(tf, member)


def _tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo) -> _Entry:
    if member.isreg():
        kind = _Kind.FILE
    elif member.isdir():
        kind = _Kind.DIR
    elif member.issym():
        kind = _Kind.SYMLINK
    elif member.islnk():
        kind = _Kind.HARDLINK
    else:
        kind = _Kind.SPECIAL
    link = member.linkname if kind in (_Kind.SYMLINK, _Kind.HARDLINK) else None
    return _Entry(
        member.name, kind, bool(member.mode & 0o111), link, lambda: tf.extractfile(member)
    )


class _CappedReader(io.RawIOBase):
    """A read-only stream that fails once more than ``cap`` bytes were read through it."""

    def __init__(self, inner: _Readable, cap: int) -> None:
        self._inner = inner
        self._left = cap

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buffer), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveError("archive expands beyond its size limit")
        buffer[: len(data)] = data
        return len(data)


def safe_name(name: str, max_bytes: int = 1024) -> str:
    """Normalise an archive member name to a relative path, or raise :class:`ArchiveError`.

    Returns ``""`` for the archive root (``./``).
    """
    if len(name.encode("utf-8", errors="surrogateescape")) > max_bytes:
        raise ArchiveError(f"entry name longer than {max_bytes} bytes: {name[:80]!r}...")
    if "\0" in name or "\\" in name:
        raise ArchiveError(f"entry name with NUL or backslash: {name!r}")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveError(f"absolute path in archive: {name!r}")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"'..' in archive path: {name!r}")
    return "/".join(parts)


def stays_inside(root: Path, rel: str, max_hops: int = 40) -> bool:
    """Whether resolving ``root/rel`` (following links inside ``root``) never leaves ``root``.

    Resolution is done step by step: ``..`` above ``root`` or an absolute link target at any
    point means "leaves", whatever the final path would be. Missing components are fine.
    """
    parts = rel.split("/")
    stack: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return False
            stack.pop()
            continue
        stack.append(part)
        here = root.joinpath(*stack)
        if here.is_symlink():
            hops += 1
            target = os.readlink(here)
            if hops > max_hops or target.startswith("/"):
                return False
            stack.pop()
            parts[:0] = target.split("/")
    return True


def _extract(entries: Iterator[_Entry], tmp: Path, limits: ArchiveLimits) -> tuple[int, ...]:
    seen: dict[str, _Kind] = {}
    links: list[tuple[str, str]] = []
    total = count = 0
    for entry in entries:
        count += 1
        if count > limits.max_entries:
            raise ArchiveError(f"archive has more than {limits.max_entries} entries")
        rel = safe_name(entry.name, limits.max_name_bytes)
        if entry.kind is _Kind.SPECIAL:
            raise ArchiveError(f"special file (device, fifo) in archive: {entry.name!r}")
        if rel == "" and entry.kind is _Kind.DIR:
            continue
        if rel == "" or rel in seen:
            raise ArchiveError(f"duplicate or empty entry name: {entry.name!r}")
        seen[rel] = entry.kind
        target = tmp / rel
        if entry.kind is _Kind.DIR:
            target.mkdir(mode=0o755, parents=True, exist_ok=True)
            continue
        if entry.kind is _Kind.SYMLINK:
            links.append((rel, _link_target(entry)))
            continue
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if entry.kind is _Kind.FILE:
            total = _write_file(entry, target, total, limits.max_total_bytes)
        else:
            _hard_link(entry, tmp, target, seen, limits)
    _make_symlinks(links, tmp, seen, limits)
    files = sum(kind is _Kind.FILE for kind in seen.values())
    dirs = sum(kind is _Kind.DIR for kind in seen.values())
    return files, dirs, len(seen) - files - dirs, total


def _write_file(entry: _Entry, target: Path, total: int, max_total: int) -> int:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(target, flags, 0o755 if entry.executable else 0o644)
    with os.fdopen(fd, "wb") as out:
        src = entry.open()
        if src is None:
            raise ArchiveError(f"unreadable entry {entry.name!r}")
        with src:
            while chunk := src.read(_CHUNK):
                total += len(chunk)
                if total > max_total:
                    raise ArchiveError(f"archive expands beyond {max_total} bytes")
                out.write(chunk)
    return total


def _hard_link(
    entry: _Entry, tmp: Path, target: Path, seen: dict[str, _Kind], limits: ArchiveLimits
) -> None:
    source = safe_name(entry.link or "", limits.max_name_bytes)
    if seen.get(source) is not _Kind.FILE:
        raise ArchiveError(f"hard link {entry.name!r} to {entry.link!r}: not a file of the archive")
    os.link(tmp / source, target, follow_symlinks=False)


def _link_target(entry: _Entry) -> str:
    target = entry.link or ""
    if not target or "\0" in target or len(target) > _MAX_LINK_TARGET:
        raise ArchiveError(f"link {entry.name!r} has an invalid target")
    if target.startswith("/"):
        raise ArchiveError(f"link {entry.name!r} points to an absolute path {target!r}")
    return target


def _make_symlinks(
    links: list[tuple[str, str]], tmp: Path, seen: dict[str, _Kind], limits: ArchiveLimits
) -> None:
    for rel, target in links:
        parents = rel.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            if seen.get("/".join(parents[:depth])) is _Kind.SYMLINK:
                raise ArchiveError(f"entry {rel!r} lies below a link")
        (tmp / rel).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            os.symlink(target, tmp / rel)
        except FileExistsError:
            raise ArchiveError(f"link {rel!r} clashes with another entry") from None
    for rel, target in links:
        if not stays_inside(tmp, rel, limits.max_link_hops):
            raise ArchiveError(f"link {rel!r} -> {target!r} points outside the package")


def pack(paths: Sequence[str], root: Path) -> bytes:
    """Return a tar.gz of the artifacts ``paths`` (relative to ``root``); see :func:`pack_to`."""
    buffer = io.BytesIO()
    pack_to(buffer, paths, root)
    return buffer.getvalue()


def pack_to(out: IO[bytes], paths: Sequence[str], root: Path) -> None:
    """Write a tar.gz of the artifacts ``paths`` (files or directories, relative to ``root``).

    Raises :class:`PackError` naming the artifact when a path is absolute, contains ``..``,
    leads outside ``root`` through a link, does not exist, or contains a device file or a link
    that points outside ``root``. Owners are dropped and modes reduced to ``0o755``.
    """
    import tarfile

    try:
        real_root = root.resolve(strict=True)
    except OSError as exc:
        raise PackError(f"build directory {root} is not usable: {exc}") from exc
    names = _artifact_names(paths, real_root)
    try:
        with tarfile.open(fileobj=out, mode="w|gz", format=tarfile.PAX_FORMAT) as tf:
            for name in names:
                tf.add(real_root / name, arcname=name or ".", filter=_PackFilter(real_root))
    except OSError as exc:
        raise PackError(f"cannot pack artifacts: {exc}") from exc


def _artifact_names(paths: Sequence[str], real_root: Path) -> list[str]:
    names: list[str] = []
    for path in paths:
        try:
            name = safe_name(path)
        except ArchiveError as exc:
            raise PackError(f"artifact {path!r}: {exc}") from None
        if not stays_inside(real_root, name):
            raise PackError(f"artifact {path!r} leads outside the build directory")
        if not os.path.lexists(real_root / name):
            raise PackError(f"artifact {path!r} does not exist in the build directory")
        names.append(name)
    # Drop duplicates and paths inside a listed directory: they would be added twice.
    unique = sorted(set(names))
    return [
        n for n in unique if not any(n != d and (d == "" or n.startswith(d + "/")) for d in unique)
    ]


class _PackFilter:
    def __init__(self, real_root: Path) -> None:
        self._root = real_root

    def __call__(self, info: tarfile.TarInfo) -> tarfile.TarInfo:
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            raise PackError(f"artifact {info.name!r} is a special file")
        rel = info.name.removeprefix("./")
        if info.issym() and not stays_inside(self._root, rel if rel != "." else ""):
            raise PackError(f"artifact {info.name!r} links outside the build directory")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode &= 0o755
        return info


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
