"""The agent's persisted state and the restart plan derived from it.

``state.json`` (mode 0600, JSON so an operator can read it) holds the identity, registration,
the current deployment, per-task state reports the manager has not acknowledged yet, and a
bounded task history used to discard duplicate deliveries. It is written atomically (temp
file, fsync, rename, fsync of the directory) and carries a schema version; an unknown newer
version is refused rather than misread.

Restart exactly once (docs/adr/0003): the daemon persists the run marker of the processes it
is about to start *before* starting them. On the next start :func:`resume_plan` names the
markers and process groups of the previous run; :func:`kill_leftovers` kills whatever still
carries them; then the daemon saves a fresh marker and starts the remaining run commands once.
However often the agent dies in between, at most one generation of processes is alive.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from swarmdeploy.agent.errors import StateCorruptError, StateSchemaError
from swarmdeploy.agent.fsutil import DiskReserve, atomic_write
from swarmdeploy.agent.process import group_members, marked_processes, terminate_group
from swarmdeploy.agent.process import terminate_marked as _terminate_marked
from swarmdeploy.protocol.descriptor_common import DEFAULT_APP
from swarmdeploy.protocol.states import FINAL_STATES, TargetState

logger = logging.getLogger(__name__)

#: 2: ``apps`` (issue 14); a version-1 file reads as a state without named apps.
SCHEMA_VERSION = 2
#: How many tasks the history remembers for de-duplication.
HISTORY_LIMIT = 100
#: How many manager request ids are remembered (docs/protocol.md §6.8).
REQUEST_LIMIT = 200


class Location(msgspec.Struct, frozen=True):
    """Position of the device."""

    lat: float
    lon: float


class Registration(msgspec.Struct, kw_only=True):
    """What the agent learned when it registered (seed 003 §4.3)."""

    manager_url: str
    server_public_key: str
    pub_port: int
    sub_port: int
    registered_at_ms: int
    #: The manager CA's Ed25519 public key (base64): a trust anchor for signed manifests.
    ca_public_key: str = ""


class StageRun(msgspec.Struct, kw_only=True):
    """A sequential stage (install or build) in progress; its marker finds its leftovers."""

    task_id: str
    stage: str
    run_id: str


class HealthPhase(msgspec.Struct, kw_only=True):
    """Where the health checks of a new release stand (``deploy.health``,
    :mod:`swarmdeploy.agent.healthgate`): persisted so that an agent killed during the
    checks resumes them with the attempts and the deadline left."""

    #: When the run commands of the release first started (epoch ms): the deadline's origin.
    started_ms: int
    attempts_done: int = 0
    #: Why the last failed attempt failed (the reason reported on a rollback).
    last_failure: str = ""


class Deployment(msgspec.Struct, kw_only=True):
    """The installed deployment whose run commands the agent supervises.

    ``run_id`` marks the processes of the current run; ``finished`` lists the indexes of run
    commands that ended for good (not restarted after an agent restart); ``stopped`` records an
    operator stop, after which nothing is restarted.
    """

    task_id: str
    install_dir: str
    debug: bool = False
    run_commands: list[str] = msgspec.field(default_factory=list)
    auto_restart: bool = False
    run_id: str | None = None
    process_groups: list[int] = msgspec.field(default_factory=list)
    finished: list[int] = msgspec.field(default_factory=list)
    #: Indexes (a subset of ``finished``) of run commands that ended badly or were given up.
    failed: list[int] = msgspec.field(default_factory=list)
    stopped: bool = False
    #: Sequence of the signed manifest installed (0: unsigned, insecure lab mode only).
    sequence: int = 0
    #: :func:`swarmdeploy.agent.taskdirs.tree_digest` of the install dir, taken after install.
    tree_digest: str = ""
    #: The device's tags when the release was installed: a release whose signed selector
    #: admitted the device then keeps starting after its tags change (docs/adr/0010).
    admitted_tags: list[str] = msgspec.field(default_factory=list)
    #: Set while the release's health checks run (``deploy.health``); None once decided.
    health: HealthPhase | None = None
    #: While the checks run: the release it replaced, restored if they fail (its run
    #: commands start again, verified like every start). None without one or once healthy.
    previous: Deployment | None = None


class SignerMark(msgspec.Struct, kw_only=True):
    """The highest sequence number accepted from one signing key (fast-forward recovery)."""

    key_id: str
    serial: int
    sequence: int


class TrustState(msgspec.Struct, kw_only=True):
    """What verification of signed tasks must remember (``docs/security.md``).

    ``last_sequence``: per task kind, the highest sequence number accepted (rollback and
    replay defence), and ``last_task`` the task that set it (re-verified after a restart).
    ``signers``: per task kind, the highest sequence accepted from each signing key, so that
    revoking a key that signed an absurdly high sequence (fast-forward) brings
    ``last_sequence`` back to what unrevoked keys signed. ``revocation_number``: the number
    of the newest revocation list accepted (an older one cannot un-revoke a key).
    """

    last_sequence: dict[str, int] = msgspec.field(default_factory=dict)
    last_task: dict[str, str] = msgspec.field(default_factory=dict)
    signers: dict[str, list[SignerMark]] = msgspec.field(default_factory=dict)
    revocation_number: int = 0


class StateReport(msgspec.Struct, kw_only=True):
    """A per-task state change not yet acknowledged (the fields of the wire ``state``)."""

    task_id: str
    state: TargetState
    at_ms: int
    reason: str | None = None


class AgentState(msgspec.Struct, kw_only=True):
    """Everything the agent keeps across restarts."""

    schema: int = SCHEMA_VERSION
    agent_id: str
    name: str = ""
    tags: list[str] = msgspec.field(default_factory=list)
    location: Location | None = None
    registration: Registration | None = None
    #: The installed release of the default app (tasks without ``app``).
    deployment: Deployment | None = None
    #: The installed release of each named app (docs/protocol.md "Apps"), by app name.
    apps: dict[str, Deployment] = msgspec.field(default_factory=dict)
    stage_run: StageRun | None = None
    unacked: list[StateReport] = msgspec.field(default_factory=list)
    history: dict[str, TargetState] = msgspec.field(default_factory=dict)
    #: The retry attempt (``announce.attempt``) each task of ``history`` was last assessed
    #: at, when above 0: a higher one is a retry, an equal one a repeated announcement.
    attempts: dict[str, int] = msgspec.field(default_factory=dict)
    config_revision: int = 0
    recent_requests: list[str] = msgspec.field(default_factory=list)
    #: Nonces of signed operator requests carried out, with their expiry (ms): a replay
    #: inside the window is refused (``agent/request_trust.py``).
    request_nonces: dict[str, int] = msgspec.field(default_factory=dict)
    trust: TrustState = msgspec.field(default_factory=TrustState)
    #: When the manager first refused this identity's key (0: never, or connected since):
    #: the target was deleted; a new token then enrols a new identity (``agent/reenrol.py``).
    refused_at_ms: int = 0

    def deployment_of(self, app: str) -> Deployment | None:
        """The installed release of ``app`` (``default``: :attr:`deployment`)."""
        return self.deployment if app == DEFAULT_APP else self.apps.get(app)

    def set_deployment(self, app: str, dep: Deployment) -> None:
        """Record ``dep`` as the installed release of ``app`` (persist with ``save_state``)."""
        if app == DEFAULT_APP:
            self.deployment = dep
        else:
            self.apps[app] = dep

    def deployments(self) -> list[tuple[str, Deployment]]:
        """Every installed release as ``(app, deployment)``, the default app first."""
        first = [(DEFAULT_APP, self.deployment)] if self.deployment is not None else []
        return first + sorted(self.apps.items())

    def report(self, task_id: str, state: TargetState, reason: str | None = None) -> StateReport:
        """Queue a state report (kept until :meth:`ack_report`) and note it in the history.

        Persist the state (:func:`save_state`) before sending the report (protocol §6.4).
        """
        item = StateReport(
            task_id=task_id, state=state, at_ms=time.time_ns() // 1_000_000, reason=reason
        )
        self.unacked.append(item)
        self.remember(task_id, state)
        return item

    def ack_report(self, task_id: str, state: TargetState) -> bool:
        """The manager acknowledged ``(task_id, state)``: forget that report."""
        before = len(self.unacked)
        self.unacked = [r for r in self.unacked if (r.task_id, r.state) != (task_id, state)]
        return len(self.unacked) < before

    def remember_request(self, request_id: str) -> bool:
        """Note a manager request id; False if it was seen before (re-sent: ack, don't redo)."""
        if request_id in self.recent_requests:
            return False
        self.recent_requests.append(request_id)
        del self.recent_requests[:-REQUEST_LIMIT]
        return True

    def remember(self, task_id: str, state: TargetState) -> None:
        """Record the latest state of a task, keeping the last :data:`HISTORY_LIMIT` tasks."""
        self.history.pop(task_id, None)
        self.history[task_id] = state
        while len(self.history) > HISTORY_LIMIT:
            del self.history[next(iter(self.history))]
        if len(self.attempts) > HISTORY_LIMIT:
            self.attempts = {t: n for t, n in self.attempts.items() if t in self.history}

    def begin_attempt(self, task_id: str, attempt: int) -> bool:
        """An announcement of ``task_id`` at retry ``attempt``: True if it is a new attempt
        of a task this agent ended in a final state -- the task is then forgotten (history
        and unacknowledged reports) so that it is assessed again. The attempt is noted."""
        if attempt <= self.attempts.get(task_id, 0):
            return False
        self.attempts[task_id] = attempt
        if self.history.get(task_id) not in FINAL_STATES:
            return False
        del self.history[task_id]
        self.unacked = [r for r in self.unacked if r.task_id != task_id]
        return True

    def seen(self, task_id: str) -> bool:
        """Whether this task was handled before (a duplicate delivery to discard)."""
        return task_id in self.history


class _Schema(msgspec.Struct):
    schema: int = 0


def load_state(path: Path) -> AgentState | None:
    """Read the state; None if the file does not exist.

    Raises :class:`StateCorruptError` for an unreadable or invalid file and
    :class:`StateSchemaError` for a schema version newer than this agent knows.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateCorruptError(f"cannot read agent state {path}: {exc}") from exc
    try:
        version = msgspec.json.decode(raw, type=_Schema).schema
    except msgspec.DecodeError as exc:
        raise StateCorruptError(f"agent state {path} is damaged: {exc}") from exc
    if version > SCHEMA_VERSION:
        raise StateSchemaError(
            f"agent state {path} has schema {version}; this agent knows up to {SCHEMA_VERSION}"
            " (was it written by a newer agent?)"
        )
    if version < 1:
        raise StateCorruptError(f"agent state {path} has no valid schema version")
    try:
        return msgspec.json.decode(raw, type=AgentState)
    except msgspec.DecodeError as exc:
        raise StateCorruptError(f"agent state {path} is invalid: {exc}") from exc


def save_state(path: Path, state: AgentState, reserve: DiskReserve | None = None) -> None:
    """Write the state atomically with mode 0600 (temp file, fsync, rename, fsync dir); on a
    full disk the ``reserve`` is freed for it (:func:`~swarmdeploy.agent.fsutil.atomic_write`)."""
    data = msgspec.json.format(msgspec.json.encode(state), indent=1)
    atomic_write(path, data, 0o600, reserve)


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What the daemon does at start, in this order.

    1. ``await kill_leftovers(plan, grace_s)``: processes of the previous agent run;
    2. report ``interrupted`` (a stage cut short by the restart) as failed;
    3. persist a fresh run id in the deployment, then start ``start_commands`` (indexes into
       ``deployment.run_commands``) once.
    """

    kill_run_ids: tuple[str, ...]
    kill_groups: tuple[int, ...]
    interrupted: StageRun | None
    deployment: Deployment | None
    start_commands: tuple[int, ...]
    #: Per app (the default app included) the run commands to start once.
    app_starts: tuple[tuple[str, tuple[int, ...]], ...] = ()


def resume_plan(state: AgentState) -> ResumePlan:
    """Derive the restart plan from the persisted state (pure; no process is touched)."""
    run_ids = []
    groups: list[int] = []
    starts: dict[str, tuple[int, ...]] = {}
    for app, dep in state.deployments():
        if dep.run_id:
            run_ids.append(dep.run_id)
        groups.extend(dep.process_groups)
        if not dep.stopped:
            starts[app] = tuple(i for i in range(len(dep.run_commands)) if i not in dep.finished)
    if state.stage_run is not None:
        run_ids.append(state.stage_run.run_id)
    return ResumePlan(
        tuple(run_ids),
        tuple(groups),
        state.stage_run,
        state.deployment,
        starts.get(DEFAULT_APP, ()),
        tuple(starts.items()),
    )


async def kill_leftovers(plan: ResumePlan, grace_s: float) -> bool:
    """Stop every process of the previous run (TERM, grace, KILL); True if none is left.

    A recorded process group is only signalled if one of its live members carries a marker
    of the plan: after a reboot or a long outage the same number may belong to someone else.
    """
    marked = {pid for run_id in plan.kill_run_ids for pid in marked_processes(run_id)}
    ok = True
    for pgid in plan.kill_groups:
        if marked.intersection(group_members(pgid)):
            logger.info("killing leftover process group %d of the previous agent run", pgid)
            ok = await terminate_group(pgid, grace_s) and ok
    for run_id in plan.kill_run_ids:
        ok = await _terminate_marked(run_id, grace_s) and ok
    return ok
