"""Staged rollouts (issue 15, docs/rollouts.md).

* ``task_rollouts``: per deploy task with a ``rollout`` section the members of each group
  (JSON, fixed at creation), the rollout's state, the group being announced, the reason of a
  halt and the end of the current group's soak. Goes with its task.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``task_rollouts``."""
    op.create_table(
        "task_rollouts",
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
        sa.Column("soak_until", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_task_rollouts_state", "task_rollouts", ["state"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_task_rollouts_state", table_name="task_rollouts")
    op.drop_table("task_rollouts")
