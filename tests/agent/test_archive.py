"""Safe unpacking of hostile archives, and packing of build artifacts."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from swarmdeploy.agent import archive
from swarmdeploy.agent.archive import (
    ArchiveLimits,
    _child_command,
    pack,
    remove_partial,
    safe_name,
    stays_inside,
    unpack,
)
from swarmdeploy.agent.errors import ArchiveError, PackError

# ---------------------------------------------------------------- archive builders


def make_zip(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, data, unix mode) -> zip bytes; mode 0o120777 makes a symlink entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buf.getvalue()


def make_tar(members: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = True) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for member in members:
            if isinstance(member, tuple):
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
            else:
                tf.addfile(member)
    return buf.getvalue()


def tar_link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def _assert_nothing_written(parent: Path, dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in parent.iterdir()] == []  # no temp dir, no escaped file


@pytest.fixture(autouse=True, params=["zipread", "zipfile"])
def zip_reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with zips read by the agent's own reader (in this process) and by
    :mod:`zipfile` (in the child), as an archive that :mod:`.zipread` leaves alone is."""
    if request.param == "zipfile":
        monkeypatch.setattr(archive, "read_directory", lambda raw, max_entries: None)
    return str(request.param)


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """An empty directory to unpack into (its only child will be ``pkg``)."""
    (tmp_path / "area").mkdir()
    return tmp_path / "area"


# ---------------------------------------------------------------- good archives


