"""The schema's version, and the packaged alembic migrations that bring a database to it.

Alembic (with mako and pygments, which it loads) costs a process about 10 MB, and a running
manager needs it only to change the schema. So:

* :func:`current_revision` reads a database's version with plain SQL, and a database already
  at :data:`HEAD_REVISION` is opened without loading alembic at all;
* :func:`upgrade` loads alembic only when it runs;
* the manager (``swarmdeploy manager``) runs a needed upgrade in a child process
  (:func:`upgrade_in_child`: ``python -m swarmdeploy.storage.migrate``, which reads the
  database URL and key from its standard input), so it never carries alembic while it
  serves (``docs/storage.md``, "Migrations").
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from swarmdeploy.storage.errors import SchemaError

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: The newest revision under ``migrations/versions`` (a test checks it against alembic's).
HEAD_REVISION = "0012"


def current_revision(connection: Connection) -> str | None:
    """The revision the database on ``connection`` is at (``None``: never migrated)."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    return str(rows[0][0]) if len(rows) == 1 else None


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic :class:`Config` pointing at the packaged scripts (and ``connection``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection) -> None:
    """Bring the schema on ``connection`` to the newest revision (inside its transaction)."""
    from alembic import command

    log.debug("running database migrations on %s", connection.dialect.name)
    command.upgrade(alembic_config(connection), "head")


async def upgrade_in_child(url: str, sqlite_key: bytes | None) -> None:
    """Run the migrations of the database at ``url`` in a child process; raise
    :class:`SchemaError` with the child's last line of error output if they fail."""
    request = json.dumps({"url": url, "key": None if sqlite_key is None else sqlite_key.hex()})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarmdeploy.storage.migrate",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate(request.encode())
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        raise SchemaError(f"the database migration failed: {why}")
    log.info("database migrated to revision %s", HEAD_REVISION)


async def _migrate(url: str, sqlite_key: bytes | None) -> None:
    from swarmdeploy.storage.factory import open_storage

    storage = open_storage(url, sqlite_key=sqlite_key)  # migrates here, in this process
    await storage.open()
    await storage.close()


def main() -> int:
    """``python -m swarmdeploy.storage.migrate``: migrate the database named on stdin
    (``{"url": ..., "key": hex or null}``); one line on stderr and status 1 on failure."""
    try:
        request = json.loads(sys.stdin.read())
        key = request["key"]
        asyncio.run(_migrate(str(request["url"]), None if key is None else bytes.fromhex(key)))
    except Exception as exc:  # the parent shows this line
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
