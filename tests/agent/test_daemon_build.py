"""Build tasks through the daemon: build commands, packing, chunked upload, failures."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig

S = TargetState
SOURCE = {"src.txt": "hello build\n"}


async def build(
    rig: Rig,
    task_id: str,
    until: TargetState,
    commands: list[str],
    artifacts: list[str],
    **task: Any,
) -> None:
    """Deploy build task ``task_id`` (``commands``, then pack ``artifacts``; other ``task``
    fields as for ``FakeManager.add_task``) and wait until it reports ``until``."""
    await rig.deploy(
        task_id, until, kind="build", build_commands=commands, build_artifacts=artifacts, **task
    )


async def test_build_uploads_the_packed_artifacts_and_reports_built(rig: Rig) -> None:
    await rig.start()
    commands = [
        "mkdir out",
        "tr a-z A-Z < src.txt > out/result.txt",
        "head -c 600000 /dev/urandom > out/big",
    ]
    await build(rig, "b1", S.BUILT, commands, ["out"], files=SOURCE)
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
    await build(rig, "b1", S.BUILD_FAILED, ["touch a"], ["a", "missing.bin"])
    assert "missing.bin" in rig.reason("b1")
    assert not rig.manager.uploads


async def test_failing_build_command_fails_the_build_with_its_output(rig: Rig) -> None:
    await rig.start()
    await build(rig, "b1", S.BUILD_FAILED, ["echo compiler error >&2; exit 2"], ["x"])
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
    leaking = ["touch leaked-file", 'touch "$HOME/leaked-home"', "pwd > where"]
    await build(rig, "b1", S.BUILT, leaking, ["where"], files=SOURCE)
    first_dir = _uploaded_file(rig, "where").decode().strip()
    first_task_dir = rig.settings.data_dir / "tasks" / "b1"
    assert first_dir.startswith(str(first_task_dir))
    assert not first_task_dir.exists()  # gone, with its $HOME
    checks = [
        "test ! -e leaked-file",
        'test ! -e "$HOME/leaked-home"',
        f"test ! -e {first_dir}",
        'names=$(ls -A); echo "$names" > listing',
    ]
    await build(rig, "b2", S.BUILT, checks, ["listing"], files=SOURCE)
    assert _uploaded_file(rig, "listing").split() == [b"src.txt"]
    assert not (rig.settings.data_dir / "tasks" / "b2").exists()


async def test_failed_build_directory_is_removed_too(rig: Rig) -> None:
    await rig.start()
    failing = ["touch half-built; exit 1"]
    await build(rig, "b1", S.BUILD_FAILED, failing, ["half-built"], files=SOURCE)
    assert not (rig.settings.data_dir / "tasks" / "b1").exists()
