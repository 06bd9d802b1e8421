"""Signed task manifests (docs/adr/0004-operator-keys-and-manifest-signatures.md).

* ``task_signatures``: per task and kind (``build``/``deploy``) the exact canonical manifest
  bytes, the operator's signature, the operator certificate, the unique and growing
  ``sequence`` and the signing key id. No foreign key to ``tasks``: rows outlive their task
  so that sequence numbers never go back.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``task_signatures``."""
    op.create_table(
        "task_signatures",
        sa.Column("task_id", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("manifest", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("certificate", sa.LargeBinary, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False, unique=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("signed_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_table("task_signatures")
