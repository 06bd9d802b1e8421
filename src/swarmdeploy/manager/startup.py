"""Start-up failures as one line and exit status 2 (issue 13).

The manager's start-up has three places that can fail, each with its own way to report:

1. before uvicorn: the data dir, the HTTP listening socket (:func:`listen`: bound here and
   handed to uvicorn, so a busy port is one clear error) and the TLS files (:func:`check_tls`,
   loaded into an SSL context as uvicorn would);
2. in the app's lifespan (the database, the agent-facing ZeroMQ ports): the lifespan notes the
   exception (:class:`StartupFailure`), uvicorn gives up starting, and the traceback it would
   log is left out (:class:`StartupFailure` is also the log filter on ``uvicorn.error``).

:func:`describe` turns any of these exceptions into one line without a traceback.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

#: Messages of ``uvicorn.error`` that only repeat a failure :class:`StartupFailure` holds.
_REPEATS = ("Traceback", "Exception in 'lifespan' protocol", "Application startup failed")


class StartError(Exception):
    """The manager cannot start; ``str()`` is the one line to show."""


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its message's first line (SQLAlchemy and asyncpg add lines and
    links), with the OS error text where there is one."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    cause = getattr(exc, "orig", None) or exc.__cause__
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0]
    if isinstance(cause, BaseException) and first.startswith("("):
        return describe(cause)  # SQLAlchemy's "(module.Error) text": the DB-API error itself
    return first


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` for uvicorn (``Server.run(sockets=...)``); a
    :class:`StartError` naming the address when it cannot be bound (busy, not local)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], info[1], info[2])
    except OSError as exc:
        raise StartError(f"cannot listen on {host}:{port} (HTTP): {describe(exc)}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot listen on {host}:{port} (HTTP): {describe(exc)}") from None
    sock.set_inheritable(True)
    return sock


def check_tls(cert: Path | None, key: Path | None) -> None:
    """Load the certificate and key as uvicorn will; :class:`StartError` naming the files
    when they are not a PEM certificate and its matching private key."""
    if cert is None or key is None:
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise StartError(
            f"cannot use --tls-cert {cert} / --tls-key {key}: {_tls_reason(exc)}"
        ) from None


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        code = f" ({exc.reason})" if exc.reason else ""
        return f"not a PEM certificate (chain) and its matching private key{code}"
    return describe(exc)


class StartupFailure(logging.Filter):
    """Holds the exception the lifespan failed with, and filters the traceback that uvicorn
    logs for it (and its "startup failed" line) out of ``uvicorn.error``."""

    def __init__(self, noted: Callable[[], BaseException | None]) -> None:
        super().__init__()
        self._noted = noted

    @property
    def error(self) -> BaseException | None:
        """The exception the lifespan noted, if any."""
        return self._noted()

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop what repeats a noted start-up failure; keep everything else."""
        if self.error is None:
            return True
        return not (record.exc_info or record.getMessage().startswith(_REPEATS))
