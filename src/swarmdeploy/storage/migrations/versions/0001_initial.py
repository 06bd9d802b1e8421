"""Initial schema: targets, tags, tokens, tasks, per-target task states, logs, API keys.

Full-text search is dialect specific: SQLite gets FTS5 tables kept in sync by triggers,
PostgreSQL gets generated ``tsvector`` columns with GIN indexes. Both index the same words:
runs of letters and digits of the first 100,000 characters, lower-cased (``storage.common``).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_FTS = [
    # Contentless: FTS5 only maps words to log ids; the text stays in ``logs``.
    """CREATE VIRTUAL TABLE logs_fts USING fts5(
        output, content='', tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN
        INSERT INTO logs_fts(rowid, output) VALUES (new.id, substr(new.output, 1, 100000));
    END""",
    """CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN
        INSERT INTO logs_fts(logs_fts, rowid, output)
        VALUES ('delete', old.id, substr(old.output, 1, 100000));
    END""",
    """CREATE VIRTUAL TABLE tasks_fts USING fts5(
        task_id UNINDEXED, description, tokenize='unicode61 remove_diacritics 0')""",
    """CREATE TRIGGER tasks_fts_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO tasks_fts(task_id, description)
        VALUES (new.id, substr(new.description, 1, 100000));
    END""",
    """CREATE TRIGGER tasks_fts_delete AFTER DELETE ON tasks BEGIN
        DELETE FROM tasks_fts WHERE task_id = old.id;
    END""",
    """CREATE TRIGGER tasks_fts_update AFTER UPDATE OF description ON tasks BEGIN
        UPDATE tasks_fts SET description = substr(new.description, 1, 100000)
        WHERE task_id = new.id;
    END""",
]


def _pg_words(column: str) -> str:
    return (
        "to_tsvector('simple'::regconfig, "
        f"regexp_replace(left({column}, 100000), '[^[:alnum:]]+', ' ', 'g'))"
    )


_POSTGRES_FTS = [
    "ALTER TABLE logs ADD COLUMN output_tsv tsvector "
    f"GENERATED ALWAYS AS ({_pg_words('output')}) STORED",
    "CREATE INDEX ix_logs_output_tsv ON logs USING gin (output_tsv)",
    "ALTER TABLE tasks ADD COLUMN description_tsv tsvector "
    f"GENERATED ALWAYS AS ({_pg_words('description')}) STORED",
    "CREATE INDEX ix_tasks_description_tsv ON tasks USING gin (description_tsv)",
]


def _create_targets() -> None:
    op.create_table(
        "targets",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("curve_key", sa.String(100), nullable=False, unique=True),
        sa.Column("identity_key", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("lat", sa.Float, nullable=True),
        sa.Column("lon", sa.Float, nullable=True),
        sa.Column("token_set", sa.String(200), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("last_seen_at", sa.BigInteger, nullable=True),
        sa.Column("log_request_at", sa.BigInteger, nullable=False),
        sa.Column("health", sa.JSON, nullable=True),
    )
    op.create_table(
        "target_tags",
        sa.Column(
            "target_id",
            sa.String(200),
            sa.ForeignKey("targets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tag", sa.String(200), primary_key=True),
    )
    op.create_index("ix_target_tags_tag", "target_tags", ["tag"])


def _create_tokens() -> None:
    op.create_table(
        "token_sets",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "tokens",
        sa.Column("hash", sa.LargeBinary(64), primary_key=True),
        sa.Column(
            "set_name",
            sa.String(200),
            sa.ForeignKey("token_sets.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_tokens_set_name", "tokens", ["set_name"])
    op.create_index("ix_tokens_expires_at", "tokens", ["expires_at"])


def _create_tasks() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("debug", sa.Boolean, nullable=False),
        sa.Column("descriptor", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("build_host", sa.String(200), nullable=True),
        sa.Column("source_digest", sa.String(200), nullable=True),
        sa.Column("match_ids", sa.JSON, nullable=False),
        sa.Column("match_tags", sa.JSON, nullable=False),
        sa.Column("stopped_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_tasks_created_at", "tasks", ["created_at", "id"])
    op.create_index("ix_tasks_expires_at", "tasks", ["expires_at"])
    op.create_table(
        "task_targets",
        sa.Column(
            "task_id",
            sa.String(200),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("target_id", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("state", sa.String(40), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_task_targets_target_id", "task_targets", ["target_id"])
    op.create_index("ix_task_targets_state", "task_targets", ["state"])


def _create_logs_and_keys() -> None:
    op.create_table(
        "logs",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("time", sa.BigInteger, nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("stage", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("error", sa.Boolean, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=True),
    )
    op.create_index("uq_logs_target_seq", "logs", ["target", "seq"], unique=True)
    op.create_index("ix_logs_time", "logs", ["time", "id"])
    op.create_index("ix_logs_task_time", "logs", ["task", "time"])
    op.create_index("ix_logs_target_time", "logs", ["target", "time"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("key_hash", sa.LargeBinary(128), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("last_used_at", sa.BigInteger, nullable=True),
    )


def upgrade() -> None:
    """Create every table, index and the dialect's full-text structures."""
    _create_targets()
    _create_tokens()
    _create_tasks()
    _create_logs_and_keys()
    dialect = op.get_bind().dialect.name
    for statement in _SQLITE_FTS if dialect == "sqlite" else _POSTGRES_FTS:
        op.execute(statement)


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS tasks_fts")
        op.execute("DROP TABLE IF EXISTS logs_fts")
    for table in ("api_keys", "logs", "task_targets", "tasks", "tokens", "token_sets"):
        op.drop_table(table)
    op.drop_table("target_tags")
    op.drop_table("targets")
