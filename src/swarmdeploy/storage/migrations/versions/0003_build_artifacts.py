"""Build artifacts with their provenance, and build start/finish times (docs/build.md).

* ``artifacts``: one row per verified artifact of a build, keyed by ``(task_id, sha256)``
  (two builds producing the same bytes share the blob and keep one row each, so the
  provenance of both stays); looked up by ``sha256`` for ``GET /artifacts/{sha256}``;
  deleted with its task.
* ``builds``: when the build of a task started and finished (the per-target row keeps only
  its latest change); deleted with its task.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``artifacts`` and ``builds`` with their indexes."""
    op.create_table(
        "artifacts",
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
        sa.Column("built_at", sa.BigInteger, nullable=False),
        sa.Column("commands", sa.JSON, nullable=False),
    )
    op.create_index("ix_artifacts_sha256", "artifacts", ["sha256"])
    op.create_index("ix_artifacts_built_at", "artifacts", ["built_at", "task_id", "sha256"])
    op.create_table(
        "builds",
        sa.Column(
            "task_id",
            sa.String(200),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
    )


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_table("builds")
    op.drop_table("artifacts")
