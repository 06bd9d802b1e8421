"""``create_app(settings)``: the manager's ASGI application, built fresh on every call.

No import-time globals: the factory loads (or creates) the key material in the data
directory, builds the services around one :class:`~swarmdeploy.storage.base.Storage`, and
wires the thin routers to them through ``app.state.services``. The lifespan opens the
storage, starts the agent link (``settings.agent_link`` or an injected transport; reachable as
``app.state.link``), sweeps files of interrupted work (``services.blob_gc``), runs the
background jobs (log retention, expired-token purge, task expiry, blob collection) and undoes
all of it on shutdown. The app owns the storage and the transport it is
given: it opens and closes them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from swarmdeploy import __version__
from swarmdeploy.manager.api import apps as apps_api
from swarmdeploy.manager.api import artifacts as artifacts_api
from swarmdeploy.manager.api import audit as audit_api
from swarmdeploy.manager.api import ca as ca_api
from swarmdeploy.manager.api import (
    events_ws,
    keys,
    logs,
    operator_keys,
    rpc,
    system,
    targets,
    tokens,
)
from swarmdeploy.manager.api import floorplans as floorplans_api
from swarmdeploy.manager.api.errors import COMMON_RESPONSES, install_error_handlers
from swarmdeploy.manager.api.middleware import BodyLimitMiddleware, ErrorAndMetricsMiddleware
from swarmdeploy.manager.api.openapi import DESCRIPTION, install_openapi
from swarmdeploy.manager.api.tasks import build_tasks_router
from swarmdeploy.manager.background import PeriodicJob
from swarmdeploy.manager.clock import Clock, wall_ms
from swarmdeploy.manager.dispatch import Dispatcher, MemoryDispatcher
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.keystore import load_or_create_keys, prepare_data_dir, resolve_admin_key
from swarmdeploy.manager.link import LinkServer, LinkSettings
from swarmdeploy.manager.services.apps import AppService
from swarmdeploy.manager.services.audit import AuditLog
from swarmdeploy.manager.services.auth import ApiKeyService, Authenticator
from swarmdeploy.manager.services.blob_gc import BlobCollector
from swarmdeploy.manager.services.blobs import BlobStore, FileBlobStore
from swarmdeploy.manager.services.container import Services
from swarmdeploy.manager.services.control import TargetControl
from swarmdeploy.manager.services.descriptor_guard import DescriptorGuard
from swarmdeploy.manager.services.floorplans import MAX_IMAGE_BYTES, FloorPlans
from swarmdeploy.manager.services.group_commit import GroupCommit
from swarmdeploy.manager.services.health import HealthHistory
from swarmdeploy.manager.services.logs import LogService
from swarmdeploy.manager.services.metered_storage import metered
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.oidc import OidcVerifier
from swarmdeploy.manager.services.ratelimit import RegistrationLimiter
from swarmdeploy.manager.services.registration import RegistrationService
from swarmdeploy.manager.services.registry import TargetRegistry
from swarmdeploy.manager.services.request_signing import RequestSigner
from swarmdeploy.manager.services.rollouts import STEP_INTERVAL_S
from swarmdeploy.manager.services.signing import OperatorKeys
from swarmdeploy.manager.services.stats import StatsService
from swarmdeploy.manager.services.task_signing import TaskSigner
from swarmdeploy.manager.services.task_states import TaskStates
from swarmdeploy.manager.services.tasks import TaskService
from swarmdeploy.manager.services.tokens import TokenService
from swarmdeploy.manager.settings import Settings
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.transport.base import ManagerLinkConfig, ManagerTransport
from swarmdeploy.transport.http_manager import HttpLinkConfig, HttpManagerTransport
from swarmdeploy.transport.multi import MultiManagerTransport
from swarmdeploy.transport.zmq import ZmqManagerTransport

log = logging.getLogger(__name__)


def _oidc(settings: Settings) -> OidcVerifier | None:
    if not settings.oidc_enabled:
        return None
    assert settings.oidc_issuer and settings.oidc_jwks_url and settings.oidc_audience
    return OidcVerifier(
        issuer=settings.oidc_issuer,
        jwks_url=settings.oidc_jwks_url,
        audience=settings.oidc_audience,
        role_claim=settings.oidc_role_claim,
        role_map=settings.oidc_role_map,
    )


def build_services(
    settings: Settings,
    storage: Storage,
    *,
    dispatcher: Dispatcher | None = None,
    blobs: BlobStore | None = None,
    clock: Clock = wall_ms,
) -> Services:
    """Load the key material and construct every service (no network or database I/O)."""
    prepare_data_dir(settings.data_dir)
    keys = load_or_create_keys(
        settings.data_dir,
        now=dt.datetime.now(dt.UTC),
        ca_passphrase_file=settings.ca_passphrase_file,
    )
    admin = resolve_admin_key(settings.data_dir, settings.admin_key)
    metrics = Metrics()
    storage = metered(storage, metrics)
    events = EventHub(
        queue_size=settings.event_queue_size,
        queue_bytes=settings.event_queue_bytes,
        on_drop=metrics.count_dropped,
    )
    dispatcher = dispatcher or MemoryDispatcher(max_per_target=settings.dispatch_queue_size)
    blobs = blobs or FileBlobStore(settings.data_dir / "blobs")
    registry = TargetRegistry(
        storage,
        events=events,
        dispatcher=dispatcher,
        clock=clock,
        online_timeout_ms=settings.online_timeout_ms,
        ca_fingerprint=keys.ca.key_fingerprint,
    )
    commits = GroupCommit(storage)  # the link's writes share transactions (ADR 0011)
    logs = LogService(storage, events=events, metrics=metrics, clock=clock, commits=commits)
    states = TaskStates(storage, events=events, clock=clock, commits=commits)
    operator_keys = OperatorKeys(storage, ca=keys.ca, secret=keys.secret, clock=clock)
    signer = TaskSigner(storage, keys=operator_keys, blobs=blobs, clock=clock)
    audit = AuditLog(storage, clock=clock)
    limiter = RegistrationLimiter(
        per_address_per_min=settings.registration_rate_per_min,
        burst=settings.registration_burst,
        global_per_min=settings.registration_global_rate_per_min,
        clock=time.monotonic,
    )
    tasks = TaskService(
        storage,
        blobs=blobs,
        events=events,
        dispatcher=dispatcher,
        logs=logs,
        states=states,
        clock=clock,
        audit=audit,
        signer=signer,
    )
    return Services(
        settings=settings,
        storage=storage,
        keys=keys,
        events=events,
        dispatcher=dispatcher,
        blobs=blobs,
        metrics=metrics,
        auth=Authenticator(
            storage, secret=keys.secret, admin_key=admin.value, clock=clock, oidc=_oidc(settings)
        ),
        api_keys=ApiKeyService(storage, secret=keys.secret, clock=clock, events=events),
        tokens=TokenService(
            storage, secret=keys.secret, clock=clock, default_expiry_s=settings.token_expiry_s
        ),
        registry=registry,
        registration=RegistrationService(
            storage,
            registry=registry,
            ca=keys.ca,
            secret=keys.secret,
            limiter=limiter,
            events=events,
            metrics=metrics,
            clock=clock,
        ),
        control=TargetControl(
            registry=registry,
            dispatcher=dispatcher,
            logs=logs,
            signer=RequestSigner(
                signer=signer,
                keys=operator_keys,
                clock=clock,
                validity_ms=int(settings.terminal_expiry_s * 1000),
            ),
            audit=audit,
        ),
        logs=logs,
        task_states=states,
        tasks=tasks,
        apps=AppService(
            storage, announcer=tasks, states=states, dispatcher=dispatcher, clock=clock
        ),
        stats=StatsService(storage, registry=registry, metrics=metrics, events=events, blobs=blobs),
        operator_keys=operator_keys,
        task_signer=signer,
        health=HealthHistory(
            storage,
            clock=clock,
            sample_interval_s=settings.health_sample_s,
            keep_s=settings.health_history_s,
        ),
        floorplans=FloorPlans(storage, clock=clock),
        audit=audit,
        descriptor_guard=DescriptorGuard(
            max_yaml_bytes=settings.max_yaml_body_bytes,
            max_elements=settings.max_descriptor_elements,
        ),
    )


def background_jobs(services: Services) -> list[PeriodicJob]:
    """The periodic jobs of one app: log retention, token purge, task expiry, rollouts."""
    s = services.settings

    async def retention() -> None:
        await services.logs.enforce_retention(max_age_s=s.log_max_age_s, max_rows=s.log_max_rows)

    return [
        PeriodicJob("log-retention", s.log_retention_interval_s, retention),
        PeriodicJob("token-purge", s.token_purge_interval_s, services.tokens.purge_expired),
        PeriodicJob("task-expiry", s.task_expiry_interval_s, services.tasks.expire),
        PeriodicJob("rollouts", STEP_INTERVAL_S, services.tasks.rollouts.step_all),
        PeriodicJob("health-history", s.log_retention_interval_s, services.health.purge),
        PeriodicJob("registration-report", 60.0, _report(services)),
    ]


def _report(services: Services) -> Callable[[], Awaitable[None]]:
    async def report() -> None:
        services.registration.report()

    return report


def http_link(services: Services) -> HttpManagerTransport | None:
    """The HTTP polling link (ADR 0013) when ``settings.agent_link`` is on, else ``None``;
    its ASGI app is mounted at ``/agent``."""
    if not services.settings.agent_link:
        return None
    metrics = services.metrics
    http = HttpManagerTransport(
        HttpLinkConfig(keys=services.keys.curve),
        on_refused=lambda code: metrics.http_link_refused.labels(code).inc(),
    )
    metrics.add_probe(lambda: metrics.http_link_agents.set(http.live_count()))
    return http


def link_server(
    services: Services,
    transport: ManagerTransport | None,
    *,
    clock: Clock,
    http: HttpManagerTransport | None = None,
) -> LinkServer | None:
    """The agent link of an app: over ``transport`` if given, else over CurveZMQ on the
    configured ports together with the HTTP link ``http`` when ``settings.agent_link`` is on,
    else none."""
    s = services.settings
    if transport is None:
        if not s.agent_link:
            return None
        zmq_link = ZmqManagerTransport(
            ManagerLinkConfig(
                keys=services.keys.curve,
                bind_host=s.bind,
                zmq_sub_port=s.zmq_sub_port,
                zmq_pub_port=s.zmq_pub_port,
            )
        )
        inner: dict[str, ManagerTransport] = {"zmq": zmq_link}
        if http is not None:
            inner["http"] = http
        transport = MultiManagerTransport(inner)
    return LinkServer(services, transport, LinkSettings.from_settings(s), clock=clock)


def create_app(
    settings: Settings,
    storage: Storage | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    blobs: BlobStore | None = None,
    clock: Clock = wall_ms,
    transport: ManagerTransport | None = None,
) -> FastAPI:
    """The manager's FastAPI application for ``settings``.

    ``storage`` defaults to ``open_storage(settings.database_url)``; ``dispatcher``, ``blobs``
    and ``clock`` are seams for tests. ``transport`` serves agents instead of the CurveZMQ
    sockets that ``settings.agent_link`` asks for. The services are reachable as
    ``app.state.services``, the agent link (or ``None``) as ``app.state.link``.
    """
    storage = storage if storage is not None else open_storage(settings.database_url)
    services = build_services(settings, storage, dispatcher=dispatcher, blobs=blobs, clock=clock)
    blob_gc = BlobCollector(services.storage, services.blobs, clock=clock, metrics=services.metrics,
                            spool_dir=settings.data_dir / "incoming")  # fmt: skip
    services.tasks.add_delete_listener(blob_gc)
    http = http_link(services) if transport is None else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.startup_error = None
        try:
            await storage.open()
        except Exception as exc:  # shown as one line by ``manager.startup``
            app.state.startup_error = exc
            raise
        link = link_server(services, transport, clock=clock, http=http)
        app.state.link = link
        if http is not None and link is not None:
            http.serve_payloads(link.delivery)  # ranged payload downloads (ADR 0013)
        await blob_gc.at_start(None if link is None else link.uploads)
        if link is not None:
            try:
                await link.start()
            except BaseException as exc:
                app.state.startup_error = exc
                await link.close()
                await storage.close()
                raise
        services.apps.attach(services.registry)  # after the link: its config goes first
        jobs = [*background_jobs(services), blob_gc.job()]
        for job in jobs:
            job.start()
        log.info("manager API ready (storage %s)", type(storage).__name__)
        try:
            yield
        finally:
            for job in jobs:
                await job.stop()
            if link is not None:
                await link.close()
            services.events.close()
            await storage.close()
            log.info("manager API stopped")

    task_limit = settings.max_task_body_bytes
    app = FastAPI(
        title="swarmdeploy manager",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Starlette builds the trailing-slash redirect from the Host header, unauthenticated
        # (GET /tasks/ with Host: evil.example -> Location: http://evil.example/tasks).
        redirect_slashes=False,
        middleware=[
            Middleware(ErrorAndMetricsMiddleware, metrics=services.metrics),
            Middleware(
                BodyLimitMiddleware,
                default_bytes=settings.max_body_bytes,
                rules=[
                    ("POST", r"/(tasks|orders)/?", task_limit),
                    ("POST", r"/floorplans/?", MAX_IMAGE_BYTES),
                    ("POST", r"/agent/v1/link", HttpLinkConfig.max_body_limit()),
                ],
            ),
        ],
    )
    app.state.services = services
    app.state.link = None
    #: The HTTP agent link, drained when the server begins to stop (``manager.main``).
    app.state.http_link = http
    install_error_handlers(app)
    routers = (
        targets.router,
        logs.router,
        tokens.router,
        keys.router,
        operator_keys.router,
        floorplans_api.router,
        audit_api.router,
        apps_api.router,
    )
    app.include_router(ca_api.router, responses=COMMON_RESPONSES)
    for router in (*routers, rpc.router):
        app.include_router(router, responses=COMMON_RESPONSES)
    app.include_router(artifacts_api.router, responses=COMMON_RESPONSES)
    app.include_router(
        build_tasks_router(orders=False), prefix="/tasks", responses=COMMON_RESPONSES
    )
    app.include_router(
        build_tasks_router(orders=True), prefix="/orders", responses=COMMON_RESPONSES
    )
    app.include_router(system.router, responses=COMMON_RESPONSES)
    app.include_router(events_ws.router)
    if http is not None:
        app.mount("/agent", http.asgi)
    install_openapi(app)
    return app
