"""The :class:`Storage` interface every backend implements.

Contract (checked by ``tests/storage/test_contract.py`` against every backend):

* Every method is a coroutine; every returned record is a fresh immutable value.
* Lists are ``Page`` objects; ``page`` starts at 1; ``per_page`` is at most
  ``records.MAX_PER_PAGE``.
* Unique-key violations raise :class:`Conflict`, missing records :class:`NotFound` where a
  method says so (getters return ``None`` instead), driver errors are translated into
  :class:`StorageUnavailable`.
* Registration consumes a token and creates the target in **one** transaction: of two
  concurrent registrations with one token exactly one succeeds.
* State that a manager replica needs from another one lives here, not in process memory:
  requests to agents until answered, upload progress, the highest stored log ``seq``
  (``docs/adr/0005-manager-link-state.md``).
"""

from __future__ import annotations

import abc

from swarmdeploy.storage.base_apps import AppStore
from swarmdeploy.storage.base_artifacts import ArtifactStore
from swarmdeploy.storage.base_audit import AuditStore
from swarmdeploy.storage.base_health import HealthStore
from swarmdeploy.storage.base_indoor import IndoorStore
from swarmdeploy.storage.base_link import (
    RequestStore,
    UploadStore,
    WriteBatchStore,
)
from swarmdeploy.storage.base_logs import LogStore
from swarmdeploy.storage.base_rollouts import RolloutStore
from swarmdeploy.storage.base_signing import OperatorKeyStore, TaskSignatureStore
from swarmdeploy.storage.base_targets import (
    UNCHANGED,
    ApiKeyStore,
    TargetStore,
    TokenStore,
)
from swarmdeploy.storage.base_tasks import TaskStore

__all__ = ["UNCHANGED", "Storage"]


class Storage(
    TargetStore,
    TokenStore,
    ApiKeyStore,
    TaskStore,
    AppStore,
    RolloutStore,
    RequestStore,
    UploadStore,
    WriteBatchStore,
    LogStore,
    ArtifactStore,
    OperatorKeyStore,
    TaskSignatureStore,
    AuditStore,
    HealthStore,
    IndoorStore,
    abc.ABC,
):
    """Persistence of targets, tasks, per-target task states, logs, tokens and API keys.

    The interface is split by area (``base_*.py``, as the SQL code is in ``sql_*.py``);
    this class composes the areas and adds the lifecycle of the backend."""

    # -- lifecycle -----------------------------------------------------------------------------
    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (alembic migrations)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    # -- health of the backend -----------------------------------------------------------------
    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` if the database does not answer."""
