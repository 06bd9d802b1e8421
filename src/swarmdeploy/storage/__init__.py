"""Persistence for the manager: the :class:`Storage` interface and its backends.

``open_storage(url)`` picks the backend from the URL: ``sqlite+aiosqlite:///path`` (or a plain
file path) for the embedded default, ``postgresql://...`` for PostgreSQL.
"""

from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import (
    Conflict,
    NotFound,
    StorageError,
    StorageUnavailable,
    TokenRejected,
)
from swarmdeploy.storage.records import (
    ApiKeyRecord,
    Location,
    LogQuery,
    LogRecord,
    Page,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
    TokenSetRecord,
)

__all__ = [
    "ApiKeyRecord",
    "Conflict",
    "Location",
    "LogQuery",
    "LogRecord",
    "NotFound",
    "Page",
    "Storage",
    "StorageError",
    "StorageUnavailable",
    "TargetRecord",
    "TaskRecord",
    "TaskTargetRecord",
    "TokenRejected",
    "TokenSetRecord",
]
