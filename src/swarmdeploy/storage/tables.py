"""Table definitions shared by the SQL backends (SQLAlchemy Core) and row -> record mapping.

The schema itself is created by the alembic migrations in ``migrations/versions``; these
definitions must match them (``tests/storage/test_migrations.py`` compares the two). Dialect
specific full-text structures (SQLite FTS5 tables, PostgreSQL ``tsvector`` columns) live only in
the migrations and are referenced by the backends by name.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from swarmdeploy.storage.records import (
    ApiKeyRecord,
    Location,
    LogRecord,
    RequestRecord,
    TargetRecord,
    TaskRecord,
    TaskTargetRecord,
    UploadRecord,
)

metadata = sa.MetaData()

#: 64-bit integer primary key that is SQLite's rowid (``INTEGER PRIMARY KEY``) there.
RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Millis = sa.BigInteger

targets = sa.Table(
    "targets",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("curve_key", sa.String(100), nullable=False, unique=True),
    sa.Column("identity_key", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("lat", sa.Float, nullable=True),
    sa.Column("lon", sa.Float, nullable=True),
    sa.Column("token_set", sa.String(200), nullable=True),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Column("last_seen_at", Millis, nullable=True),
    sa.Column("log_request_at", Millis, nullable=False),
    sa.Column("health", sa.JSON, nullable=True),
)

target_tags = sa.Table(
    "target_tags",
    metadata,
    sa.Column(
        "target_id",
        sa.String(200),
        sa.ForeignKey("targets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tag", sa.String(200), primary_key=True),
    sa.Index("ix_target_tags_tag", "tag"),
)

token_sets = sa.Table(
    "token_sets",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("expires_at", Millis, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("hash", sa.LargeBinary(64), primary_key=True),
    sa.Column(
        "set_name",
        sa.String(200),
        sa.ForeignKey("token_sets.name", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("expires_at", Millis, nullable=False),
    sa.Index("ix_tokens_set_name", "set_name"),
    sa.Index("ix_tokens_expires_at", "expires_at"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("debug", sa.Boolean, nullable=False),
    sa.Column("descriptor", sa.JSON, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("expires_at", Millis, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("build_host", sa.String(200), nullable=True),
    sa.Column("source_digest", sa.String(200), nullable=True),
    sa.Column("match_ids", sa.JSON, nullable=False),
    sa.Column("match_tags", sa.JSON, nullable=False),
    sa.Column("stopped_at", Millis, nullable=True),
    sa.Index("ix_tasks_created_at", "created_at", "id"),
    sa.Index("ix_tasks_expires_at", "expires_at"),
)

task_targets = sa.Table(
    "task_targets",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("target_id", sa.String(200), primary_key=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("state", sa.String(40), nullable=False),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Index("ix_task_targets_target_id", "target_id"),
    sa.Index("ix_task_targets_state", "state"),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", RowId, primary_key=True, autoincrement=True),
    sa.Column("time", Millis, nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("task", sa.String(200), nullable=False),
    sa.Column("stage", sa.Text, nullable=False),
    sa.Column("command", sa.Text, nullable=False),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("error", sa.Boolean, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=True),
    # NULL seq never conflicts (NULLs are distinct in unique indexes on both dialects).
    sa.Index("uq_logs_target_seq", "target", "seq", unique=True),
    sa.Index("ix_logs_time", "time", "id"),
    sa.Index("ix_logs_task_time", "task", "time"),
    sa.Index("ix_logs_target_time", "target", "time"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("key_hash", sa.LargeBinary(128), nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("last_used_at", Millis, nullable=True),
)

# -- revision 0002: state of the agent link (docs/adr/0005-manager-link-state.md) -------------

requests = sa.Table(
    "requests",
    metadata,
    sa.Column("seq", RowId, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(200), nullable=False),
    sa.Column(
        "target_id",
        sa.String(200),
        sa.ForeignKey("targets.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("expires_at", Millis, nullable=True),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("acked_at", Millis, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Index("uq_requests_target_id", "target_id", "id", unique=True),
    sa.Index("ix_requests_target_state", "target_id", "state", "seq"),
    sa.Index("ix_requests_expires_at", "expires_at"),
    sa.Index("ix_requests_acked_at", "acked_at"),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("chunk_bytes", sa.Integer, nullable=False),
    sa.Column("next_index", sa.Integer, nullable=False),
    sa.Column("complete", sa.Boolean, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
)

# -- revision 0003: build artifacts and build times (docs/build.md) ---------------------------

artifacts = sa.Table(
    "artifacts",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("build_host", sa.String(200), nullable=False),
    sa.Column("built_at", Millis, nullable=False),
    sa.Column("commands", sa.JSON, nullable=False),
    sa.Index("ix_artifacts_sha256", "sha256"),
    sa.Index("ix_artifacts_built_at", "built_at", "task_id", "sha256"),
)

builds = sa.Table(
    "builds",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("started_at", Millis, nullable=True),
    sa.Column("finished_at", Millis, nullable=True),
)


def target_values(target: TargetRecord) -> dict[str, Any]:
    """Column values of ``targets`` for a record (tags de-duplicated by the caller)."""
    loc = target.location
    return {
        "id": target.id,
        "curve_key": target.curve_key,
        "identity_key": target.identity_key,
        "name": target.name,
        "tags": list(target.tags),
        "lat": None if loc is None else loc.lat,
        "lon": None if loc is None else loc.lon,
        "token_set": target.token_set,
        "created_at": target.created_at,
        "updated_at": target.updated_at,
        "last_seen_at": target.last_seen_at,
        "log_request_at": target.log_request_at,
        "health": target.health,
    }


def target_from_row(row: sa.Row[Any]) -> TargetRecord:
    """Rebuild a :class:`TargetRecord` from a row that starts with the ``targets`` columns
    in table order (``select(targets)``, ``returning(targets)``): read by position, which
    costs a fraction of the by-name lookups on a page of 1,000."""
    (id_, curve_key, identity_key, name, tags, lat, lon, token_set,
     created_at, updated_at, last_seen_at, log_request_at, health, *_) = row  # fmt: skip
    return TargetRecord(
        id=id_,
        curve_key=curve_key,
        identity_key=identity_key,
        created_at=created_at,
        updated_at=updated_at,
        name=name,
        tags=tuple(tags),
        location=None if lat is None else Location(lat, lon),
        token_set=token_set,
        last_seen_at=last_seen_at,
        log_request_at=log_request_at,
        health=health,
    )


def task_values(task: TaskRecord) -> dict[str, Any]:
    """Column values of ``tasks`` for a record."""
    return {
        "id": task.id,
        "description": task.description,
        "debug": task.debug,
        "descriptor": task.descriptor,
        "created_at": task.created_at,
        "expires_at": task.expires_at,
        "created_by": task.created_by,
        "build_host": task.build_host,
        "source_digest": task.source_digest,
        "match_ids": list(task.match_ids),
        "match_tags": list(task.match_tags),
        "stopped_at": task.stopped_at,
    }


def task_from_row(row: sa.Row[Any]) -> TaskRecord:
    """Rebuild a :class:`TaskRecord` from a ``tasks`` row."""
    m = row._mapping
    return TaskRecord(
        id=m["id"],
        description=m["description"],
        debug=bool(m["debug"]),
        descriptor=m["descriptor"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        created_by=m["created_by"],
        build_host=m["build_host"],
        source_digest=m["source_digest"],
        match_ids=tuple(m["match_ids"]),
        match_tags=tuple(m["match_tags"]),
        stopped_at=m["stopped_at"],
    )


def task_target_from_row(row: sa.Row[Any]) -> TaskTargetRecord:
    """Rebuild a :class:`TaskTargetRecord` from a row that starts with the ``task_targets``
    columns in table order (read by position: a task has thousands of rows)."""
    task_id, target_id, role, state, updated_at, reason, attempt, *_ = row
    return TaskTargetRecord(task_id, target_id, state, updated_at, role, reason, attempt)


def log_values(log: LogRecord) -> dict[str, Any]:
    """Column values of ``logs`` for a record (the id is assigned by the database)."""
    return {
        "time": log.time,
        "target": log.target,
        "task": log.task,
        "stage": log.stage,
        "command": log.command,
        "output": log.output,
        "error": log.error,
        "seq": log.seq,
    }


def log_from_row(row: sa.Row[Any]) -> LogRecord:
    """Rebuild a :class:`LogRecord` from a ``logs`` row."""
    m = row._mapping
    return LogRecord(
        time=m["time"],
        target=m["target"],
        task=m["task"],
        stage=m["stage"],
        command=m["command"],
        output=m["output"],
        error=bool(m["error"]),
        seq=m["seq"],
        id=m["id"],
    )


def api_key_from_row(row: sa.Row[Any]) -> ApiKeyRecord:
    """Rebuild an :class:`ApiKeyRecord` from an ``api_keys`` row."""
    m = row._mapping
    return ApiKeyRecord(
        id=m["id"],
        name=m["name"],
        role=m["role"],
        key_hash=bytes(m["key_hash"]),
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
    )


def request_values(request: RequestRecord) -> dict[str, Any]:
    """Column values of ``requests`` for a record (``seq`` is assigned by the database)."""
    return {
        "id": request.id,
        "target_id": request.target_id,
        "kind": request.kind,
        "payload": request.payload,
        "created_at": request.created_at,
        "expires_at": request.expires_at,
        "state": request.state,
        "acked_at": request.acked_at,
        "message": request.message,
    }


def request_from_row(row: sa.Row[Any]) -> RequestRecord:
    """Rebuild a :class:`RequestRecord` from a ``requests`` row."""
    m = row._mapping
    return RequestRecord(
        id=m["id"],
        target_id=m["target_id"],
        kind=m["kind"],
        payload=m["payload"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        state=m["state"],
        acked_at=m["acked_at"],
        message=m["message"],
    )


def upload_values(upload: UploadRecord) -> dict[str, Any]:
    """Column values of ``uploads`` for a record."""
    return {
        "task_id": upload.task_id,
        "sha256": upload.sha256,
        "name": upload.name,
        "size_bytes": upload.size_bytes,
        "chunk_bytes": upload.chunk_bytes,
        "next_index": upload.next_index,
        "complete": upload.complete,
        "created_at": upload.created_at,
    }


def upload_from_row(row: sa.Row[Any]) -> UploadRecord:
    """Rebuild an :class:`UploadRecord` from an ``uploads`` row."""
    m = row._mapping
    return UploadRecord(
        task_id=m["task_id"],
        sha256=m["sha256"],
        name=m["name"],
        size_bytes=m["size_bytes"],
        chunk_bytes=m["chunk_bytes"],
        created_at=m["created_at"],
        next_index=m["next_index"],
        complete=bool(m["complete"]),
    )


# -- revision 0004: operator signing keys (docs/adr/0004-operator-keys-and-manifest-signatures.md)

operator_keys = sa.Table(
    "operator_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("public_key", sa.LargeBinary(32), nullable=False),
    sa.Column("certificate", sa.LargeBinary, nullable=False),
    sa.Column("sealed_seed", sa.LargeBinary, nullable=False),
    sa.Column("serial", sa.BigInteger, nullable=False, unique=True),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("revoked_at", Millis, nullable=True),
    sa.Index("ix_operator_keys_owner", "owner"),
)


# -- revision 0005: signed task manifests (ADR 0004). No foreign key to ``tasks``: a deleted
# task's signature stays so that the sequence numbers never go back.

task_signatures = sa.Table(
    "task_signatures",
    metadata,
    sa.Column("task_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("manifest", sa.LargeBinary, nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
    sa.Column("certificate", sa.LargeBinary, nullable=False),
    sa.Column("sequence", sa.BigInteger, nullable=False, unique=True),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("signed_at", Millis, nullable=False),
)


# -- revision 0006: health history of targets (the GUI's charts) ---------------------------------

health_samples = sa.Table(
    "health_samples",
    metadata,
    sa.Column(
        "target_id",
        sa.String(200),
        sa.ForeignKey("targets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("at_ms", Millis, primary_key=True),
    sa.Column("cpu_percent", sa.Float, nullable=False),
    sa.Column("load_1m", sa.Float, nullable=False),
    sa.Column("mem_total_bytes", sa.BigInteger, nullable=False),
    sa.Column("mem_available_bytes", sa.BigInteger, nullable=False),
    sa.Column("disk_total_bytes", sa.BigInteger, nullable=False),
    sa.Column("disk_free_bytes", sa.BigInteger, nullable=False),
    sa.Column("agent_rss_bytes", sa.BigInteger, nullable=False),
    sa.Index("ix_health_samples_at_ms", "at_ms"),
)


# -- revision 0007: indoor maps -------------------------------------------------------------------

floorplans = sa.Table(
    "floorplans",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("media_type", sa.String(40), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Column("image", sa.LargeBinary, nullable=False),
)

indoor_positions = sa.Table(
    "indoor_positions",
    metadata,
    sa.Column(
        "target_id",
        sa.String(200),
        sa.ForeignKey("targets.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "plan_id",
        sa.String(64),
        sa.ForeignKey("floorplans.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("x", sa.Float, nullable=False),
    sa.Column("y", sa.Float, nullable=False),
    sa.Index("ix_indoor_positions_plan_id", "plan_id"),
)


# -- revision 0008: the audit log (issue 9, item 10). Append-only and hash-chained
# (``protocol.audit``); no foreign keys: entries outlive what they name.

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("at", Millis, nullable=False),
    sa.Column("actor", sa.String(300), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)


# -- revision 0009: apps and standing releases (issue 14) -----------------------------------------

task_apps = sa.Table(
    "task_apps",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("app", sa.String(64), nullable=False),
    sa.Column("version", sa.String(128), nullable=False, server_default=""),
    sa.Column("selector", sa.Text, nullable=False, server_default=""),
    sa.Column("standing", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("remove", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_task_apps_app", "app", "created_at"),
    sa.Index("ix_task_apps_standing", "standing", "created_at"),
)


# -- revision 0011: staged rollouts (issue 15) ----------------------------------------------------

task_rollouts = sa.Table(
    "task_rollouts",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("groups", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("current_group", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False, server_default=""),
    sa.Column("soak_until", Millis, nullable=True),
    sa.Column("updated_at", Millis, nullable=False),
    sa.Index("ix_task_rollouts_state", "state"),
)


# -- revision 0012: rollback tasks of releases (issue 15) -----------------------------------------

task_rollbacks = sa.Table(
    "task_rollbacks",
    metadata,
    sa.Column(
        "task_id",
        sa.String(200),
        sa.ForeignKey("tasks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("rollback_of", sa.String(200), nullable=False),
    sa.Column("created_at", Millis, nullable=False),
    sa.Index("ix_task_rollbacks_of", "rollback_of"),
)
