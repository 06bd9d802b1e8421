"""The shared SQL implementation of :class:`Storage` (SQLAlchemy Core, async).

``SqlStorage`` assembles the query code written once for both dialects (``sql_targets``,
``sql_tasks``, ``sql_logs``, ``sql_link``, ``sql_artifacts``, ``sql_operator_keys``,
``sql_task_signatures``, ``sql_apps``, ``sql_rollouts``, ``sql_health``, ``sql_indoor``,
``sql_audit``);
``sqlite.py`` and ``postgres.py`` only add the engine set-up and the full-text and upsert
constructs.
"""

from __future__ import annotations

from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.sql_apps import SqlApps
from swarmdeploy.storage.sql_artifacts import SqlArtifacts
from swarmdeploy.storage.sql_audit import SqlAudit
from swarmdeploy.storage.sql_health import SqlHealth
from swarmdeploy.storage.sql_indoor import SqlIndoor
from swarmdeploy.storage.sql_link import SqlRequests, SqlUploads, SqlWriteBatch
from swarmdeploy.storage.sql_logs import SqlLogs
from swarmdeploy.storage.sql_operator_keys import SqlOperatorKeys
from swarmdeploy.storage.sql_rollouts import SqlRollouts
from swarmdeploy.storage.sql_targets import SqlTargets
from swarmdeploy.storage.sql_task_signatures import SqlTaskSignatures
from swarmdeploy.storage.sql_tasks import SqlTasks


class SqlStorage(
    SqlTargets,
    SqlApps,
    SqlRollouts,
    SqlTasks,
    SqlLogs,
    SqlRequests,
    SqlUploads,
    SqlWriteBatch,
    SqlArtifacts,
    SqlOperatorKeys,
    SqlTaskSignatures,
    SqlHealth,
    SqlIndoor,
    SqlAudit,
    Storage,
):
    """A :class:`Storage` over an SQLAlchemy async engine; subclasses pick the dialect."""
