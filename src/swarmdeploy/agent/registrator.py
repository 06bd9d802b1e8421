"""Registration with the manager (seed 003 §4.3): once, with a single-use token.

:func:`ensure_registered` is called by the entry point before the daemon starts:

* already registered (``state.registration`` set): nothing is sent; a given token is
  ignored (it is spent), and an ``--id`` that differs from the registered id is an error --
  unless the manager refused this identity (the target was deleted): then a given token
  enrols a new identity (:mod:`swarmdeploy.agent.reenrol`), and without one the agent
  says that it needs one;
* otherwise the keys are created (:mod:`swarmdeploy.agent.identity`), the id is fixed (from
  ``--id`` or generated once from the host name and persisted before the first attempt) and
  ``POST {manager}/rpc/targets`` is sent with the token in ``X-Auth-Token``. The CA the
  manager presents (``caPublicKey``, ``caCertificate``) must match the provisioned trust
  anchors when there are any (a ``sha256:`` pin resolves to it; anything else refuses to
  register: ``anchor_mismatch``). The answer's server info is persisted in the agent state,
  the manager's CA certificate is written to ``DIR/ca.pem`` and the device certificate to
  ``DIR/agent.pem``.

Errors are :class:`~swarmdeploy.agent.errors.RegistrationError` with one line naming the
problem; ``retryable`` ones (exit status 3) are an unreachable or failing manager and
rate limiting that outlasted the retries (429 is retried after ``Retry-After``).

HTTP goes through :mod:`urllib` (imported here only): the agent must stay lean. The entry
point registers through :func:`register_in_child`, in a short-lived forked child, so that
:mod:`urllib`, :mod:`http.client`, :mod:`email` and OpenSSL never load into the long-lived
agent process (about 1.5 MB of resident memory, 7 MB more for ``https://``). Proxies from
the environment are ignored on purpose; ``--proxy`` is the one way to configure a proxy.
For an ``https://`` manager the server certificate is checked against ``--tls-ca FILE``
only (no system store; a pinned server certificate or its CA) or, without that option,
against the system's trust store (:func:`tls_context`, ``docs/tls.md``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from swarmdeploy.agent import errors
from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import AgentFatalError, ConfigError, RegistrationError
from swarmdeploy.agent.fsutil import atomic_write
from swarmdeploy.agent.identity import Identity, load_identity
from swarmdeploy.agent.reenrol import REVOKED_MESSAGE, retire, wants_reenrol
from swarmdeploy.agent.state import AgentState, Location, Registration, load_state, save_state
from swarmdeploy.agent.trust import adopt_manager_ca
from swarmdeploy.crypto.curve import validate_public_key
from swarmdeploy.crypto.errors import InvalidKey
from swarmdeploy.crypto.rejections import VerificationError

if TYPE_CHECKING:
    import ssl

    from swarmdeploy.crypto.anchors import AnchorSet

logger = logging.getLogger(__name__)

CA_FILE = "ca.pem"
CERTIFICATE_FILE = "agent.pem"
MAX_ATTEMPTS = 4
MAX_RETRY_AFTER_S = 60.0
_ID_CHARS = re.compile(r"[^A-Za-z0-9._:@-]+")


class _ZeroMq(msgspec.Struct, rename="camel"):
    public_key: str
    pub_port: int
    sub_port: int


class _Answer(msgspec.Struct, rename="camel"):
    id: str
    zeromq: _ZeroMq
    ca_certificate: str
    ca_public_key: str
    certificate: str = ""
    signature: str = ""


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    """Status, ``Retry-After`` (seconds, if given) and body of one HTTP exchange."""

    status: int
    retry_after_s: float | None
    body: bytes


#: Sends one POST: (url, json body, headers, timeout) -> answer. Tests may pass their own.
Poster = Callable[[str, bytes, dict[str, str], float], HttpAnswer]
#: GET ``url`` with a timeout (the public ``/rpc/server_info`` before a registration).
Fetcher = Callable[[str, float], HttpAnswer]


def generate_id(hostname: str | None = None) -> str:
    """A target id from the host name plus a random suffix, e.g. ``raspberrypi-3f9a1c``."""
    base = _ID_CHARS.sub("-", hostname if hostname is not None else socket.gethostname())
    base = base.strip("-._:@")[:100] or "agent"
    return f"{base}-{os.urandom(3).hex()}"


def ensure_registered(
    settings: AgentSettings,
    anchors: AnchorSet,
    *,
    poster: Poster | None = None,
    fetcher: Fetcher | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[AgentState, Identity]:
    """Return the registered state and keys, registering first if needed (module docstring).

    Raises :class:`RegistrationError`, :class:`ConfigError` or a ``StateError``.
    """
    state = load_state(settings.state_path)
    if state is not None and wants_reenrol(settings, state):
        state = retire(settings, state, settings.target_id or generate_id())
    if state is not None and state.registration is not None:
        if state.refused_at_ms:
            logger.warning(REVOKED_MESSAGE, state.agent_id)
        if settings.target_id is not None and settings.target_id != state.agent_id:
            raise RegistrationError(
                f"--id {settings.target_id!r} differs from the registered id"
                f" {state.agent_id!r}; drop --id or use a new data dir to register anew"
            )
        if settings.token:
            logger.info("already registered as %s; the given token is not used", state.agent_id)
        if settings.tags and list(settings.tags) != state.tags:
            logger.info(
                "--tags is only sent at registration; tags are managed through the manager"
                " now (current: %s)",
                ", ".join(state.tags) or "none",
            )
        return state, load_identity(settings.data_dir, create=False)
    state = _unregistered_state(settings, state)
    _check_can_register(settings)
    identity = load_identity(settings.data_dir, create=True)
    tls_ca = settings.tls_ca if _https(settings.manager_url) else None
    if anchors:
        # The one-time token goes only to a manager whose CA the anchors accept.
        default = proxy_fetcher(settings.proxy) if settings.proxy else urllib_fetcher(tls_ca)
        _check_manager_ca(settings, anchors, fetcher or default)
    post = poster or (proxy_poster(settings.proxy) if settings.proxy else urllib_poster(tls_ca))
    answer = _register(settings, state, identity, post, sleep)
    _accept(settings, anchors, state, answer)
    return state, identity


def register_in_child(settings: AgentSettings, anchors: AnchorSet) -> bool:
    """Register like :func:`ensure_registered`, but in a forked child process that exits
    when done; return whether it registered (False: registered already, nothing done).

    The long-lived agent process thereby never loads the HTTP and TLS modules. Call it
    before any thread is started (``fork``). A missing token or manager URL is refused
    here without a child; errors of the child are raised here again, with the same class
    (for the agent's own fatal errors), message and exit status.
    """
    state = load_state(settings.state_path)
    if state is not None and state.registration is not None:
        if not wants_reenrol(settings, state):
            return False
    else:
        _unregistered_state(settings, state)
    _check_can_register(settings)
    _in_child(lambda: ensure_registered(settings, anchors))
    return True


def _in_child(work: Callable[[], object]) -> None:
    """Run ``work`` in a forked child; raise its :class:`AgentFatalError` (or a generic one
    when it failed otherwise) in the parent."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        os._exit(_child_main(work, write_fd))
    os.close(write_fd)
    with open(read_fd, "rb") as pipe:
        report = pipe.read()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status == 0:
        return
    if report:
        raise _fatal_error(msgspec.json.decode(report, type=_ChildError))
    raise AgentFatalError(f"registration ended with exit status {status} (see the log)")


class _ChildError(msgspec.Struct):
    kind: str
    message: str
    exit_status: int


def _child_main(work: Callable[[], object], report_fd: int) -> int:
    for name in ("ssl", "_ssl"):  # the agent process blocks OpenSSL; https needs it here
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    with open(report_fd, "wb") as report:
        try:
            work()
        except AgentFatalError as exc:
            error = _ChildError(type(exc).__name__, str(exc), exc.exit_status)
            report.write(msgspec.json.encode(error))
            return exc.exit_status
        except BaseException:  # the child's top: log it, the parent reports the status
            logger.exception("registration failed")
            return 70
    return 0


def _fatal_error(error: _ChildError) -> AgentFatalError:
    """The child's error as the same class of :mod:`swarmdeploy.agent.errors`."""
    if error.kind == RegistrationError.__name__:
        return RegistrationError(error.message, retryable=error.exit_status == 3)
    kind = getattr(errors, error.kind, None)
    if isinstance(kind, type) and issubclass(kind, AgentFatalError):
        try:
            exc = kind(error.message)
        except TypeError:  # a class with another signature: keep message and status
            exc = AgentFatalError(error.message)
    else:
        exc = AgentFatalError(error.message)
    exc.exit_status = error.exit_status
    return exc


def _check_can_register(settings: AgentSettings) -> None:
    if not settings.token:
        raise RegistrationError(
            "this agent is not registered yet: give a registration token with --token"
            " (or SWARMDEPLOY_AGENT_TOKEN)"
        )
    if settings.manager_url is None:
        raise ConfigError("--manager is required to register")


def _unregistered_state(settings: AgentSettings, state: AgentState | None) -> AgentState:
    """Fix the id before the first attempt, so that retries use the same one."""
    agent_id = settings.target_id or (state.agent_id if state is not None else generate_id())
    if state is None or state.agent_id != agent_id:
        state = AgentState(agent_id=agent_id)
        save_state(settings.state_path, state)
        logger.info("agent id is %s", agent_id)
    return state


def _register(
    settings: AgentSettings,
    state: AgentState,
    identity: Identity,
    poster: Poster,
    sleep: Callable[[float], None],
) -> _Answer:
    assert settings.manager_url is not None and settings.token is not None
    url = settings.manager_url.rstrip("/") + "/rpc/targets"
    body: dict[str, object] = {
        "id": state.agent_id,
        "tags": list(settings.tags),
        "publicKey": identity.curve.public,
        "identityKey": identity.identity_public_b64(),
    }
    if settings.name:
        body["name"] = settings.name
    if settings.location is not None:
        body["location"] = {"lat": settings.location[0], "lon": settings.location[1]}
    headers = {"X-Auth-Token": settings.token}
    data = msgspec.json.encode(body)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        answer = poster(url, data, headers, 10.0)
        if answer.status not in (429, 503) or attempt == MAX_ATTEMPTS:
            return _parse(answer, state.agent_id, url)
        wait_s = min(answer.retry_after_s or 1.0, MAX_RETRY_AFTER_S)
        logger.warning("registration: manager asks to wait %.0f s (HTTP %d)", wait_s, answer.status)
        sleep(wait_s)
    raise AssertionError("unreachable")  # the loop always returns


def _parse(answer: HttpAnswer, agent_id: str, url: str) -> _Answer:
    message = _error_text(answer.body)
    if answer.status == 401:
        raise RegistrationError(
            f"registration token refused (bad, expired or already used): {message}"
        )
    if answer.status == 409:
        raise RegistrationError(
            f"id {agent_id!r} is already registered at the manager; choose another --id"
        )
    if answer.status == 429:
        raise RegistrationError(f"registration rate limited: {message}", retryable=True)
    if answer.status >= 500:
        raise RegistrationError(f"manager error {answer.status}: {message}", retryable=True)
    if answer.status != 201:
        raise RegistrationError(f"registration refused ({answer.status}): {message}")
    try:
        parsed = msgspec.json.decode(answer.body, type=_Answer)
        validate_public_key(parsed.zeromq.public_key)
        ca_key = base64.b64decode(parsed.ca_public_key, validate=True)
    except (msgspec.DecodeError, InvalidKey, binascii.Error, ValueError) as exc:
        raise RegistrationError(f"invalid registration answer from {url}: {exc}") from None
    ports_ok = all(0 < p < 65536 for p in (parsed.zeromq.pub_port, parsed.zeromq.sub_port))
    if parsed.id != agent_id or not ports_ok or len(ca_key) != 32:
        raise RegistrationError(f"invalid registration answer from {url}: wrong id, ports or key")
    return parsed


def _error_text(body: bytes) -> str:
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[:200].decode("utf-8", "replace").strip() or "no details"
    if isinstance(doc, dict) and isinstance(doc.get("error"), str):
        return str(doc["error"])
    return "no details"


class _ServerInfo(msgspec.Struct, rename="camel"):
    ca_certificate: str
    ca_public_key: str


def _check_manager_ca(settings: AgentSettings, anchors: AnchorSet, fetch: Fetcher) -> None:
    """Before the token is sent: the manager's CA (``GET /rpc/server_info``, public) must be
    one the anchors accept, so a wrong ``--trust-anchor`` (or an impostor) spends no token."""
    assert settings.manager_url is not None
    url = settings.manager_url.rstrip("/") + "/rpc/server_info"
    answer = fetch(url, 10.0)
    if answer.status in (429, 503) or answer.status >= 500:
        raise RegistrationError(f"manager error {answer.status} at {url}", retryable=True)
    if answer.status != 200:
        raise RegistrationError(f"cannot read the manager's CA at {url} (HTTP {answer.status})")
    try:
        info = msgspec.json.decode(answer.body, type=_ServerInfo)
        ca_key = base64.b64decode(info.ca_public_key, validate=True)
    except (msgspec.DecodeError, binascii.Error, ValueError) as exc:
        raise RegistrationError(f"invalid server info from {url}: {exc}") from None
    try:
        adopt_manager_ca(anchors, ca_key, info.ca_certificate)
    except VerificationError as exc:
        raise RegistrationError(
            f"refusing to register: the manager's CA does not match --trust-anchor"
            f" {settings.trust_anchor} ({exc.code}: {exc.message}); is this the right manager?"
            " The token was not sent."
        ) from None


def _accept(
    settings: AgentSettings, anchors: AnchorSet, state: AgentState, answer: _Answer
) -> None:
    ca_key = base64.b64decode(answer.ca_public_key)  # checked by _parse
    try:
        adopt_manager_ca(anchors, ca_key, answer.ca_certificate)
    except VerificationError as exc:
        raise RegistrationError(
            f"refusing to register: the manager's CA does not match --trust-anchor"
            f" {settings.trust_anchor} ({exc.code}: {exc.message}); is this the right manager?"
        ) from None
    assert settings.manager_url is not None
    data_dir: Path = settings.data_dir
    atomic_write(data_dir / CA_FILE, answer.ca_certificate.encode(), 0o600)
    if answer.certificate:
        atomic_write(data_dir / CERTIFICATE_FILE, answer.certificate.encode(), 0o600)
    state.registration = Registration(
        manager_url=settings.manager_url,
        server_public_key=answer.zeromq.public_key,
        pub_port=answer.zeromq.pub_port,
        sub_port=answer.zeromq.sub_port,
        registered_at_ms=time.time_ns() // 1_000_000,
        ca_public_key=answer.ca_public_key,
    )
    state.tags = list(settings.tags)
    state.name = settings.name
    if settings.location is not None:
        state.location = Location(*settings.location)
    save_state(settings.state_path, state)
    logger.info("registered as %s with %s", state.agent_id, settings.manager_url)


def _https(url: str | None) -> bool:
    return (url or "").startswith("https://")


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The TLS client context for registration: certificate and host name always checked;
    with ``ca_file`` (PEM) only its certificates are trusted -- the manager's CA, or its
    self-signed server certificate itself (partial chains allowed) -- never the system
    store. :class:`ConfigError` if the file cannot be loaded."""
    import ssl

    if ca_file is None:
        return ssl.create_default_context()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"--tls-ca {ca_file}: cannot load it: {exc}") from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def urllib_poster(tls_ca: Path | None = None) -> Poster:
    """:func:`urllib_post` with the TLS context of :func:`tls_context` (``https://`` only)."""
    context: list[ssl.SSLContext] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
        if _https(url) and not context:
            context.append(tls_context(tls_ca))
        return urllib_post(url, body, headers, timeout_s, context[0] if context else None)

    return post


def urllib_fetcher(tls_ca: Path | None = None) -> Fetcher:
    """GET with :mod:`urllib` and the TLS context of :func:`tls_context` (``https://`` only)."""

    def fetch(url: str, timeout_s: float) -> HttpAnswer:
        context = tls_context(tls_ca) if _https(url) else None
        return urllib_post(url, None, {}, timeout_s, context)

    return fetch


def proxy_post(
    proxy: str, url: str, body: bytes | None, headers: dict[str, str], timeout_s: float
) -> HttpAnswer:
    """POST ``body`` as JSON (GET when None) to an ``http://`` ``url`` through ``proxy``
    (``socks5h://`` or ``http://`` CONNECT, as the HTTP link does): the manager's name is
    resolved by the proxy, never here. Network failures raise a retryable
    :class:`RegistrationError`; HTTP error statuses are returned."""
    import asyncio
    from urllib.parse import urlsplit

    from swarmdeploy.transport.errors import TransportConfigError
    from swarmdeploy.transport.http_client import HttpClient, HttpFailure

    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    try:
        client = HttpClient(base, proxy=proxy, max_body_bytes=1 << 20, keep_alive=False)
    except TransportConfigError as exc:
        raise RegistrationError(str(exc)) from None
    method = "GET" if body is None else "POST"
    try:
        answer = asyncio.run(
            client.request(method, path, body, timeout_s, "application/json", headers)
        )
    except (HttpFailure, OSError) as exc:
        raise RegistrationError(
            f"cannot reach the manager at {url} through {proxy}: {exc}", retryable=True
        ) from None
    return HttpAnswer(answer.status, _retry_after(answer.headers.get("retry-after")), answer.body)


def proxy_poster(proxy: str) -> Poster:
    """:func:`proxy_post` as a :data:`Poster` (registration with ``--proxy``)."""

    def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> HttpAnswer:
        return proxy_post(proxy, url, body, headers, timeout_s)

    return post


def proxy_fetcher(proxy: str) -> Fetcher:
    """:func:`proxy_post` as a GET :data:`Fetcher`."""
    return lambda url, timeout_s: proxy_post(proxy, url, None, {}, timeout_s)


def urllib_post(
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    timeout_s: float,
    context: ssl.SSLContext | None = None,
) -> HttpAnswer:
    """POST ``body`` as JSON (GET when ``body`` is None) with :mod:`urllib`; network
    failures raise a retryable :class:`RegistrationError`, an untrusted server certificate a
    final one; HTTP error statuses are returned."""
    import urllib.error
    import urllib.request

    if not url.startswith(("http://", "https://")):
        raise RegistrationError(f"the manager URL {url!r} is not http(s)")
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked just above)
        url,
        data=body,
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json", "Accept": "application/json", **headers},
    )
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return HttpAnswer(response.status, None, response.read(1 << 20))
    except urllib.error.HTTPError as exc:
        with exc:
            retry = _retry_after(exc.headers.get("Retry-After"))
            return HttpAnswer(exc.code, retry, exc.read(1 << 20))
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if type(reason).__name__ == "SSLCertVerificationError":
            raise RegistrationError(
                f"TLS: the certificate of {url} is not trusted ({reason}); give the manager's"
                " certificate or CA with --tls-ca FILE"
            ) from None
        raise RegistrationError(
            f"cannot reach the manager at {url}: {reason}", retryable=True
        ) from None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None
