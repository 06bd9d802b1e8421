"""Apps and desired state (issue 14, docs/adr/0010-standing-releases.md).

A deploy task delivers a *release* of an *app* (``app``, default ``default``); a device runs
at most one release per app, and the agent replaces only the release of the same app. The
app row of every deploy task (``task_apps``) records its app, version label, selector and
whether it is *standing* (``deploy.target.follow``).

Desired state is kept by the standing releases: for each app, the newest standing release
whose selector admits a device is the release that device should run. :meth:`AppService.
reconcile` applies that to one device -- when it registers and when its tags change -- by
adding an ordinary ``pending`` row to the release's task and handing the row to the task
listeners (the agent link announces it like any new task; nothing of the link changes). The
manifest was signed when the task was created; the signed selector admits the late device by
its tags, so nobody signs again. A device that stops matching is left alone unless the release
says ``remove``: then its row of that release is stopped.

The views (``GET /apps``, ``GET /apps/{name}``, ``GET /targets/{id}/apps``) derive, per
device and app, the *desired* release (the newest release addressed to the device, unless an
operator stopped it) and the *running* one (the newest in ``installed``, ``running`` or
``exited``); a device is *behind* when they differ, and the desired row's state and reason
say why.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.dispatch import Dispatcher, StopRequest
from swarmdeploy.manager.errors import NotFoundError, Unavailable
from swarmdeploy.protocol.descriptor import DEFAULT_APP
from swarmdeploy.protocol.errors import DescriptorError, TransitionError
from swarmdeploy.protocol.selector import parse_selector
from swarmdeploy.protocol.states import FINAL_STATES, TargetEvent, TargetState
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import NotFound
from swarmdeploy.storage.records import TargetRecord, TaskAppRecord, TaskRecord, TaskTargetRecord

log = logging.getLogger(__name__)

#: States in which a release is installed on the device (what it runs, or ran to the end).
INSTALLED_STATES = frozenset(
    {TargetState.INSTALLED, TargetState.RUNNING, TargetState.HEALTHY, TargetState.EXITED}
)


class RowAnnouncer(Protocol):
    """Hands rows added to a stored task to the task listeners (``TaskService``)."""

    async def announce_rows(self, task: TaskRecord, rows: list[TaskTargetRecord]) -> None:
        """Tell the listeners about ``rows`` of ``task`` as if the task were new."""


class StateApplier(Protocol):
    """The per-target state choke point (``TaskStates``)."""

    async def apply(
        self, task_id: str, target_id: str, event: TargetEvent, *, reason: str = ""
    ) -> object:
        """Apply ``event`` to the row."""


class Registry(Protocol):
    """Where the service hooks in (``TargetRegistry``)."""

    def add_listener(self, listener: Any) -> None:
        """Registrations and revocations."""

    def add_update_listener(self, listener: Any) -> None:
        """API updates of name, tags and location."""


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    """One release of an app as the views show it."""

    app: TaskAppRecord
    rows: list[TaskTargetRecord]
    stopped: bool


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceApp:
    """One device's view of one app: the release it should run and the one it runs."""

    target_id: str
    app: str
    desired: TaskAppRecord | None
    desired_row: TaskTargetRecord | None
    running: TaskAppRecord | None

    @property
    def behind(self) -> bool:
        """Whether the device does not run its desired release (yet)."""
        return self.desired is not None and (
            self.running is None or self.running.task_id != self.desired.task_id
        )


