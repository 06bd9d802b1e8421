"""The set of service objects one app instance uses (built by ``create_app``)."""

from __future__ import annotations

import dataclasses

from swarmdeploy.manager.dispatch import Dispatcher
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.keystore import ManagerKeys
from swarmdeploy.manager.services.apps import AppService
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import ApiKeyService, Authenticator
from swarmdeploy.manager.services.blobs import BlobStore
from swarmdeploy.manager.services.control import TargetControl
from swarmdeploy.manager.services.descriptor_guard import DescriptorGuard
from swarmdeploy.manager.services.floorplans import FloorPlans
from swarmdeploy.manager.services.health import HealthHistory
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.registration import RegistrationService
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.manager.services.stats import StatsService
from swarmdeploy.manager.services.task_signing import TaskSigner
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.manager.services.tasks import TaskService
from swarmdeploy.manager.services.tokens import TokenService
from swarmdeploy.manager.settings import Settings
from swarmdeploy.storage.base import Storage


@dataclasses.dataclass(frozen=True)
class Services:
    """Everything routers need, reachable as ``request.app.state.services``.

    The transport server uses ``logs.ingest``, ``registry`` (listeners, online state),
    ``task_states.apply`` (agent acknowledgements), ``dispatcher`` (``ready``/``drain``),
    ``blobs``, ``events`` and ``storage``.
    """

    settings: Settings
    storage: Storage
    keys: ManagerKeys
    events: EventHub
    dispatcher: Dispatcher
    blobs: BlobStore
    metrics: Metrics
    auth: Authenticator
    api_keys: ApiKeyService
    tokens: TokenService
    registry: TargetRegistry
    registration: RegistrationService
    control: TargetControl
    logs: LogService
    task_states: TaskStates
    tasks: TaskService
    stats: StatsService
    operator_keys: OperatorKeys
    task_signer: TaskSigner
    health: HealthHistory
    floorplans: FloorPlans
    audit: AuditLog
    descriptor_guard: DescriptorGuard
    apps: AppService
