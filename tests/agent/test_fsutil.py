"""Crash-safe write helpers and link-safe tree removal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from swarmdeploy.agent.fsutil import atomic_write, create_temp_dir, create_temp_file, remove_tree


def test_atomic_write_replaces_with_private_mode(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_atomic_write_failure_leaves_old_content(tmp_path: Path) -> None:
    target = tmp_path / "d"
    target.mkdir()  # os.replace of a file onto a directory fails
    try:
        atomic_write(target, b"x")
    except OSError:
        pass
    else:
        raise AssertionError("expected an OSError")
    assert target.is_dir() and [p.name for p in tmp_path.iterdir()] == ["d"]


def test_temp_names_are_unique(tmp_path: Path) -> None:
    dirs = {create_temp_dir(tmp_path, ".x-") for _ in range(50)}
    fds = [create_temp_file(tmp_path, ".y-") for _ in range(50)]
    for fd, _ in fds:
        os.close(fd)
    assert len(dirs) == 50 and len({p for _, p in fds}) == 50
    assert all(stat.S_IMODE(d.stat().st_mode) == 0o700 for d in dirs)


def test_remove_tree_never_follows_links(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep").write_text("k")
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub/f").write_text("x")
    os.symlink(precious, victim / "link")
    os.symlink(precious / "keep", victim / "sub/filelink")
    remove_tree(victim)
    assert not victim.exists() and (precious / "keep").read_text() == "k"


def test_remove_tree_of_symlink_removes_only_the_link(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real/f").write_text("x")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    remove_tree(tmp_path / "alias")
    assert not (tmp_path / "alias").is_symlink() and (tmp_path / "real/f").exists()


def test_remove_tree_of_missing_path_is_quiet(tmp_path: Path) -> None:
    remove_tree(tmp_path / "nothing")
