"""Operator signing keys (docs/adr/0004-operator-keys-and-manifest-signatures.md).

* ``operator_keys``: one row per operator signing key: its CA-signed certificate (unique
  ``serial``), public key, the seed sealed with a key from the manager's secret store, the
  owner (API key id) it signs for, and when it was revoked.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``operator_keys`` with its owner index."""
    op.create_table(
        "operator_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary(32), nullable=False),
        sa.Column("certificate", sa.LargeBinary, nullable=False),
        sa.Column("sealed_seed", sa.LargeBinary, nullable=False),
        sa.Column("serial", sa.BigInteger, nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_operator_keys_owner", "operator_keys", ["owner"])


def downgrade() -> None:
    """Drop what ``upgrade`` created."""
    op.drop_table("operator_keys")
