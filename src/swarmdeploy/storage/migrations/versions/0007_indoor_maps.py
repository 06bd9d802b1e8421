"""Indoor maps (seed 003 §4.4: floor plans of buildings, devices placed on them).

* ``floorplans``: an image (PNG or JPEG, stored in the row) with its size in pixels;
* ``indoor_positions``: at most one per target: the plan and the pixel position on it;
  deleted with the target or the plan.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``floorplans`` and ``indoor_positions``."""
    op.create_table(
        "floorplans",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("media_type", sa.String(40), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "indoor_positions",
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
    )
    op.create_index("ix_indoor_positions_plan_id", "indoor_positions", ["plan_id"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_indoor_positions_plan_id", table_name="indoor_positions")
    op.drop_table("indoor_positions")
    op.drop_table("floorplans")
