"""Alembic environment: migrations run on the connection handed over by ``Storage.open()``.

``swarmdeploy.storage.migrate.upgrade`` puts an open SQLAlchemy connection (inside a
transaction) into ``config.attributes["connection"]``; no URL or ini file is read here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if not isinstance(_connection, Connection):
    raise RuntimeError("swarmdeploy migrations run through Storage.open(), not the alembic CLI")
_run(_connection)
