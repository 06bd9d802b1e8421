"""Build tasks on a build host (seed 003 "Package Builder", docs/protocol.md §6.6).

The build commands run one after the other in the task's build directory, in the sandbox of
the manifest's policy (abort on the first failure, output logged like install output); then
the listed artifacts are packed into one tar.gz (:func:`swarmdeploy.agent.archive.pack_to`,
which refuses missing, absolute, ``..`` and escaping paths and names the offending artifact)
and uploaded with :class:`~swarmdeploy.agent.upload.ArtifactUpload`. Failures raise
:class:`~swarmdeploy.agent.errors.TaskError`; the task processor reports ``build_failed``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from swarmdeploy.agent.context import AgentContext, in_thread
from swarmdeploy.agent.errors import TaskError
from swarmdeploy.agent.process import Launcher
from swarmdeploy.agent.runner import CommandResult, run_sequence
from swarmdeploy.agent.state import StageRun
from swarmdeploy.agent.transfer import sha256_file
from swarmdeploy.agent.upload import ArtifactUpload
from swarmdeploy.protocol.manifest import TaskManifest

logger = logging.getLogger(__name__)

ARTIFACT_NAME = "artifacts.tar.gz"
STAGE = "build"


def describe_failure(stage: str, result: CommandResult, timeout_s: float | None) -> str:
    """One line saying how a sequential command failed (goes into the task's state reason)."""
    if result.error is not None:
        return f"{stage} command {result.command!r} could not start: {result.error}"
    if result.timed_out:
        return f"{stage} command {result.command!r} timed out after {timeout_s:.0f} s"
    code = result.exit_code
    how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited {code}"
    return f"{stage} command {result.command!r} {how}"


async def run_build(
    ctx: AgentContext,
    stage: StageRun,
    manifest: TaskManifest,
    workdir: Path,
    track: Callable[[ArtifactUpload | None], None],
    launcher: Launcher,
    env: Mapping[str, str],
) -> None:
    """Build in ``workdir`` with ``launcher`` (the sandbox of the manifest's policy) and
    ``env``, pack and upload the artifacts. ``track`` is told about the upload in progress
    so that ``upload_ack``/``error`` messages reach it."""
    task_id = manifest.task_id
    collector = ctx.collector
    collector.marker(task_id, STAGE, f"running {len(manifest.build_commands)} build command(s)")
    result = await run_sequence(
        manifest.build_commands,
        cwd=workdir,
        env=env,
        on_line=collector.sink(task_id, STAGE, debug=manifest.debug),
        config=ctx.sequence(),
        run_id=stage.run_id,
        launcher=launcher,
    )
    ctx.state.stage_run = None
    ctx.save()
    failed = result.failed
    if failed is not None:
        raise TaskError(describe_failure(STAGE, failed, ctx.settings.install_timeout_s))
    archive = workdir.parent / ARTIFACT_NAME
    await _pack(manifest.build_artifacts, workdir, archive)
    digest = await in_thread(lambda: sha256_file(archive))
    size = archive.stat().st_size
    collector.marker(task_id, STAGE, f"uploading {ARTIFACT_NAME} ({size} bytes, sha256 {digest})")
    upload = ArtifactUpload(
        task_id,
        archive,
        digest,
        ARTIFACT_NAME,
        ctx.send,
        window=ctx.settings.chunk_window,
        timeout_s=ctx.settings.resend_s,
    )
    track(upload)
    try:
        await upload.run()
    finally:
        track(None)


async def _pack(paths: list[str], workdir: Path, archive: Path) -> None:
    from swarmdeploy.agent.archive import pack_to

    def pack() -> None:
        fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            pack_to(out, paths, workdir)

    if not paths:
        raise TaskError("the build lists no artifacts")
    await in_thread(pack)
