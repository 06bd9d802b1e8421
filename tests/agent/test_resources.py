"""Announcement assessment: architecture, tags, size and disk (with a configured size limit)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarmdeploy.agent.resources import (
    DiskPolicy,
    Requirements,
    assess,
    data_dir_usage,
    disk_low,
    free_bytes,
    human_bytes,
    machine_arch,
    normalize_arch,
)

KB = 1024
#: A data dir that may hold 1 MiB, with a 100 KiB margin and a 2x unpack factor.
SMALL = DiskPolicy(
    max_data_bytes=1024 * KB, safety_margin_bytes=100 * KB, unpack_factor=2.0, low_disk_bytes=0
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "tasks/old").mkdir(parents=True)
    (tmp_path / "tasks/old/blob").write_bytes(b"\0" * (600 * KB))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "canonical"),
    [("amd64", "x86_64"), ("ARM64", "aarch64"), ("armhf", "armv7l"), ("riscv64", "riscv64")],
)
def test_normalize_arch(name: str, canonical: str) -> None:
    assert normalize_arch(name) == canonical


def test_machine_arch_is_normalized() -> None:
    assert machine_arch() == normalize_arch(machine_arch())


def test_accepts_when_everything_fits(data_dir: Path) -> None:
    result = assess(Requirements(100 * KB), data_dir=data_dir, policy=SMALL)
    assert result.accepted and result.code is None


def test_declines_when_disk_would_fill(data_dir: Path) -> None:
    # 200 KiB x 2 + 100 KiB margin = 500 KiB needed; 1024 - 600 = 424 KiB free.
    result = assess(Requirements(200 * KB), data_dir=data_dir, policy=SMALL)
    assert not result.accepted and result.code == "insufficient_disk"
    assert result.reason == "not enough disk: need 512.0 kB, 434.2 kB free"


def test_announced_unpacked_size_replaces_the_factor(data_dir: Path) -> None:
    # 100 KiB payload + 300 KiB unpacked + 100 KiB margin = 500 KiB > 424 KiB free.
    req = Requirements(100 * KB, unpacked_bytes=300 * KB)
    assert assess(req, data_dir=data_dir, policy=SMALL).code == "insufficient_disk"
    req = Requirements(100 * KB, unpacked_bytes=200 * KB)
    assert assess(req, data_dir=data_dir, policy=SMALL).accepted


def test_declines_when_disk_is_low(data_dir: Path) -> None:
    low = DiskPolicy(max_data_bytes=1024 * KB, low_disk_bytes=500 * KB, safety_margin_bytes=0)
    result = assess(Requirements(1), data_dir=data_dir, policy=low)
    assert (result.code, result.reason) == ("disk_low", "disk is low: 434.2 kB free")


def test_free_bytes_is_min_of_quota_and_filesystem(data_dir: Path) -> None:
    assert free_bytes(data_dir, SMALL) == 424 * KB
    assert free_bytes(data_dir, DiskPolicy()) > 424 * KB
    assert free_bytes(data_dir, DiskPolicy(max_data_bytes=10)) == 0


def test_usage_does_not_follow_links(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside") / "big"
    outside.write_bytes(b"\0" * (300 * KB))
    os.symlink(outside, data_dir / "link")
    os.symlink(outside.parent, data_dir / "dirlink")
    assert data_dir_usage(data_dir) == 600 * KB


@pytest.mark.parametrize("wanted", [["aarch64", "armhf"], ["riscv64"]])
def test_declines_incompatible_arch(data_dir: Path, wanted: list[str]) -> None:
    result = assess(Requirements(1, arch=wanted), data_dir=data_dir, policy=SMALL, arch="x86_64")
    assert (result.accepted, result.code) == (False, "incompatible_arch")
    assert result.reason is not None and "x86_64" in result.reason


def test_accepts_arch_alias(data_dir: Path) -> None:
    req = Requirements(1, arch=["amd64", "arm64"])
    assert assess(req, data_dir=data_dir, policy=SMALL, arch="x86_64").accepted
    assert assess(req, data_dir=data_dir, policy=SMALL, arch="aarch64").accepted


def test_declines_missing_tags(data_dir: Path) -> None:
    req = Requirements(1, tags=["gpu", "camera"])
    result = assess(req, data_dir=data_dir, policy=SMALL, tags=["camera"])
    assert (result.code, result.reason) == ("missing_tags", "device lacks required tags: gpu")


def test_declines_payload_over_limit(data_dir: Path) -> None:
    policy = DiskPolicy(max_payload_bytes=10)
    assert assess(Requirements(11), data_dir=data_dir, policy=policy).code == "too_large"


def test_declines_negative_size(data_dir: Path) -> None:
    assert assess(Requirements(-1), data_dir=data_dir, policy=SMALL).code == "invalid_size"


@pytest.mark.parametrize(
    ("count", "text"), [(5, "5 bytes"), (52_000_000, "52.0 MB"), (3 * 10**12, "3000.0 GB")]
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_disk_low_flag(data_dir: Path) -> None:
    assert not disk_low(data_dir, SMALL)
    low = DiskPolicy(max_data_bytes=1024 * KB, low_disk_bytes=500 * KB)
    assert disk_low(data_dir, low)


def test_required_free_disk_declines_naming_the_requirement(data_dir: Path) -> None:
    result = assess(Requirements(1, min_free_disk_bytes=500 * KB), data_dir=data_dir, policy=SMALL)
    assert not result.accepted and result.code == "insufficient_disk"
    assert "deploy.requires.minFreeDiskMB" in (result.reason or "")
    fits = Requirements(1, min_free_disk_bytes=300 * KB)
    assert assess(fits, data_dir=data_dir, policy=SMALL).accepted


def test_required_memory_declines_naming_the_requirement(data_dir: Path) -> None:
    result = assess(Requirements(1, min_free_memory_bytes=1 << 62), data_dir=data_dir, policy=SMALL)
    assert not result.accepted and result.code == "insufficient_memory"
    assert "deploy.requires.minFreeMemoryMB" in (result.reason or "")
    fits = Requirements(1, min_free_memory_bytes=1)
    assert assess(fits, data_dir=data_dir, policy=SMALL).accepted


def test_required_architecture_accepts_aliases(data_dir: Path) -> None:
    here = machine_arch()
    alias = {"x86_64": "amd64", "aarch64": "arm64"}.get(here, here)
    assert assess(Requirements(1, arch=[alias]), data_dir=data_dir, policy=SMALL).accepted
    other = assess(Requirements(1, arch=["riscv128"]), data_dir=data_dir, policy=SMALL)
    assert other.code == "incompatible_arch" and "deploy.requires.arch" in (other.reason or "")
