"""Rollback tasks of releases (issue 15, docs/rollouts.md).

* ``task_rollbacks``: per task created by ``POST /tasks/{id}/rollback`` the task it rolls
  back (``rollback_of``, not a foreign key: the link stays readable from the rollback task
  when the rolled-back task is deleted). Goes with the rollback task.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``task_rollbacks``."""
    op.create_table(
        "task_rollbacks",
        sa.Column(
            "task_id",
            sa.String(200),
            sa.ForeignKey("tasks.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rollback_of", sa.String(200), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_task_rollbacks_of", "task_rollbacks", ["rollback_of"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_task_rollbacks_of", table_name="task_rollbacks")
    op.drop_table("task_rollbacks")
