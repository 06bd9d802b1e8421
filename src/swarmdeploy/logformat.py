"""Log formats of the entry points: readable text (default) or one JSON object per line.

Shared by the manager and the agent, so it uses the standard library only (the agent stays
lean, docs/adr/0006). ``--log-format json`` writes, per record::

    {"time": "2026-12-05T17:25:28.123Z", "level": "INFO", "logger": "swarmdeploy.agent",
     "message": "task k1: installing -> installed", "target": "pi-7", "task": "k1"}

``target`` and ``task`` are present when the call passed them as ``extra`` (the lifecycle
lines of the task state machines do); ``exc`` holds a traceback. Libraries only log; the entry
points call :func:`configure` (docs/STYLE habit 8).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Record attributes copied into a JSON line when a call set them (``extra=``).
CONTEXT_FIELDS = ("target", "task")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in the message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        import json  # here: the agent with text logs never loads it (docs/adr/0006)

        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        doc: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in CONTEXT_FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                doc[field] = str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def check_format(name: str) -> str:
    """``name`` lower-cased if it is a known format; ``ValueError`` naming the choices else."""
    value = name.strip().lower()
    if value not in LOG_FORMATS:
        raise ValueError(f"unknown log format {name!r}: expected text or json")
    return value


def configure(
    level: str, log_format: str = "text", stream: TextIO | None = None, *, force: bool = False
) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) in
    ``log_format``, like :func:`logging.basicConfig`: a no-op when the root logger has
    handlers already (a host such as a test runner configured it) unless ``force``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if check_format(log_format) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=force
    )
