"""The shared SQL implementation of :class:`Storage` (SQLAlchemy Core, async).

``SqlStorage`` assembles the query code written once for both dialects; ``sqlite.py`` and
``postgres.py`` only add the engine set-up and the full-text and upsert constructs.
"""

from __future__ import annotations

from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.sql_logs import SqlLogs
from swarmdeploy.storage.sql_targets import SqlTargets
from swarmdeploy.storage.sql_tasks import SqlTasks


class SqlStorage(SqlTargets, SqlTasks, SqlLogs, Storage):
    """A :class:`Storage` over an SQLAlchemy async engine; subclasses pick the dialect."""
