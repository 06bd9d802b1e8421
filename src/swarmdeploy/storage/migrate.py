"""Run the packaged alembic migrations on an open connection (no ini file needed)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic :class:`Config` pointing at the packaged scripts (and ``connection``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema on ``connection`` to the newest revision (inside its transaction)."""
    log.debug("running database migrations on %s", connection.dialect.name)
    command.upgrade(alembic_config(connection), "head")
