"""Build tasks through the daemon: build commands, packing, chunked upload, failures."""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig, make_rig
from tests.agent.helpers import eventually

S = TargetState
SOURCE = {"src.txt": "hello build\n"}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    rig = await make_rig(tmp_path)
    try:
        yield rig
    finally:
        await rig.close()


async def test_build_uploads_the_packed_artifacts_and_reports_built(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task(
        "b1",
        kind="build",
        files=SOURCE,
        build_commands=[
            "mkdir out",
            "tr a-z A-Z < src.txt > out/result.txt",
            "head -c 600000 /dev/urandom > out/big",
        ],
        build_artifacts=["out"],
    )
    await rig.manager.announce(TARGET, "b1")
    await rig.wait_state("b1", S.BUILT)
    assert rig.manager.states_of(TARGET, "b1") == [S.ACCEPTED, S.TRANSFERRING, S.BUILDING, S.BUILT]
    (upload,) = rig.manager.uploads.values()
    assert upload.complete and upload.name == "artifacts.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(upload.data()), mode="r:gz") as tf:
        names = set(tf.getnames())
        member = tf.extractfile("out/result.txt")
        assert member is not None and member.read() == b"HELLO BUILD\n"
    assert {"out", "out/result.txt", "out/big"} <= names
    assert not (rig.settings.data_dir / "tasks" / "b1").exists()  # the work dir is cleaned


async def test_missing_build_artifact_fails_the_build_naming_it(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task(
        "b1", kind="build", build_commands=["touch a"], build_artifacts=["a", "missing.bin"]
    )
    await rig.manager.announce(TARGET, "b1")
    await rig.wait_state("b1", S.BUILD_FAILED)
    assert "missing.bin" in rig.manager.reason(TARGET, "b1")
    assert not rig.manager.uploads


async def test_failing_build_command_fails_the_build_with_its_output(rig: Rig) -> None:
    await rig.start()
    rig.manager.add_task(
        "b1",
        kind="build",
        build_commands=["echo compiler error >&2; exit 2"],
        build_artifacts=["x"],
    )
    await rig.manager.announce(TARGET, "b1")
    await rig.wait_state("b1", S.BUILD_FAILED)
    assert "exited 2" in rig.manager.reason(TARGET, "b1")
    await eventually(lambda: "compiler error" in rig.manager.outputs(TARGET, "b1"))