class AppService:
    """Standing releases and the app views (see the module docstring)."""

    def __init__(
        self,
        storage: Storage,
        *,
        announcer: RowAnnouncer,
        states: StateApplier,
        dispatcher: Dispatcher,
        clock: Clock,
    ) -> None:
        self._storage = storage
        self._announcer = announcer
        self._states = states
        self._dispatcher = dispatcher
        self._clock = clock

    def attach(self, registry: Registry) -> None:
        """Follow registrations and tag changes. Call it after the agent link attached
        itself, so that a device's new tags (the link's ``config``) reach it before the
        announcement of a release they admit."""
        registry.add_listener(self)
        registry.add_update_listener(self)

    async def target_registered(self, target: TargetRecord) -> None:
        """A new device: give it the standing release of each app it matches."""
        await self.reconcile(target)

    async def target_revoked(self, target: TargetRecord) -> None:
        """Nothing to do: its rows go with it."""

    async def target_updated(self, target: TargetRecord) -> None:
        """Name, tags or location changed: releases it now matches, removals it asks for."""
        await self.reconcile(target)

    # -- desired state -------------------------------------------------------------------------
    async def reconcile(self, target: TargetRecord) -> int:
        """Add ``target`` to the newest live standing release of each app that admits it,
        and stop the ``remove`` releases it no longer matches; returns the rows added."""
        now = self._clock()
        decided: set[str] = set()
        added = 0
        newest: dict[str, int] | None = None
        for rec in await self._storage.list_task_apps(standing=True):
            if not _admits(rec, target):
                if rec.remove:
                    await self._remove(rec, target.id)
                continue
            if rec.app in decided:
                continue
            task = await self._storage.get_task(rec.task_id)
            if task is None or task.stopped_at is not None or task.expires_at <= now:
                continue  # withdrawn or past its delivery window: an older release applies
            decided.add(rec.app)
            if newest is None:
                newest = await self._newest_releases(target.id)
            if newest.get(rec.app, 0) > rec.created_at:
                continue  # it got a newer release of the app (by id): the agent refuses older
            added += await self._add(task, target.id, now)
        return added

    async def _newest_releases(self, target_id: str) -> dict[str, int]:
        """Per app, the creation time of the newest release addressed to the target."""
        newest: dict[str, int] = {}
        for row in await self._storage.target_tasks(target_id):
            rec = await self._storage.get_task_app(row.task_id)
            if rec is not None and row.role == "deploy":
                newest[rec.app] = max(newest.get(rec.app, 0), rec.created_at)
        return newest

    async def stop_app(self, target_id: str, app: str) -> list[str]:
        """Stop the release(s) of ``app`` on one device (whatever is not final yet);
        returns the task ids asked to stop. :class:`NotFoundError` for an unknown device or
        an app the device has no release of."""
        items = {d.app for d in await self.target_apps(target_id)}
        if app not in items:
            raise NotFoundError(f"target {target_id} has no release of app {app}")
        asked = []
        for row in await self._storage.target_tasks(target_id):
            rec = await self._storage.get_task_app(row.task_id)
            name = rec.app if rec is not None else DEFAULT_APP
            if name != app or row.role != "deploy" or TargetState(row.state) in FINAL_STATES:
                continue
            await self._stop_row(
                row.task_id, target_id, TargetState(row.state), "stopped by an operator"
            )
            asked.append(row.task_id)
        return asked

    async def _add(self, task: TaskRecord, target_id: str, now: int) -> int:
        row = TaskTargetRecord(task.id, target_id, TargetState.PENDING.value, now)
        try:
            added = await self._storage.add_task_targets(task.id, [row])
        except NotFound:
            return 0  # the task was deleted meanwhile
        if added:
            log.info("standing task %s: target %s matches now", task.id, target_id)
            await self._announcer.announce_rows(task, [row])
        return added

    async def _remove(self, rec: TaskAppRecord, target_id: str) -> None:
        row = await self._storage.get_task_target(rec.task_id, target_id)
        if row is None or TargetState(row.state) in FINAL_STATES:
            return
        reason = "the device no longer matches the standing task (remove: true)"
        await self._stop_row(rec.task_id, target_id, TargetState(row.state), reason)

    async def _stop_row(
        self, task_id: str, target_id: str, state: TargetState, reason: str
    ) -> None:
        """A pending row is stopped here; otherwise the agent is asked to stop the task."""
        if state is TargetState.PENDING:
            try:
                await self._states.apply(task_id, target_id, TargetEvent.STOP, reason=reason)
            except (NotFoundError, TransitionError):
                pass
            return
        try:
            await self._dispatcher.submit(target_id, StopRequest(task_id))
            log.info("task %s: stopping it on %s (%s)", task_id, target_id, reason)
        except Unavailable:
            log.warning("task %s: cannot ask %s to stop now", task_id, target_id)

    # -- views ---------------------------------------------------------------------------------
    async def app_names(self) -> list[str]:
        """Every app with at least one release, sorted."""
        return sorted({r.app for r in await self._storage.list_task_apps()})

    async def releases(self, app: str) -> list[Release]:
        """The releases of ``app``, newest first, with their rows; :class:`NotFoundError`
        when the app has none."""
        out = []
        for rec in await self._storage.list_task_apps(app=app):
            task = await self._storage.get_task(rec.task_id)
            if task is None:
                continue
            rows = [r for r in await self._storage.task_targets(rec.task_id) if r.role == "deploy"]
            out.append(Release(rec, rows, task.stopped_at is not None))
        if not out:
            raise NotFoundError(f"app {app} has no releases")
        return out

    async def target_apps(self, target_id: str) -> list[DeviceApp]:
        """The apps of one device, sorted by name; :class:`NotFoundError` for an unknown
        device."""
        if await self._storage.get_target(target_id) is None:
            raise NotFoundError(f"target {target_id} is not found")
        by_app: dict[str, list[tuple[TaskAppRecord, TaskTargetRecord]]] = {}
        for row in await self._storage.target_tasks(target_id):
            if row.role != "deploy":
                continue
            rec = await self._storage.get_task_app(row.task_id)
            if rec is None:  # a task from before apps: the default app
                rec = TaskAppRecord(row.task_id, DEFAULT_APP, created_at=0)
            by_app.setdefault(rec.app, []).append((rec, row))
        return [device_app(target_id, app, pairs) for app, pairs in sorted(by_app.items())]


def device_app(
    target_id: str, app: str, pairs: list[tuple[TaskAppRecord, TaskTargetRecord]]
) -> DeviceApp:
    """Desired and running release of one app on one device from its rows, newest first."""
    desired = desired_row = running = None
    if pairs:
        rec, row = pairs[0]
        if row.state != TargetState.STOPPED:  # stopped by an operator or by remove
            desired, desired_row = rec, row
    for rec, row in pairs:
        if TargetState(row.state) in INSTALLED_STATES:
            running = rec
            break
    return DeviceApp(target_id, app, desired, desired_row, running)


def device_apps_of(releases: list[Release]) -> list[DeviceApp]:
    """Per device of one app (every device any release was addressed to), sorted by id."""
    pairs: dict[str, list[tuple[TaskAppRecord, TaskTargetRecord]]] = {}
    for release in releases:  # newest first
        for row in release.rows:
            pairs.setdefault(row.target_id, []).append((release.app, row))
    return [device_app(t, releases[0].app.app, pairs[t]) for t in sorted(pairs)]


def _admits(rec: TaskAppRecord, target: TargetRecord) -> bool:
    try:
        return parse_selector(rec.selector).matches(target.id, target.tags)
    except DescriptorError:
        return False
