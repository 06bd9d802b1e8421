"""A small device takes small tasks (issue #10 item 11, docs/reliability.md): the manager
announces the real unpacked size, and the agent's disk thresholds scale with its disk."""

from __future__ import annotations

import base64
import io
import pathlib
import tarfile
import zipfile
from collections.abc import Callable

import pytest

from swarmdeploy.localfleet import LocalFleet, wait_for
from swarmdeploy.manager.link.unpacked import UnpackedMeter
from tests.e2e.conftest import zip_b64

Mount = Callable[[pathlib.Path, str], pathlib.Path]


def _measure(data: bytes, piece: int = 1000) -> int:
    meter = UnpackedMeter()
    for at in range(0, len(data), piece):
        meter.feed(data[at : at + piece])
    return meter.result()


def test_unpacked_size_of_zip_and_tar_gz_is_measured() -> None:
    files = {"a.txt": "a" * 100_000, "b/c.bin": "c" * 50_000}
    zipped = base64.b64decode(zip_b64(files))
    with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
        assert _measure(zipped) == sum(i.file_size for i in zf.infolist()) == 150_000
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text.encode()))
    unpacked = _measure(buf.getvalue())
    assert 150_000 <= unpacked <= 150_000 + 10 * 512 + 10_240  # data + tar headers/padding
    assert _measure(b"not an archive at all") == 0  # unknown


@pytest.mark.e2e
def test_agent_on_a_20_mb_disk_accepts_a_small_task_with_default_flags(
    small_disk: Mount, fleet: LocalFleet
) -> None:
    small_disk(fleet.agent_dir("tiny"), "20m")
    token = fleet.tokens("set-tiny", 1)[0]
    fleet.start_agent("tiny", token=token)  # no disk flags: the defaults must fit the device
    fleet.wait_online(["tiny"])
    doc = fleet.api.request(
        "POST",
        "/tasks",
        json={
            "source": {"zip": zip_b64({"run.sh": "echo small"})},
            "deploy": {"run": {"commands": ["echo small-task-ran"]}, "target": {"ids": ["tiny"]}},
        },
    )
    task = str(doc["id"])
    fleet.wait_states(task, {"tiny": "exited"}, timeout_s=30)
    wait_for(lambda: fleet.logs(task=task), timeout_s=10, what="the task's markers")
