"""Tasks: create from a descriptor, read with per-target states, list, stop, delete, expire.

Creation (DESIGN.md "Task descriptor", cpswarm-original.md §2.2 #11 and §10.2 #2, #5):
validate with :func:`~swarmdeploy.protocol.descriptor.parse_descriptor` (errors name the
field), check that the build host exists and that a reused task (``source.task``) has
artifacts to deploy, match targets by id OR tag without any paging limit (no match is a 422
at ``$.deploy.target``), store the archive content-addressed (inline ``source.zip``, or a
file the API streamed from a multipart upload), then store the task with one ``pending`` row
per target under a readable id. Listeners (the agent link, ``manager.link``) are told about
every new task and announce it to connected targets at once; nothing here talks to devices
directly. A task with a build shows its build stage (``services.builds``) in its document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import Dispatcher, StopRequest
from swarmdeploy.manager.errors import (
    ConflictError,
    InvalidInput,
    NotFoundError,
    Unavailable,
)
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.builds import BuildStage, build_stage_json, load_build_stage
from swarmdeploy.manager.services.descriptor_input import input_error, read_head, with_archive
from swarmdeploy.manager.services.ids import readable_id
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.rollbacks import Rollbacks
from swarmdeploy.manager.services.rollouts import Rollouts, plan_groups, rollout_json
from swarmdeploy.manager.services.task_actions import ActionLimiter
from swarmdeploy.manager.services.task_retry import choose
from swarmdeploy.manager.services.task_signing import TaskSigner, sandbox_json, sandbox_of
from swarmdeploy.manager.services.task_sources import TaskSources
from swarmdeploy.manager.services.task_states import TaskStates, row_json
from swarmdeploy.protocol.descriptor import DEFAULT_APP, TaskDescriptor, parse_descriptor
from swarmdeploy.protocol.errors import DescriptorError, TransitionError
from swarmdeploy.protocol.selector import Selector
from swarmdeploy.protocol.states import (
    ACTIVE_STATES,
    FINAL_STATES,
    TargetEvent,
    TargetState,
    TaskStatus,
    group_failures,
    summarize,
)
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, NotFound
from swarmdeploy.storage.records import (
    MAX_PER_PAGE,
    OperatorKeyRecord,
    Page,
    RolloutRecord,
    SortOrder,
    StateCount,
    TaskAppRecord,
    TaskRecord,
    TaskSignatureRecord,
    TaskTargetRecord,
)

log = logging.getLogger(__name__)

_ID_ATTEMPTS = 8


@dataclasses.dataclass(frozen=True, slots=True)
class TaskView:
    """A task with its per-target rows and derived status."""

    record: TaskRecord
    targets: list[TaskTargetRecord]
    status: TaskStatus
    source_size: int | None = None
    build: BuildStage | None = None
    #: The task's signed manifest (deploy, else build) and the signing key's name.
    signature: TaskSignatureRecord | None = None
    signer_name: str = ""
    #: The task's staged rollout (docs/rollouts.md), or ``None``: announced all at once.
    rollout: RolloutRecord | None = None
    #: The task this one rolls back, and the tasks that roll this one back (read for
    #: single tasks only, with ``signed``).
    rollback_of: str | None = None
    rolled_back_by: tuple[str, ...] = ()
    #: Its rows counted by role and state, when ``targets`` holds only the build host's row
    #: (task lists: a task's document then needs no row of its deploy targets).
    counts: tuple[StateCount, ...] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StopOutcome:
    """What a task stop did: rows stopped at once, targets asked, targets not reachable."""

    stopped: int
    requested: int
    refused: list[str]


class TaskListener(Protocol):
    """Told about new tasks (implemented by the agent link, which announces them)."""

    async def task_created(self, view: TaskView) -> None:
        """A task was stored with its ``pending`` rows."""

    async def task_stopped(self, task_id: str) -> None:
        """The task was marked stopped (before its targets are stopped)."""


class TaskDeleteListener(Protocol):
    """Told about deleted tasks (implemented by the blob collector, ``services.blob_gc``)."""

    async def task_deleted(self, task_id: str, digests: frozenset[str]) -> None:
        """The task is deleted; ``digests`` are the blobs it referenced (its archive, its
        uploads and artifacts), which other records may still reference."""


def _states(rows: list[TaskTargetRecord]) -> list[TargetState]:
    """The distinct states of ``rows`` (the task status depends on that set only)."""
    return [TargetState(s) for s in {r.state for r in rows}]


class TaskService:
    """The task manager's API-facing half."""

    def __init__(
        self,
        storage: Storage,
        *,
        blobs: BlobStore,
        events: EventHub,
        dispatcher: Dispatcher,
        logs: LogService,
        states: TaskStates,
        clock: Clock,
        audit: AuditLog,
        signer: TaskSigner | None = None,
        rollouts: Rollouts | None = None,
    ) -> None:
        self._storage = storage
        #: Staged rollouts of this manager's tasks (``services.rollouts``).
        self.rollouts = rollouts or Rollouts(
            storage, events=events, clock=clock, audit=audit, states=states
        )
        self.rollouts.attach(self)
        #: Rate limit of the operator actions on tasks (``services.task_actions``).
        self.action_limit = ActionLimiter(clock)
        #: Rollbacks of releases (``services.rollbacks``).
        self.rollbacks = Rollbacks(
            storage, creator=self, rollouts=self.rollouts, audit=audit, clock=clock
        )
        self._audit = audit
        self._signer = signer
        self._states = states
        self._sources = TaskSources(storage, blobs)
        self._events = events
        self._dispatcher = dispatcher
        self._logs = logs
        self._clock = clock
        self._listeners: list[TaskListener] = []
        self._delete_listeners: list[TaskDeleteListener] = []

    def add_listener(self, listener: TaskListener) -> None:
        """Register a listener for new tasks."""
        self._listeners.append(listener)

    def add_delete_listener(self, listener: TaskDeleteListener) -> None:
        """Register a listener for deleted tasks."""
        self._delete_listeners.append(listener)

    # -- preview -------------------------------------------------------------------------------
    async def preview(self, document: object) -> tuple[list[str], str | None]:
        """Validate ``document`` exactly as :meth:`create` does, without storing, signing or
        announcing anything: the ids of the targets it would deploy to (sorted) and its build
        host. Raises :class:`InvalidInput` with the field path for anything invalid."""
        try:
            desc = parse_descriptor(document)
        except DescriptorError as exc:
            raise input_error(exc, archive=False) from None
        build_host = await self._check_build(desc)
        await self._sources.check_reuse(desc)
        matches = await self._match(desc)
        return sorted(target for target, _ in matches), build_host

    # -- create --------------------------------------------------------------------------------
    async def create(
        self,
        document: object,
        *,
        created_by: str,
        archive: Path | None = None,
        principal: Principal | None = None,
    ) -> TaskView:
        """Validate ``document`` (decoded JSON/YAML) and store the task.

        ``archive`` is the source archive uploaded apart from the descriptor (multipart);
        the document must then not carry ``source.zip`` or ``source.task``. The file is
        moved into the blob store when the task is stored (the caller removes it otherwise).
        Raises :class:`InvalidInput` with the field path for anything invalid.

        With a signer and the submitting ``principal``, the task's manifest is signed with
        the principal's operator key (created on first use) and stored with it; a caller
        whose keys are all revoked gets :class:`Forbidden` and no task.
        """
        if archive is not None:
            document = with_archive(document, await asyncio.to_thread(read_head, archive))
        try:
            desc = parse_descriptor(document)
        except DescriptorError as exc:
            raise input_error(exc, archive=archive is not None) from None
        key = None
        if self._signer is not None and principal is not None:
            key = await self._signer.key_of(principal)
        build_host = await self._check_build(desc)
        reused = await self._sources.check_reuse(desc)
        matches = await self._match(desc)
        if build_host is not None and any(t == build_host for t, _ in matches):
            raise InvalidInput(
                f"the build host {build_host} is also a deploy target; deploy to it with a "
                "second task that reuses this one (source.task)",
                path="$.build.host",
            )
        groups = await self._plan_rollout(desc, matches)
        digest = await self._sources.store(desc, archive)
        record, rows = self._new_records(desc, build_host, matches, digest, created_by, reused)
        for _ in range(_ID_ATTEMPTS):
            try:
                await self._storage.add_task(record, rows)
                break
            except Conflict:
                record = dataclasses.replace(record, id=readable_id())
                rows = [dataclasses.replace(r, task_id=record.id) for r in rows]
        else:
            raise Unavailable("could not allocate a unique task id; try again")
        await self._store_app(desc, record)
        rollout = await self._store_rollout(record, groups)
        if key is not None:
            await self._sign(record, key, reused)
        log.info("task %s created by %s for %d target(s)", record.id, created_by, len(rows))
        view = await self._view(record, rows, signed=True)
        self._events.publish("taskAdded", task_json(view, with_targets=False), task=record.id)
        told = view
        if rollout is not None:  # only the first group is announced now
            first = set(rollout.groups[0]) if rollout.groups else set()
            rows = [r for r in rows if r.role != "deploy" or r.target_id in first]
            told = dataclasses.replace(view, targets=rows)
        for listener in self._listeners:
            try:
                await listener.task_created(told)
            except Exception:  # top of the listener loop: the task is stored; log and go on
                log.exception("listener failed on the creation of task %s", record.id)
        return view

    async def _store_app(self, desc: TaskDescriptor, record: TaskRecord) -> None:
        """The app row of a deploy task (``services.apps``); the task goes if it fails."""
        if desc.deploy is None:
            return
        target = desc.deploy.target
        app = TaskAppRecord(
            task_id=record.id,
            app=desc.app_name,
            created_at=record.created_at,
            version=desc.version or "",
            selector=desc.selector.to_text(),
            standing=desc.standing,
            remove=bool(target and target.remove),
        )
        try:
            await self._storage.add_task_app(app)
        except BaseException:
            await self._storage.delete_task(record.id)
            raise

    async def _plan_rollout(
        self, desc: TaskDescriptor, matches: list[tuple[str, tuple[str, ...]]]
    ) -> tuple[tuple[str, ...], ...] | None:
        """The members of each rollout group (``services.rollouts``), or ``None``."""
        if desc.rollout is None:
            return None
        tags = sorted({tag for g in desc.rollout.groups for tag in g.tags or ()})
        tags_of: dict[str, frozenset[str]] = {}
        if tags:
            tags_of = {
                t: frozenset(found) for t, found in await self._storage.match_targets([], tags)
            }
        return plan_groups(desc.rollout, [t for t, _ in matches], tags_of)

    async def _store_rollout(
        self, record: TaskRecord, groups: tuple[tuple[str, ...], ...] | None
    ) -> RolloutRecord | None:
        """The rollout row of a task with a rollout; the task goes if it fails."""
        if groups is None:
            return None
        try:
            return await self.rollouts.create(record, groups)
        except BaseException:
            await self._storage.delete_task(record.id)
            raise

    async def _sign(self, record: TaskRecord, key: OperatorKeyRecord, reused: str | None) -> None:
        """Sign the new task's manifest; a task that cannot be signed is deleted again."""
        assert self._signer is not None
        try:
            source = None if reused is None else await self._storage.get_task(reused)
            await self._signer.sign_new(record, key, reused=source)
        except BaseException:
            await self._storage.delete_task(record.id)
            raise

    async def _check_build(self, desc: TaskDescriptor) -> str | None:
        if desc.build is None:
            return None
        host = desc.build.host or ""
        if await self._storage.get_target(host) is None:
            raise InvalidInput(f"build host {host} is not a registered target", path="$.build.host")
        return host

    async def _match(self, desc: TaskDescriptor) -> list[tuple[str, tuple[str, ...]]]:
        """``(target_id, matching tags)`` of the targets the selector matches now; none is
        a 422 unless the task is standing (it waits for devices, docs/adr/0010)."""
        if desc.deploy is None:
            return []
        selector = desc.selector
        if selector.plain:
            matches = await self._storage.match_targets(selector.ids, selector.tags)
        else:
            matches = await self._select(selector)
        if not matches and not desc.standing:
            raise InvalidInput(
                f"no registered target matches deploy.target ({selector.to_text()}); "
                "a standing task (deploy.target.follow: true) would wait for one",
                path="$.deploy.target",
            )
        return matches

    async def _select(self, selector: Selector) -> list[tuple[str, tuple[str, ...]]]:
        """Every target ``selector`` matches (all pages), with its tags the selector names."""
        named = set(selector.tags) | set(selector.all_tags)
        found: list[tuple[str, tuple[str, ...]]] = []
        page = 1
        while True:
            result = await self._storage.list_targets(
                selector=selector, page=page, per_page=MAX_PER_PAGE
            )
            found.extend((t.id, tuple(sorted(named.intersection(t.tags)))) for t in result.items)
            if page * MAX_PER_PAGE >= result.total or not result.items:
                return found
            page += 1

    async def announce_rows(self, task: TaskRecord, rows: list[TaskTargetRecord]) -> None:
        """Rows added to a stored task (a standing release reaching a late device): tell
        the listeners as for a new task, so the agent link announces them."""
        view = await self._view(task, rows)
        for listener in self._listeners:
            try:
                await listener.task_created(view)
            except Exception:  # top of the listener loop: the rows are stored; log and go on
                log.exception("listener failed on new rows of task %s", task.id)

    def _new_records(
        self,
        desc: TaskDescriptor,
        build_host: str | None,
        matches: list[tuple[str, tuple[str, ...]]],
        digest: str | None,
        created_by: str,
        reused: str | None,
    ) -> tuple[TaskRecord, list[TaskTargetRecord]]:
        now = self._clock()
        descriptor = desc.to_builtins()
        if isinstance(descriptor.get("source"), dict):
            descriptor["source"].pop("zip", None)
            if reused is not None:
                descriptor["source"]["task"] = reused
        task_id = readable_id()
        wanted_ids = set(desc.target_ids)
        record = TaskRecord(
            id=task_id,
            description=desc.description,
            debug=desc.debug,
            descriptor=descriptor,
            created_at=now,
            expires_at=now + desc.expires_in_s * 1000,
            created_by=created_by,
            build_host=build_host,
            source_digest=digest,
            match_ids=tuple(t for t, _ in matches if t in wanted_ids),
            match_tags=tuple(sorted({tag for _, tags in matches for tag in tags})),
        )
        rows = []
        if build_host is not None:
            rows.append(TaskTargetRecord(task_id, build_host, "pending", now, role="build"))
        rows.extend(TaskTargetRecord(task_id, t, "pending", now) for t, _ in matches)
        return record, rows

    # -- read ----------------------------------------------------------------------------------
    async def get(self, task_id: str) -> TaskView:
        """The task with its rows; :class:`NotFoundError` if unknown."""
        record = await self._storage.get_task(task_id)
        if record is None:
            raise NotFoundError(f"task {task_id} is not found")
        return await self._view(record, signed=True)

    async def _view(
        self,
        record: TaskRecord,
        rows: list[TaskTargetRecord] | None = None,
        *,
        signed: bool = False,
    ) -> TaskView:
        """The view of a task; ``signed`` adds its signature (two more reads: single tasks
        only, not lists)."""
        if rows is None:
            rows = await self._storage.task_targets(record.id)
        signature, name = (await self._signature(record.id)) if signed else (None, "")
        links = await self._storage.rollback_links(record.id) if signed else []
        return TaskView(
            record,
            rows,
            summarize(_states(rows)),
            await self._sources.size(record.source_digest),
            await load_build_stage(self._storage, record, rows),
            signature,
            name,
            await self._storage.get_rollout(record.id) if "rollout" in record.descriptor else None,
            next((k.rollback_of for k in links if k.task_id == record.id), None),
            tuple(k.task_id for k in links if k.rollback_of == record.id),
        )

    async def _signature(self, task_id: str) -> tuple[TaskSignatureRecord | None, str]:
        signature = await self._storage.get_task_signature(task_id, "deploy")
        if signature is None:
            signature = await self._storage.get_task_signature(task_id, "build")
        if signature is None:
            return None, ""
        key = await self._storage.get_operator_key(signature.key_id)
        return signature, "" if key is None else key.name

    async def list(
        self, *, search: str | None, sort_order: SortOrder, page: int, per_page: int
    ) -> Page[TaskView]:
        """Tasks by creation time; ``search`` is full-text over the description."""
        result = await self._storage.list_tasks(
            search=search, sort_order=sort_order, page=page, per_page=per_page
        )
        counts = await self._storage.task_state_counts([r.id for r in result.items])
        views = [await self._counted_view(r, counts.get(r.id, [])) for r in result.items]
        return Page(total=result.total, items=views, page=result.page, per_page=result.per_page)

    async def _counted_view(self, record: TaskRecord, counts: Sequence[StateCount]) -> TaskView:
        """The view of a listed task from its row counts: only the build host's row is read
        (a task with a rollout reads all, its document counts them by group)."""
        if "rollout" in record.descriptor:
            return await self._view(record)
        build_row = None
        if record.build_host is not None:
            build_row = await self._storage.get_task_target(record.id, record.build_host)
        rows = [] if build_row is None else [build_row]
        return TaskView(
            record,
            rows,
            summarize([TargetState(c.state) for c in counts]),
            await self._sources.size(record.source_digest),
            await load_build_stage(self._storage, record, rows),
            counts=tuple(counts),
        )

    # -- stop / delete / expire ----------------------------------------------------------------
    async def stop(self, task_id: str, by: Principal) -> StopOutcome:
        """Stop the task everywhere: rows not yet delivered stop at once; targets that have
        it are sent a stop request (the transport reports them ``stopped``)."""
        view = await self.get(task_id)
        entry = await self._audit.append(by, "task.stop", task_id)
        now = self._clock()
        await self._storage.mark_task_stopped(task_id, now)
        for listener in self._listeners:
            try:
                await listener.task_stopped(task_id)
            except Exception:  # top of the listener loop: the stop is stored; log and go on
                log.exception("listener failed on the stop of task %s", task_id)
        stopped, requested, refused = 0, 0, []
        touched: list[str] = []
        for row in view.targets:
            state = TargetState(row.state)
            if state in FINAL_STATES:
                continue
            touched.append(row.target_id)
            if state is TargetState.PENDING and await self._stop_pending(row):
                stopped += 1
                continue
            try:
                await self._dispatcher.submit(row.target_id, StopRequest(task_id))
                requested += 1
            except Unavailable:
                refused.append(row.target_id)
        text = f"stop requested by {by.audit_name} (audit #{entry.seq})"
        await self._logs.manager_lines(touched, task_id, text)
        log.info(
            "task %s stop by %s: %d stopped, %d asked, %d refused",
            task_id, by.audit_name, stopped, requested, len(refused),
        )  # fmt: skip
        return StopOutcome(stopped, requested, refused)

    async def retry(self, task_id: str, by: Principal, targets: Sequence[str] | None) -> TaskView:
        """Retry the task on ``targets`` (None: every target in a final failure state), see
        :mod:`.task_retry`: audited, rows back to ``pending``, announced again by the
        listeners. Raises :class:`NotFoundError` / :class:`ConflictError` (nothing changed)."""
        view = await self.get(task_id)
        rows = choose(view.record, view.targets, targets, now_ms=self._clock())
        entry = await self._audit.append(
            by, "task.retry", task_id, {"targets": [r.target_id for r in rows]}
        )
        retried = [r for r in [await self._states.retry(row) for row in rows] if r is not None]
        text = f"retry requested by {by.audit_name} (audit #{entry.seq})"
        await self._logs.manager_lines([r.target_id for r in retried], task_id, text)
        log.info("task %s retried by %s on %d target(s)", task_id, by.audit_name, len(retried))
        again = dataclasses.replace(view, targets=retried)
        for listener in self._listeners:
            try:
                await listener.task_created(again)
            except Exception:  # top of the listener loop: the rows are stored; log and go on
                log.exception("listener failed on the retry of task %s", task_id)
        return await self.get(task_id)

    async def _stop_pending(self, row: TaskTargetRecord) -> bool:
        try:
            stopped = await self._states.apply(
                row.task_id, row.target_id, TargetEvent.STOP, reason="stopped before delivery"
            )
        except (NotFoundError, TransitionError):
            return False
        return stopped is not None

    async def delete(self, task_id: str) -> None:
        """Delete a task, its rows and its logs. :class:`ConflictError` while any target is in
        an active state (processes may be alive: stop the task first)."""
        view = await self.get(task_id)
        active = [r.target_id for r in view.targets if TargetState(r.state) in ACTIVE_STATES]
        if active:
            raise ConflictError(
                f"task {task_id} is active on {len(active)} target(s) "
                f"({', '.join(active[:5])}{', ...' if len(active) > 5 else ''}); stop it first"
            )
        digests = await self._sources.digests(view.record)
        try:
            await self._storage.delete_task(task_id)
        except NotFound:
            raise NotFoundError(f"task {task_id} is not found") from None
        log.info("task %s deleted", task_id)
        self._events.publish("taskDeleted", {"id": task_id}, task=task_id)
        for listener in self._delete_listeners:
            try:
                await listener.task_deleted(task_id, digests)
            except Exception:  # top of the listener loop: the task is deleted; log and go on
                log.exception("listener failed on the deletion of task %s", task_id)

    async def expire(self) -> int:
        """Expire rows of tasks past their deadline (background job); returns how many."""
        return len(await self._states.expire())


