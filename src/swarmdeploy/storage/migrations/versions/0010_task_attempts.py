"""Task retries (issue 13): ``task_targets.attempt`` counts how often an operator retried a
(task, target) pair; the agent tells a retry from a repeated announcement by it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``task_targets.attempt`` (0 for every existing row)."""
    with op.batch_alter_table("task_targets") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop ``task_targets.attempt``."""
    with op.batch_alter_table("task_targets") as batch:
        batch.drop_column("attempt")
