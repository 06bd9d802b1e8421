"""Apps and standing releases (issue 14, docs/adr/0010-standing-releases.md).

* ``task_apps``: per deploy task the app it delivers a release of, its version label, its
  selector (text form, ``docs/selectors.md``) and whether it is standing (devices that match
  later get it) and removes itself from devices that stop matching. Goes with its task.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``task_apps``."""
    op.create_table(
        "task_apps",
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
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_task_apps_app", "task_apps", ["app", "created_at"])
    op.create_index("ix_task_apps_standing", "task_apps", ["standing", "created_at"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_task_apps_standing", table_name="task_apps")
    op.drop_index("ix_task_apps_app", table_name="task_apps")
    op.drop_table("task_apps")
