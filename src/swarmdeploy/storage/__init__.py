"""Persistence for the manager: the :class:`Storage` interface and its backends.

``open_storage(url)`` picks the backend from the URL: ``sqlite+aiosqlite:///path`` (or a plain
file path ending in ``.db``) for the embedded default, ``postgresql://...`` for PostgreSQL,
``memory://`` for tests (SQLite on a scratch file deleted on close). See ``docs/storage.md``.
"""

from swarmdeploy.storage.base import UNCHANGED, Storage
from swarmdeploy.storage.errors import (
    Conflict,
    KeyRejected,
    NotFound,
    StorageError,
    StorageUnavailable,
    TokenRejected,
)
from swarmdeploy.storage.factory import open_storage
from swarmdeploy.storage.records import (
    MAX_PER_PAGE,
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
    "MAX_PER_PAGE",
    "UNCHANGED",
    "ApiKeyRecord",
    "Conflict",
    "KeyRejected",
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
    "open_storage",
]
