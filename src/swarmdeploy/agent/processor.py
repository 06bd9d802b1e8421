"""The task processor: assess, fetch, verify, transfer, unpack, install or build (seed 003
"Task Processor", docs/protocol.md §6.3-§6.6).

Announcements are assessed at once (:func:`swarmdeploy.agent.resources.assess`) and answered
``accepted`` or ``declined``. Accepted tasks are processed one at a time, in order, by a worker
task; each goes through :meth:`TaskProcessor._process`:

1. wait for the ``state_ack`` of ``accepted`` (the manager serves the manifest only then);
2. ``fetch_task`` until the ``task`` arrives; verify it (CRD-75/78,
   :meth:`~swarmdeploy.agent.trust.Verifier.verify_received`: signer, signature, revocation,
   task id, target, expiry, sequence), record its sequence and keep it in
   ``DIR/tasks/<task>/task.msgpack`` for a resume and for the checks before every start;
3. pull the artifacts (``transferring``, :mod:`swarmdeploy.agent.transfer`) and check each
   against the signed size and SHA-256 again before unpacking (a resumed transfer reuses
   files already on disk);
4. deploy: ``installing``, safe unpack into ``DIR/tasks/<task>/app``, install commands in
   order in the sandbox (abort on the first failure; the previous deployment keeps
   running), seal the install dir and record its digest, ``installed``, then the deployment
   supervisor checks and replaces the running deployment; or build
   (:mod:`swarmdeploy.agent.builder`).

An announcement is declined at once when the agent has no trust anchor (and is not in
insecure lab mode); a task that fails verification ends in ``install_failed`` (or
``build_failed``) with ``refused: <code>: ...`` as the reason.

A :class:`~swarmdeploy.agent.errors.TaskError` ends the task in ``install_failed`` or
``build_failed`` with its message as the reason; so does any unexpected exception (an agent
bug), as ``internal error in the agent: ...`` -- or ``failed`` once the task was installed --
so that no task stays ``installing`` on the manager. A stop request cancels the task wherever it
is (commands are killed by group) and reports ``stopped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path

from swarmdeploy.agent.apps import AppSupervisors
from swarmdeploy.agent.archive import ArchiveLimits, unpack
from swarmdeploy.agent.builder import describe_failure, run_build
from swarmdeploy.agent.confine import Confinement, TaskDirs, recorded_digest
from swarmdeploy.agent.context import AgentContext, in_thread
from swarmdeploy.agent.diskfull import NoSpaceWatch, describe_os_error
from swarmdeploy.agent.errors import ArchiveError, TaskError, TaskRefused
from swarmdeploy.agent.fsutil import remove_tree
from swarmdeploy.agent.manifests import ManifestFetcher, load_task, store_task
from swarmdeploy.agent.output import now_ms
from swarmdeploy.agent.ranged import RangedTransfer, RangeSource
from swarmdeploy.agent.resources import Requirements, assess, free_bytes, human_bytes
from swarmdeploy.agent.runner import new_run_id, run_sequence
from swarmdeploy.agent.state import StageRun
from swarmdeploy.agent.transfer import TaskTransfer
from swarmdeploy.agent.trust import Accepted, Verifier
from swarmdeploy.agent.upload import ArtifactUpload
from swarmdeploy.crypto.rejections import VerificationError
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import TaskManifest
from swarmdeploy.protocol.messages import (
    Announce,
    Chunk,
    Error,
    Task,
    UploadAck,
)
from swarmdeploy.protocol.states import FINAL_STATES, TargetState

logger = logging.getLogger(__name__)
S = TargetState


class TaskProcessor:
    """Processes announced tasks (see the module docstring). Messages are handed in by the
    daemon's receive loop through the ``on_*`` methods, which never block."""

    def __init__(
        self,
        ctx: AgentContext,
        deployments: AppSupervisors,
        verifier: Verifier,
        confinement: Confinement,
        *,
        fetch_paused: Callable[[], bool],
        before_fetch: Callable[[], Awaitable[object]] | None = None,
        ranged: RangeSource | None = None,
    ) -> None:
        self._ctx = ctx
        self._deployments = deployments
        self._verifier = verifier
        self._confine = confinement
        self._fetch_paused = fetch_paused
        self._before_fetch = before_fetch
        self._ranged = ranged
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self._job: tuple[str, asyncio.Task[None]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._manifests = ManifestFetcher(ctx.send, ctx.settings.resend_s)
        self._kinds: dict[str, str] = {}
        self._transfer: TaskTransfer | RangedTransfer | None = None
        self._upload: ArtifactUpload | None = None

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker that processes accepted tasks one after the other."""
        self._worker = asyncio.get_running_loop().create_task(self._work())

    async def close(self) -> None:
        """Agent shutdown: cancel the task in progress (its commands are killed) and stop."""
        for task in (self._job[1] if self._job else None, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def queued(self) -> list[str]:
        """Task ids waiting or in progress, in processing order."""
        current = [self._job[0]] if self._job else []
        return current + list(self._queue)

    async def resume(self) -> None:
        """Agent start: continue what the previous agent process left unfinished."""
        current = self._deployments.current_task_ids() | self._deployments.held_task_ids()
        interrupted = self._ctx.state.stage_run
        for task_id, state in list(self._ctx.state.history.items()):
            if state in (S.ACCEPTED, S.TRANSFERRING):
                self._enqueue(task_id)
            elif state in (S.INSTALLING, S.BUILDING):
                build = state is S.BUILDING
                self._kinds[task_id] = "build" if build else "deploy"
                stage = "build" if build else "install"
                await self._fail(task_id, f"{stage} interrupted by an agent restart")
            elif state is S.INSTALLED and task_id not in current:
                self._enqueue(task_id)  # installed, but the switch did not happen
            elif state in (S.RUNNING, S.HEALTHY) and task_id not in current:
                await self._ctx.reporter.report(task_id, S.STOPPED, "replaced by a newer task")
        if interrupted is not None:
            self._ctx.state.stage_run = None
            self._ctx.save()

    # --- messages --------------------------------------------------------------------

    async def on_announce(self, msg: Announce) -> None:
        """First stage: assess the announcement, answer ``accepted`` or ``declined``."""
        reporter = self._ctx.reporter
        task_id = msg.task_id
        ended = reporter.current(task_id)
        if self._ctx.state.begin_attempt(task_id, msg.attempt):
            self._ctx.save()
            logger.info(
                "task %s: announced again as attempt %d (it ended %s here); assessing it anew",
                task_id, msg.attempt, ended, extra={"task": task_id},
            )  # fmt: skip
        if reporter.current(task_id) is not None:
            await reporter.repeat(task_id)  # a duplicate delivery: say where we stand
            return
        self._kinds[task_id] = msg.kind
        reason = self._assess(msg)
        if reason is not None:
            self._ctx.collector.marker(task_id, "announce", f"declined: {reason}", error=True)
            await reporter.report(task_id, S.DECLINED, reason)
            return
        await reporter.report(task_id, S.ACCEPTED)
        self._enqueue(task_id)

    def _assess(self, msg: Announce) -> str | None:
        refusal = self._verifier.decline_reason()
        if refusal is not None:
            return refusal
        if msg.expires_at_ms and msg.expires_at_ms < now_ms():
            return "the task expired before it could be assessed"
        result = assess(
            Requirements(
                payload_bytes=msg.size_bytes,
                unpacked_bytes=msg.unpacked_bytes,
                arch=msg.arch,
                min_free_disk_bytes=msg.min_free_disk_bytes,
                min_free_memory_bytes=msg.min_free_memory_bytes,
            ),
            data_dir=self._ctx.settings.data_dir,
            policy=self._ctx.disk_policy(),
        )
        return None if result.accepted else result.reason or result.code or "declined"

    def on_task(self, msg: Task) -> None:
        """Second stage: the manifest we asked for."""
        self._manifests.on_task(msg)

    def on_chunk(self, msg: Chunk) -> None:
        """A chunk of the artifact being fetched."""
        if self._transfer is not None:
            self._transfer.on_chunk(msg)

    def on_upload_ack(self, msg: UploadAck) -> None:
        """The manager's progress on the build artifact being uploaded."""
        if self._upload is not None:
            self._upload.on_ack(msg)

    def on_error(self, msg: Error) -> bool:
        """An ``error`` answering one of our requests; False if nobody was waiting for it."""
        if msg.in_reply_to == "fetch_task":
            return self._manifests.on_error(msg)
        if msg.in_reply_to == "chunk_request" and self._transfer is not None:
            self._transfer.on_error(msg)
        elif msg.in_reply_to.startswith("upload_") and self._upload is not None:
            self._upload.on_error(msg)
        else:
            return False
        return True

    def on_reconnect(self) -> None:
        """A new connection (after ``hello``): re-send what is outstanding."""
        self._manifests.on_reconnect()
        if self._transfer is not None:
            self._transfer.on_reconnect()
        if self._upload is not None:
            self._upload.on_reconnect()

    async def on_refused(self, task_id: str, current: TargetState) -> None:
        """The manager refused a report and holds ``current`` (§6.4): follow it."""
        if current in FINAL_STATES:
            await self.stop(task_id, f"the manager holds {current}", report=False)
            self._ctx.reporter.adopt(task_id, current)

    # --- stop ------------------------------------------------------------------------

    async def stop(self, task_id: str | None, reason: str, *, report: bool = True) -> list[str]:
        """Stop ``task_id`` (None: every task) wherever it is; return the stopped task ids."""
        stopped = []
        for queued in [t for t in self._queue if task_id in (None, t)]:
            self._queue.remove(queued)
            await self._stopped(queued, reason, report)
            stopped.append(queued)
        job = self._job
        if job is not None and task_id in (None, job[0]):
            job[1].cancel()
            await asyncio.wait({job[1]})
            if job[0] not in self._deployments.current_task_ids():  # else: stopped below
                await self._stopped(job[0], reason, report)
                stopped.append(job[0])
        stopped.extend(await self._deployments.stop(task_id, reason, report=report))
        return stopped

    async def _stopped(self, task_id: str, reason: str, report: bool) -> None:
        if report and self._ctx.reporter.current(task_id) not in FINAL_STATES:
            self._ctx.collector.marker(task_id, "stop", f"stopped: {reason}")
            await self._ctx.reporter.report(task_id, S.STOPPED, reason)
        remove_tree(self._ctx.task_dir(task_id))

    # --- the worker ------------------------------------------------------------------

    def _enqueue(self, task_id: str) -> None:
        if task_id not in self.queued():
            self._queue.append(task_id)
            self._wake.set()

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            task_id = self._queue.popleft()
            job = asyncio.get_running_loop().create_task(self._run(task_id))
            self._job = (task_id, job)
            try:
                await asyncio.wait({job})
            finally:
                self._job = None
                if job.done() and not job.cancelled() and job.exception() is not None:
                    logger.error("task %s: processing crashed", task_id, exc_info=job.exception())

    async def _run(self, task_id: str) -> None:
        try:
            await self._process(task_id)
        except (TaskError, MessageError) as exc:
            await self._fail(task_id, str(exc))
        except OSError as exc:  # the data dir's disk (full, failing): the task fails cleanly
            await self._fail(task_id, describe_os_error(exc))
        except Exception as exc:  # top of one task's processing: an agent bug ends the task
            logger.exception("task %s: internal error while processing it", task_id)
            await self._fail_internal(task_id, f"internal error in the agent: {exc!r}")
        finally:
            self._transfer = self._upload = None
            stage = self._ctx.state.stage_run
            if stage is not None and stage.task_id == task_id:
                self._ctx.state.stage_run = None
                self._ctx.save()

    async def _process(self, task_id: str) -> None:
        reporter = self._ctx.reporter
        if reporter.current(task_id) is S.ACCEPTED:
            ack = await reporter.wait_acked(task_id, S.ACCEPTED)
            if not ack.ok:
                return  # on_refused takes care of it
        directory = self._ctx.task_dir(task_id)
        message = load_task(directory) or await self._manifests.fetch(task_id)
        accepted = self._verifier.verify_received(task_id, message)
        manifest = accepted.manifest
        self._kinds[task_id] = manifest.kind
        self._confine.check_grants(manifest.sandbox)  # before anything is recorded or fetched
        self._check_requires(manifest)
        self._verifier.record(task_id, accepted)
        store_task(directory, message)
        if accepted.signer:
            self._ctx.collector.marker(task_id, "verify", f"signed by {accepted.signer}")
        if reporter.current(task_id) is S.INSTALLED:
            dirs = TaskDirs(directory)
            await self._activate(task_id, accepted, recorded_digest(dirs))
            return
        paths = await self._download(task_id, manifest)
        if manifest.kind == "build":
            await self._build(task_id, manifest, paths)
        else:
            await self._install(task_id, accepted, paths)

    def _check_requires(self, manifest: TaskManifest) -> None:
        """The signed ``requires`` (the announcement's copy is not signed): a device that
        does not meet them fails the task with the reason, before anything is fetched."""
        req = manifest.requires
        if req is None:
            return
        result = assess(
            Requirements(
                payload_bytes=0,
                arch=req.arch,
                min_free_disk_bytes=req.min_free_disk_bytes,
                min_free_memory_bytes=req.min_free_memory_bytes,
            ),
            data_dir=self._ctx.settings.data_dir,
            policy=self._ctx.disk_policy(),
        )
        if not result.accepted:
            raise TaskError(result.reason or "the device does not meet deploy.requires")

    # --- stage 3: payload --------------------------------------------------------------

    async def _download(self, task_id: str, manifest: TaskManifest) -> list[Path]:
        if not manifest.artifacts:
            return []
        if self._before_fetch is not None:  # seed 000: check connectivity before fetching
            await self._before_fetch()
        if self._ctx.reporter.current(task_id) is not S.TRANSFERRING:
            await self._ctx.reporter.report(task_id, S.TRANSFERRING)
        total = sum(a.size_bytes for a in manifest.artifacts)
        self._ctx.collector.marker(
            task_id,
            "transfer",
            f"fetching {len(manifest.artifacts)} artifact(s), {human_bytes(total)}",
        )
        directory = self._ctx.task_dir(task_id) / "download"
        if self._ranged is not None:  # the HTTP link: one ranged, resumable stream each
            self._transfer = RangedTransfer(task_id, manifest.artifacts, directory,
                self._ranged, retry_s=self._ctx.settings.resend_s, paused=self._fetch_paused,
            )  # fmt: skip
        else:
            self._transfer = TaskTransfer(
                task_id,
                manifest.artifacts,
                directory,
                self._ctx.send,
                window=self._ctx.settings.chunk_window,
                timeout_s=self._ctx.settings.resend_s,
                paused=self._fetch_paused,
            )
        paths = await self._transfer.run()
        hashed, self._transfer = self._transfer.verified, None
        await in_thread(lambda: _verify_artifacts(manifest, paths, hashed))
        self._ctx.collector.marker(task_id, "transfer", "payload complete, SHA-256 verified")
        return paths

    async def _unpack(self, task_id: str, paths: list[Path]) -> Path:
        directory = self._ctx.task_dir(task_id)
        app = directory / "app"
        remove_tree(app)  # what an interrupted attempt left
        policy = self._ctx.disk_policy()
        room = free_bytes(self._ctx.settings.data_dir, policy)
        limits = ArchiveLimits(max_total_bytes=max(room - policy.low_disk_bytes, 0))
        await in_thread(lambda: unpack_all(paths, app, limits))
        return app

    # --- stage 4: install or build -----------------------------------------------------

    async def _install(self, task_id: str, accepted: Accepted, paths: list[Path]) -> None:
        ctx, manifest = self._ctx, accepted.manifest
        dirs = TaskDirs(ctx.task_dir(task_id))
        stage = StageRun(task_id=task_id, stage="install", run_id=new_run_id())
        ctx.state.stage_run = stage
        await ctx.reporter.report(task_id, S.INSTALLING)  # persists the stage marker too
        await self._unpack(task_id, paths)
        remove_tree(dirs.root / "download")
        launcher = await in_thread(lambda: self._confine.writable_stage(dirs, manifest.sandbox))
        ctx.collector.marker(
            task_id, "install", f"running {len(manifest.install)} install command(s)"
        )
        sink = ctx.collector.sink(task_id, "install", debug=manifest.debug)
        full = NoSpaceWatch(sink)
        result = await run_sequence(
            manifest.install,
            cwd=dirs.app,
            env=self._confine.env(dirs),
            on_line=full.on_line,
            config=ctx.sequence(),
            run_id=stage.run_id,
            launcher=launcher,
        )
        ctx.state.stage_run = None
        ctx.save()
        if result.failed is not None:
            why = describe_failure("install", result.failed, ctx.settings.install_timeout_s)
            raise TaskError(full.explain(why, ctx.settings.data_dir))
        digest = await in_thread(lambda: self._confine.seal(dirs, manifest.sandbox))
        await ctx.reporter.report(task_id, S.INSTALLED)
        await self._activate(task_id, accepted, digest, sealed_now=True)

    async def _activate(
        self, task_id: str, accepted: Accepted, digest: str, *, sealed_now: bool = False
    ) -> None:
        # Shielded: a stop arriving now must find either the old or the new deployment.
        activation = asyncio.ensure_future(
            self._deployments.activate(
                task_id,
                accepted.manifest,
                sequence=accepted.sequence,
                digest=digest,
                sealed_now=sealed_now,
            )
        )
        try:
            activated = await asyncio.shield(activation)
        except asyncio.CancelledError:
            await asyncio.wait({activation})
            raise
        if not activated:
            remove_tree(self._ctx.task_dir(task_id))
            return
        # Other apps' releases stay; the replaced release of this app goes (docs/protocol.md).
        # A release kept for a health-gated rollback stays until the new one is healthy.
        held = self._deployments.held_task_ids()
        current = self._deployments.current_task_ids()
        self._remove_old_dirs(keep={task_id, *self.queued(), *current, *held})

    async def _build(self, task_id: str, manifest: TaskManifest, paths: list[Path]) -> None:
        ctx = self._ctx
        dirs = TaskDirs(ctx.task_dir(task_id))
        stage = StageRun(task_id=task_id, stage="build", run_id=new_run_id())
        ctx.state.stage_run = stage
        await ctx.reporter.report(task_id, S.BUILDING)
        await self._unpack(task_id, paths)
        launcher = await in_thread(lambda: self._confine.writable_stage(dirs, manifest.sandbox))

        def track(upload: ArtifactUpload | None) -> None:
            self._upload = upload

        try:
            await run_build(
                ctx, stage, manifest, dirs.app, track, launcher, self._confine.env(dirs)
            )
        except OSError as exc:  # the build host's disk, not the build: still a failed build
            raise TaskError(f"build failed on the build host: {exc}") from exc
        finally:
            # The build dir (sources, objects, $HOME, the packed archive) goes whatever the
            # outcome: nothing of one build is there for the next (docs/build.md).
            remove_tree(ctx.task_dir(task_id))
        await ctx.reporter.report(task_id, S.BUILT)

    async def _fail(self, task_id: str, reason: str) -> None:
        build = self._kinds.get(task_id) == "build"
        target = S.BUILD_FAILED if build else S.INSTALL_FAILED
        # The folder goes first: after a disk-filling install that frees the room the
        # marker and the persisted report need (docs/reliability.md).
        remove_tree(self._ctx.task_dir(task_id))
        self._ctx.collector.marker(task_id, "build" if build else "install", reason, error=True)
        await self._ctx.reporter.report_path(task_id, target, reason)

    async def _fail_internal(self, task_id: str, reason: str) -> None:
        """An unexpected exception: the task still ends in a final state with the reason
        (issue 13): ``failed`` once installed (its activation broke), else as :meth:`_fail`."""
        if self._ctx.reporter.current(task_id) in (S.INSTALLED, S.RUNNING):
            self._ctx.collector.marker(task_id, "run", reason, error=True)
            await self._ctx.reporter.report_path(task_id, S.FAILED, reason)
            return
        await self._fail(task_id, reason)

    def _remove_old_dirs(self, keep: set[str]) -> None:
        try:
            names = os.listdir(self._ctx.tasks_dir)
        except FileNotFoundError:
            return
        for name in names:
            if name not in keep:
                remove_tree(self._ctx.tasks_dir / name)


def _verify_artifacts(manifest: TaskManifest, paths: list[Path], hashed: set[Path]) -> None:
    """Every fetched file against the signed size and SHA-256 (blocking), except those the
    transfer hashed itself a moment ago (``hashed``): a file that was already complete on
    disk when a transfer resumed is checked here only. SHA-256 is one of the agent's largest
    costs per deployment (Python's own, at about 4 ms per MiB: ADR 0006 keeps OpenSSL out)."""
    from swarmdeploy.crypto.signing import verify_artifact

    for info, path in zip(manifest.artifacts, paths, strict=True):
        if path in hashed:
            continue
        try:
            verify_artifact(info, path)
        except VerificationError as exc:
            path.unlink(missing_ok=True)
            raise TaskRefused(exc.code, exc.message) from None


def unpack_all(paths: list[Path], app: Path, limits: ArchiveLimits) -> None:
    """Unpack the artifacts in order into the new directory ``app`` (blocking). With several
    artifacts each is unpacked next to ``app`` and moved in; a name present in two of them
    is an :class:`ArchiveError`."""
    if len(paths) == 1:
        unpack(paths[0], app, limits)
        return
    app.mkdir(mode=0o700)
    for i, path in enumerate(paths):
        part = app.parent / f"part-{i}"
        remove_tree(part)
        unpack(path, part, limits)
        for entry in os.listdir(part):
            if os.path.lexists(app / entry):
                raise ArchiveError(f"artifact {i} and an earlier one both contain {entry!r}")
            os.rename(part / entry, app / entry)
        part.rmdir()