def task_json(view: TaskView, *, with_targets: bool) -> dict[str, Any]:
    """The API document of a task."""
    r = view.record
    d = r.descriptor
    source: dict[str, Any] | None = None
    if r.source_digest is not None:
        source = {"sha256": r.source_digest, "size": view.source_size}
    elif isinstance(d.get("source"), dict) and d["source"].get("task"):
        source = {"task": d["source"]["task"]}
    doc: dict[str, Any] = {
        "id": r.id,
        "description": r.description,
        "debug": r.debug,
        "source": source,
        "build": build_stage_json(r, view.build),
        "deploy": d.get("deploy"),
        "app": d.get("app") or (DEFAULT_APP if d.get("deploy") else None),
        "version": d.get("version"),
        "createdAt": r.created_at,
        "expiresAt": r.expires_at,
        "createdBy": r.created_by,
        "stoppedAt": r.stopped_at,
        "match": {
            "ids": list(r.match_ids),
            "tags": list(r.match_tags),
            "total": _deploy_total(view),
        },
        "status": view.status.value,
        "stateCounts": _state_counts(view),
    }
    if view.signature is not None:
        doc["signedBy"] = {"keyId": view.signature.key_id, "name": view.signer_name}
        doc["sequence"] = view.signature.sequence
    doc["sandbox"] = sandbox_json(sandbox_of(d))
    if view.rollout is not None:
        doc["rollout"] = rollout_json(r, view.rollout, view.targets)
    if with_targets:
        doc["targets"] = [row_json(t) for t in view.targets]
        doc["failures"] = failures_json(view.targets)
        doc["rollbackOf"] = view.rollback_of
        doc["rolledBackBy"] = list(view.rolled_back_by)
    return doc


def _deploy_total(view: TaskView) -> int:
    if view.counts is not None:
        return sum(c.count for c in view.counts if c.role == "deploy")
    return sum(1 for t in view.targets if t.role == "deploy")


def _state_counts(view: TaskView) -> dict[str, int]:
    """Rows per state, states in the order they first occur among the rows."""
    if view.counts is None:
        return dict(Counter(t.state for t in view.targets))
    found: dict[str, int] = {}
    for c in view.counts:  # sorted by (role, first target): first occurrences in order
        found[c.state] = found.get(c.state, 0) + c.count
    return found


def failures_json(rows: Sequence[TaskTargetRecord]) -> list[dict[str, Any]]:
    """``failures`` of a task document: failed targets grouped by state and reason."""
    return [
        {"state": g.state, "reason": g.reason, "count": g.count, "targets": list(g.sample)}
        for g in group_failures((t.target_id, t.state, t.reason) for t in rows)
    ]
