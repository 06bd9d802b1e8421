"""Credentials never reach the manager's log (issue 9, item 4).

Browsers cannot set headers on a WebSocket, so ``/events`` also takes the API key as
``?access_token=KEY`` -- and uvicorn writes every request line, query included, at INFO
(``uvicorn.access`` for HTTP, ``uvicorn.error`` for ``"WebSocket /events?..." [accepted]``).
:class:`CredentialRedactor` rewrites the values of credential-like query parameters in those
records before any handler sees them. :func:`install` is called by the entry point
(``manager.main``), which configures logging; the library itself never does.
"""

from __future__ import annotations

import logging
import re

#: Query parameters whose values are credentials (matched case-insensitively).
CREDENTIAL_PARAMS: tuple[str, ...] = ("access_token", "token", "api_key", "key", "passphrase")

_PARAM = re.compile(
    r"(?i)([?&;](?:" + "|".join(re.escape(p) for p in CREDENTIAL_PARAMS) + r")=)[^&;#\s\"']*"
)
REDACTED = "[redacted]"

#: The loggers uvicorn writes request lines to.
UVICORN_LOGGERS: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")


def redact(text: str) -> str:
    """``text`` with the values of credential query parameters replaced by ``[redacted]``."""
    return _PARAM.sub(lambda match: match.group(1) + REDACTED, text)


class CredentialRedactor(logging.Filter):
    """Redacts credential query parameters in a record's message and string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install() -> CredentialRedactor:
    """Attach one redactor to each of uvicorn's request loggers (idempotent)."""
    redactor = CredentialRedactor()
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, CredentialRedactor) for f in logger.filters):
            logger.addFilter(redactor)
    return redactor
