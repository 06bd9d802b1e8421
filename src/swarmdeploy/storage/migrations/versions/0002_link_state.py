"""State of the agent link in storage: requests to agents and build-artifact uploads.

Until this revision the manager kept unacknowledged requests (stop, log request, terminal,
config) in process memory and upload progress in JSON files next to the partial data; a
manager restart lost the former, and a second replica could see neither
(``docs/adr/0005-manager-link-state.md``).

* ``requests``: one row per request, unique per ``(target_id, id)``, ordered by ``seq``;
  deleted with its target.
* ``uploads``: progress of one artifact per ``(task_id, sha256)``; deleted with its task.

The highest stored log ``seq`` of a target (``Storage.max_log_seq``) needs no new index: the
unique index ``uq_logs_target_seq`` on ``(target, seq)`` from 0001 answers it.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``requests`` and ``uploads`` with their indexes."""
    op.create_table(
        "requests",
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
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("acked_at", sa.BigInteger, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("uq_requests_target_id", "requests", ["target_id", "id"], unique=True)
    op.create_index("ix_requests_target_state", "requests", ["target_id", "state", "seq"])
    op.create_index("ix_requests_expires_at", "requests", ["expires_at"])
    op.create_index("ix_requests_acked_at", "requests", ["acked_at"])
    op.create_table(
        "uploads",
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
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_table("uploads")
    op.drop_table("requests")
