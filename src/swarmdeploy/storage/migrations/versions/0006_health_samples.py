"""Health history of targets (the GUI's charts).

* ``health_samples``: per target and time (ms) the figures of an agent ``health`` report
  (CPU, load, memory, disk, agent RSS); deleted with the target; kept for the manager's
  ``--health-history`` (a background job removes older ones).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``health_samples``."""
    op.create_table(
        "health_samples",
        sa.Column(
            "target_id",
            sa.String(200),
            sa.ForeignKey("targets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("at_ms", sa.BigInteger, primary_key=True),
        sa.Column("cpu_percent", sa.Float, nullable=False),
        sa.Column("load_1m", sa.Float, nullable=False),
        sa.Column("mem_total_bytes", sa.BigInteger, nullable=False),
        sa.Column("mem_available_bytes", sa.BigInteger, nullable=False),
        sa.Column("disk_total_bytes", sa.BigInteger, nullable=False),
        sa.Column("disk_free_bytes", sa.BigInteger, nullable=False),
        sa.Column("agent_rss_bytes", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_health_samples_at_ms", "health_samples", ["at_ms"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_index("ix_health_samples_at_ms", table_name="health_samples")
    op.drop_table("health_samples")
