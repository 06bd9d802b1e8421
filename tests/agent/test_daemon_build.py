"""Build tasks through the daemon: build commands, packing, chunked upload, failures."""

from __future__ import annotations

import io
import tarfile

from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig

S = TargetState
SOURCE = {"src.txt": "hello build\n"}


async def test_build_uploads_the_packed_artifacts_and_reports_built(rig: Rig) -> None:
    await rig.start()
    await rig.deploy(
        "b1",
        S.BUILT,
        kind="build",
        files=SOURCE,
        build_commands=[
            "mkdir out",
            "tr a-z A-Z < src.txt > out/result.txt",
            "head -c 600000 /dev/urandom > out/big",
        ],
        build_artifacts=["out"],
    )
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
    artifacts = ["a", "missing.bin"]
    await rig.deploy(
        "b1", S.BUILD_FAILED, kind="build", build_commands=["touch a"], build_artifacts=artifacts
    )
    assert "missing.bin" in rig.reason("b1")
    assert not rig.manager.uploads


async def test_failing_build_command_fails_the_build_with_its_output(rig: Rig) -> None:
    await rig.start()
    failing = ["echo compiler error >&2; exit 2"]
    await rig.deploy(
        "b1", S.BUILD_FAILED, kind="build", build_commands=failing, build_artifacts=["x"]
    )
    assert "exited 2" in rig.reason("b1")
    await rig.output_seen("b1", "compiler error")


def _uploaded_file(rig: Rig, name: str) -> bytes:
    """The file ``name`` from whichever uploaded artifact holds it."""
    for upload in rig.manager.uploads.values():
        with tarfile.open(fileobj=io.BytesIO(upload.data()), mode="r:gz") as tf:
            if name in tf.getnames():
                member = tf.extractfile(name)
                assert member is not None
                return member.read()
    raise AssertionError(f"no upload holds {name}")


async def test_nothing_of_one_build_is_left_for_the_next(rig: Rig) -> None:
    await rig.start()
    await rig.deploy(
        "b1",
        S.BUILT,
        kind="build",
        files=SOURCE,
        build_commands=["touch leaked-file", 'touch "$HOME/leaked-home"', "pwd > where"],
        build_artifacts=["where"],
    )
    first_dir = _uploaded_file(rig, "where").decode().strip()
    first_task_dir = rig.settings.data_dir / "tasks" / "b1"
    assert first_dir.startswith(str(first_task_dir))
    assert not first_task_dir.exists()  # gone, with its $HOME
    await rig.deploy(
        "b2",
        S.BUILT,
        kind="build",
        files=SOURCE,
        build_commands=[
            "test ! -e leaked-file",
            'test ! -e "$HOME/leaked-home"',
            f"test ! -e {first_dir}",
            'names=$(ls -A); echo "$names" > listing',
        ],
        build_artifacts=["listing"],
    )
    assert _uploaded_file(rig, "listing").split() == [b"src.txt"]
    assert not (rig.settings.data_dir / "tasks" / "b2").exists()


async def test_failed_build_directory_is_removed_too(rig: Rig) -> None:
    await rig.start()
    await rig.deploy(
        "b1", S.BUILD_FAILED, kind="build", files=SOURCE,
        build_commands=["touch half-built; exit 1"], build_artifacts=["half-built"],
    )  # fmt: skip
    assert not (rig.settings.data_dir / "tasks" / "b1").exists()