def test_zip_with_dirs_and_exec_bits_unpacks(area: Path) -> None:
    data = make_zip(
        [("app/", b"", 0o40755), ("app/run.sh", b"echo hi\n", 0o100755), ("README", b"r", 0)]
    )
    result = unpack(data, area / "pkg")
    assert (result.files, result.directories, result.links) == (2, 1, 0)
    assert (area / "pkg/app/run.sh").read_bytes() == b"echo hi\n"
    assert os.stat(area / "pkg/app/run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(area / "pkg/README").st_mode & stat.S_IXUSR
    assert result.total_bytes == 9


def test_tar_gz_with_internal_links_unpacks(area: Path, tmp_path: Path) -> None:
    data = make_tar(
        [
            ("./lib/real.txt", b"data"),
            tar_link("lib/alias.txt", "real.txt"),
            tar_link("top", "lib/./alias.txt"),
            tar_link("lib/hard.txt", "lib/real.txt", tarfile.LNKTYPE),
        ]
    )
    result = unpack(data, area / "pkg")
    assert (area / "pkg/top").read_text() == "data"
    assert os.readlink(area / "pkg/lib/alias.txt") == "real.txt"
    assert os.stat(area / "pkg/lib/hard.txt").st_ino == os.stat(area / "pkg/lib/real.txt").st_ino
    assert (result.files, result.links) == (1, 3)


def test_plain_tar_and_file_source_unpack(area: Path, tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar([("x", b"1")], gz=False))
    unpack(archive, area / "pkg")
    assert (area / "pkg/x").read_text() == "1"


# ---------------------------------------------------------------- hostile names


@pytest.mark.parametrize(
    "name", ["../evil", "a/../../evil", "/tmp/evil-abs", "C:/evil", "a\\..\\evil"]
)
def test_zip_hostile_name_rejected(area: Path, name: str) -> None:
    with pytest.raises(ArchiveError):
        unpack(make_zip([("ok", b"1", 0), (name, b"x", 0)]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")
    assert not Path("/tmp/evil-abs").exists()


def test_tar_dotdot_rejected(area: Path) -> None:
    with pytest.raises(ArchiveError, match=r"'\.\.'"):
        unpack(make_tar([("../../evil", b"x")]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")


# ---------------------------------------------------------------- hostile links


def test_zip_symlink_to_etc_rejected(area: Path) -> None:
    data = make_zip([("etc", b"/etc", 0o120777), ("etc/passwd", b"x", 0)])
    with pytest.raises(ArchiveError):
        unpack(data, area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_zip_relative_symlink_escaping_rejected(area: Path) -> None:
    with pytest.raises(ArchiveError, match="outside"):
        unpack(make_zip([("a/up", b"../../..", 0o120777)]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_tar_symlink_chain_escaping_rejected(area: Path) -> None:
    # Each target looks harmless on its own: d/l1 -> .. is the root, l2 -> d/l1/.. is "d"
    # lexically, but really resolves to the parent of the root.
    data = make_tar([("d/f", b""), tar_link("d/l1", ".."), tar_link("l2", "d/l1/..")])
    with pytest.raises(ArchiveError, match="outside"):
        unpack(data, area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_tar_file_below_symlink_rejected(area: Path) -> None:
    data = make_tar([tar_link("s", "sub"), ("sub/keep", b""), ("s/f", b"x")])
    with pytest.raises(ArchiveError):
        unpack(data, area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_tar_link_below_link_rejected(area: Path) -> None:
    data = make_tar([("sub/x", b""), tar_link("s", "sub"), tar_link("s/l", "x")])
    with pytest.raises(ArchiveError, match="below a link"):
        unpack(data, area / "pkg")


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd", "not-in-archive"])
def test_tar_hardlink_escaping_rejected(area: Path, target: str) -> None:
    with pytest.raises(ArchiveError):
        unpack(make_tar([tar_link("h", target, tarfile.LNKTYPE)]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")
    assert os.stat("/etc/passwd").st_nlink == 1


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_device_and_fifo_rejected(area: Path, kind: bytes) -> None:
    info = tarfile.TarInfo("dev")
    info.type = kind
    with pytest.raises(ArchiveError, match="special"):
        unpack(make_tar([info]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")


# ---------------------------------------------------------------- limits and bombs


def test_zip_bomb_over_limit_rejected(area: Path) -> None:
    data = make_zip([("zeros", b"\0" * (2 << 20), 0)])
    assert len(data) < 10_000
    with pytest.raises(ArchiveError, match="bytes"):
        unpack(data, area / "pkg", ArchiveLimits(max_total_bytes=1 << 20))
    _assert_nothing_written(area, area / "pkg")


def test_zip_lying_header_sizes_do_not_help(area: Path) -> None:
    data = bytearray(make_zip([("zeros", b"\0" * (2 << 20), 0)]))
    # Claim 10 bytes in the local header and the central directory: the real data is checked.
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 10)
    struct.pack_into("<I", data, central + 24, 10)
    with pytest.raises(ArchiveError):
        unpack(bytes(data), area / "pkg", ArchiveLimits(max_total_bytes=1 << 20))
    _assert_nothing_written(area, area / "pkg")


def test_tar_gz_bomb_over_limit_rejected(area: Path) -> None:
    data = make_tar([("a", b"\0" * (600 << 10)), ("b", b"\0" * (600 << 10))])
    with pytest.raises(ArchiveError):
        unpack(data, area / "pkg", ArchiveLimits(max_total_bytes=1 << 20))
    _assert_nothing_written(area, area / "pkg")


def test_too_many_entries_rejected(area: Path) -> None:
    data = make_tar([(f"f{i}", b"") for i in range(6)])
    with pytest.raises(ArchiveError, match="entries"):
        unpack(data, area / "pkg", ArchiveLimits(max_entries=5))
    zdata = make_zip([(f"f{i}", b"", 0) for i in range(6)])
    with pytest.raises(ArchiveError, match="entries"):
        unpack(zdata, area / "pkg", ArchiveLimits(max_entries=5))


def test_duplicate_entry_rejected(area: Path) -> None:
    with pytest.raises(ArchiveError, match="duplicate"):
        unpack(make_tar([("x", b"1"), ("./x", b"2")]), area / "pkg")


# ---------------------------------------------------------------- malformed input


def test_unknown_format_rejected(area: Path) -> None:
    with pytest.raises(ArchiveError, match="unknown archive format"):
        unpack(b"just some bytes", area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_truncated_archive_rejected(area: Path) -> None:
    data = make_tar([("f", os.urandom(100_000))])
    with pytest.raises(ArchiveError):
        unpack(data[: len(data) // 2], area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_existing_destination_refused(area: Path) -> None:
    (area / "pkg").mkdir()
    with pytest.raises(ArchiveError, match="exists"):
        unpack(make_tar([("x", b"")]), area / "pkg")


def test_missing_parent_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot unpack into"):
        unpack(make_tar([("x", b"")]), tmp_path / "no/such/pkg")


def test_remove_partial_cleans_interrupted_unpacks(area: Path) -> None:
    (area / ".unpack-abc").mkdir()
    (area / ".unpack-abc/f").write_text("x")
    (area / "keep").mkdir()
    assert remove_partial(area) == [area / ".unpack-abc"]
    assert [p.name for p in area.iterdir()] == ["keep"]


# ---------------------------------------------------------------- the agent's zip reader


def _no_child(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> list[str]:
        raise AssertionError("an unpack child was started")

    monkeypatch.setattr(archive, "_child_command", refuse)


def test_a_common_zip_is_unpacked_in_this_process(
    area: Path, zip_reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_child(monkeypatch)
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("stored.txt", b"plain")
    deflated = make_zip([("d/", b"", 0o40755), ("d/x", os.urandom(300_000), 0o100644)])
    if zip_reader == "zipfile":  # a zip the reader leaves alone goes to the child
        with pytest.raises(AssertionError, match="child"):
            unpack(deflated, area / "b")
        return
    assert unpack(stored.getvalue(), area / "a").files == 1
    assert unpack(deflated, area / "b").files == 1
    assert (area / "a/stored.txt").read_bytes() == b"plain"
    with pytest.raises(AssertionError, match="child"):  # a tar still goes to the child
        unpack(make_tar([("x", b"1")]), area / "c")


def _zip_compressed(method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("b.txt", b"a member compressed otherwise " * 100)
    return buf.getvalue()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA], ids=["bzip2", "lzma"])
def test_a_zip_the_reader_leaves_alone_is_unpacked_by_zipfile(area: Path, method: int) -> None:
    data = _zip_compressed(method)  # compression methods the reader leaves to zipfile
    assert archive.read_directory(io.BytesIO(data), 10) is None
    assert unpack(data, area / "pkg").files == 1


def _assert_refused(area: Path, data: bytearray) -> None:
    """The damaged zip ``data`` is an :class:`ArchiveError` and leaves nothing behind."""
    with pytest.raises(ArchiveError):
        unpack(bytes(data), area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_a_corrupt_zip_member_is_refused(area: Path) -> None:
    data = bytearray(make_zip([("x", b"some content " * 1000, 0)]))
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 16, 0x12345678)  # the directory's CRC-32
    local = data.find(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 14, 0x12345678)  # and the local header's
    _assert_refused(area, data)


def test_a_zip_member_that_does_not_inflate_is_refused(area: Path) -> None:
    content = b"".join(b"line %d of a text that compresses\n" % i for i in range(20_000))
    data = bytearray(make_zip([("x", content, 0)]))
    local = data.find(b"PK\x03\x04")
    start = local + 30 + 1  # the member's data, after its name "x"
    data[start + 1000 : start + 3000] = b"\xff" * 2000
    _assert_refused(area, data)


def test_zip_headers_naming_different_files_are_refused(area: Path) -> None:
    data = bytearray(make_zip([("good", b"1", 0)]))
    local = data.find(b"PK\x03\x04")
    data[local + 30 : local + 34] = b"evil"  # the local header's name
    _assert_refused(area, data)


def test_a_zip_member_outside_the_archive_is_refused(area: Path) -> None:
    data = bytearray(make_zip([("x", b"1", 0)]))
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 42, 1 << 20)  # its local header offset
    _assert_refused(area, data)


# ---------------------------------------------------------------- the unpacking child

_FRESH_PROCESS = """
import sys
from pathlib import Path
from swarmdeploy.agent.archive import unpack
result = unpack(Path(sys.argv[1]), Path(sys.argv[2]))
loaded = [m for m in ("zipfile", "tarfile", "gzip", "bz2", "lzma", "shutil") if m in sys.modules]
print(result.files, loaded)
"""


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_unpacking_leaves_no_archive_module_in_the_caller(
    area: Path, tmp_path: Path, kind: str
) -> None:
    source = tmp_path / f"a.{kind}"
    if kind == "zip":  # unpacked by the caller itself, with the agent's own reader
        source.write_bytes(make_zip([("run.sh", b"echo hi\n", 0o100755)]))
    else:  # unpacked by the child
        source.write_bytes(make_tar([("run.sh", b"echo hi\n")]))
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(source), str(area / "pkg")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split(maxsplit=1) == ["1", "[]\n"]
    assert (area / "pkg/run.sh").read_text() == "echo hi\n"


def test_failing_unpack_process_is_an_archive_error_and_leaves_nothing(
    area: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in interpreter that dies half-way: a temporary dir left, a message on stderr.
    # Its arguments: -I -S -c CODE PACKAGE_DIR DEST SOURCE LIMIT...
    fake = tmp_path / "python"
    fake.write_text(
        '#!/bin/sh\nmkdir "$(dirname "$6")/.unpack-left"\necho out of memory >&2\nexit 9\n'
    )
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake))
    with pytest.raises(ArchiveError, match=r"process failed \(9: out of memory\)"):
        unpack(make_tar([("x", b"1")]), area / "pkg")
    _assert_nothing_written(area, area / "pkg")


def test_the_unpack_child_starts_lean(area: Path) -> None:
    """Every deployment starts one: without the site packages, and without the modules
    this one does not need (dataclasses and inspect were half of its start)."""
    loaded = "sorted({'dataclasses', 'inspect', 'site'} & set(sys.modules))"
    probe = f"import swarmdeploy.agent.archive; print({loaded})"
    command = _child_command()
    command[4] = command[4].split("from swarmdeploy", 1)[0] + probe
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
    assert unpack(make_tar([("x", b"1")]), area / "pkg").files == 1  # and it unpacks


def test_without_an_interpreter_unpacking_happens_here(
    area: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", "")
    assert unpack(make_tar([("x", b"1")]), area / "pkg").files == 1
    assert (area / "pkg/x").read_text() == "1"


def test_safe_name_normalises() -> None:
    assert safe_name("./a//b/./c") == "a/b/c"
    assert safe_name("./") == ""


@pytest.mark.parametrize("name", ["x\0y", "a" * 2000])
def test_safe_name_rejects_nul_and_overlong(name: str) -> None:
    with pytest.raises(ArchiveError):
        safe_name(name)


def test_stays_inside_follows_links_step_by_step(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    os.symlink("..", tmp_path / "d/up")
    assert stays_inside(tmp_path, "d/up/d")
    assert not stays_inside(tmp_path, "d/up/..")
    os.symlink("loop", tmp_path / "loop")
    assert not stays_inside(tmp_path, "loop")


# ---------------------------------------------------------------- pack


@pytest.fixture
def build(tmp_path: Path) -> Path:
    root = tmp_path / "build"
    (root / "dist/sub").mkdir(parents=True)
    (root / "dist/app.bin").write_bytes(b"\x7fELF")
    (root / "dist/sub/x.txt").write_text("x")
    os.symlink("app.bin", root / "dist/alias")
    (root / "notes.txt").write_text("n")
    return root


def test_pack_roundtrip(build: Path, tmp_path: Path) -> None:
    data = pack(["dist", "notes.txt", "dist/sub/x.txt"], build)
    result = unpack(data, tmp_path / "out")
    assert (tmp_path / "out/dist/app.bin").read_bytes() == b"\x7fELF"
    assert (tmp_path / "out/dist/alias").read_bytes() == b"\x7fELF"
    assert (tmp_path / "out/notes.txt").read_text() == "n"
    assert result.files == 3  # dist/sub/x.txt only once


def test_pack_whole_directory(build: Path, tmp_path: Path) -> None:
    unpack(pack(["."], build), tmp_path / "out")
    assert (tmp_path / "out/dist/sub/x.txt").exists()


def test_pack_missing_artifact_named(build: Path) -> None:
    with pytest.raises(PackError, match=r"'dist/missing\.bin' does not exist"):
        pack(["dist", "dist/missing.bin"], build)


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside", "dist/../../x"])
def test_pack_refuses_absolute_and_dotdot(build: Path, path: str) -> None:
    with pytest.raises(PackError, match="artifact"):
        pack([path], build)


def test_pack_refuses_link_leading_outside(build: Path) -> None:
    os.symlink("/etc", build / "etc")
    with pytest.raises(PackError, match="outside"):
        pack(["etc/passwd"], build)
    with pytest.raises(PackError, match="outside"):
        pack(["etc"], build)


def test_pack_refuses_link_outside_inside_directory(build: Path) -> None:
    os.symlink("../../../secret", build / "dist/sub/leak")
    with pytest.raises(PackError, match="links outside"):
        pack(["dist"], build)


def test_pack_missing_build_directory(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="build directory"):
        pack(["x"], tmp_path / "nope")


def test_pack_refuses_fifo(build: Path) -> None:
    os.mkfifo(build / "dist/pipe")
    with pytest.raises(PackError, match="special"):
        pack(["dist"], build)
