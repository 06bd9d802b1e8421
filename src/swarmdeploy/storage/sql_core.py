"""The core every SQL backend shares: engine lifecycle, transactions, error translation.

Dialect differences are the small set of hooks at the bottom of :class:`SqlCore`; the query
code in ``sql_targets``, ``sql_tasks`` and ``sql_logs`` is written once against them.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from swarmdeploy.storage import migrate
from swarmdeploy.storage.common import check_page
from swarmdeploy.storage.errors import Conflict, StorageError, StorageUnavailable
from swarmdeploy.storage.lifecycle import StorageState, require_open
from swarmdeploy.storage.records import Page

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNAVAILABLE = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    OSError,
    TimeoutError,
)

#: Exceptions that come from the database layer (everything else propagates unchanged).
_FOREIGN = (sa_exc.SQLAlchemyError, OSError, TimeoutError)


#: Driver codes of unique-key violations: PostgreSQL SQLSTATE and SQLite extended error names.
_UNIQUE_VIOLATIONS = frozenset(
    {"23505", "SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}
)


def _is_unique_violation(exc: sa_exc.IntegrityError) -> bool:
    orig = exc.orig
    code = getattr(orig, "pgcode", None) or getattr(orig, "sqlite_errorname", None)
    if code == "SQLITE_CONSTRAINT":
        # SQLCipher's driver reports the primary result code only; the message tells.
        return str(orig).startswith("UNIQUE constraint failed")
    return code in _UNIQUE_VIOLATIONS


#: SQLSTATEs of a server that is there but cannot serve now: connection exceptions (class
#: 08), shutting down or starting up (57P01 admin shutdown, 57P02 crash shutdown, 57P03
#: cannot connect now), too many connections (53300).
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03", "53300")


def _transient_sqlstate(exc: BaseException) -> bool:
    """Whether ``exc`` or a driver error below it carries a transient SQLSTATE."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        code = getattr(item, "sqlstate", None) or getattr(item, "pgcode", None)
        if isinstance(code, str) and code.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
            return True
        orig = getattr(item, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, item.__cause__]
    return False


def translate(
    exc: BaseException, unavailable: tuple[type[BaseException], ...] = ()
) -> StorageError:
    """The storage error for a foreign (SQLAlchemy, driver, OS) exception: a unique-key
    violation is :class:`Conflict`; a connection or lock problem, a server starting up or
    shutting down (transient SQLSTATE, or a driver error in ``unavailable`` -- raised as is
    when a new connection fails) :class:`StorageUnavailable`; anything else (other
    constraint violations, bad data) the base :class:`StorageError`."""
    if isinstance(exc, sa_exc.IntegrityError) and _is_unique_violation(exc):
        return Conflict(f"unique key taken: {exc.orig}")
    if (
        isinstance(exc, (*_UNAVAILABLE, *unavailable))
        or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated)
        or _transient_sqlstate(exc)
    ):
        return StorageUnavailable(f"database unavailable: {exc}")
    return StorageError(f"database error: {exc}")


def as_page(total: int, items: Sequence[T], page: int, per_page: int) -> Page[T]:
    """A :class:`Page` of already fetched ``items``."""
    return Page(total=total, items=list(items), page=page, per_page=per_page)


class SqlCore(abc.ABC):
    """Engine, lifecycle and transaction helpers; subclasses supply the dialect hooks."""

    #: Serialise write transactions of this object with an asyncio lock (SQLite: one writer
    #: per file; waiting on the lock is cheaper and fairer than SQLite's sleeping busy handler).
    serialize_writes: bool = False
    #: Driver exceptions that mean "the server cannot serve now" and reach us unwrapped
    #: (SQLAlchemy passes on what the driver raises while opening a new connection).
    driver_unavailable: tuple[type[BaseException], ...] = ()
    #: Run needed migrations in a child process, so that this one never loads alembic (set
    #: by the manager for its long-running process; ``storage.migrate``).
    migrate_in_child: bool = False

    def __init__(self, url: str) -> None:
        self._url = url
        self._state = StorageState.NEW
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()

    def _foreign(self) -> tuple[type[BaseException], ...]:
        """What comes from the database layer, the driver's own connection errors included."""
        return (*_FOREIGN, *self.driver_unavailable)

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the engine, check the connection and run the migrations up to head (in a
        child process if :attr:`migrate_in_child`; not at all if the schema is current)."""
        if self._state is StorageState.OPEN:
            return
        engine = self._make_engine()
        try:
            if self.migrate_in_child:
                async with engine.connect() as conn:
                    revision = await conn.run_sync(migrate.current_revision)
                if revision != migrate.HEAD_REVISION:
                    await migrate.upgrade_in_child(self._url, self._sqlite_key())
            async with engine.begin() as conn:
                await conn.run_sync(self._migrate)
        except self._foreign() as exc:
            await engine.dispose()
            raise translate(exc, self.driver_unavailable) from exc
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        self._write_lock = asyncio.Lock()
        self._state = StorageState.OPEN
        log.info("storage open: %s", engine.url.render_as_string(hide_password=True))

    def _migrate(self, connection: Connection) -> None:
        if migrate.current_revision(connection) == migrate.HEAD_REVISION:
            return  # current: alembic is not even loaded
        self._before_migrate(connection)
        migrate.upgrade(connection)

    def _sqlite_key(self) -> bytes | None:
        """The SQLCipher key a child process needs to open the database (SQLite only)."""
        return None

    async def close(self) -> None:
        """Dispose of the connection pool. Idempotent."""
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
        if self._state is StorageState.OPEN:
            log.info("storage closed")
        self._state = StorageState.CLOSED

    async def ping(self) -> None:
        """Raise :class:`StorageUnavailable` if the database does not answer."""
        async with self._tx() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- helpers -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back on any exception.
        Foreign exceptions leave it translated into the storage error tree."""
        require_open(self._state)
        assert self._engine is not None
        try:
            async with self._engine.begin() as conn:
                yield conn
        except self._foreign() as exc:
            raise translate(exc, self.driver_unavailable) from exc

    @contextlib.asynccontextmanager
    async def _write_tx(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that writes (see ``serialize_writes``)."""
        if not self.serialize_writes:
            async with self._tx() as conn:
                yield conn
            return
        async with self._write_lock, self._tx() as conn:
            yield conn

    async def _page(
        self,
        conn: AsyncConnection,
        query: sa.Select[Any],
        order_by: Sequence[sa.ColumnElement[Any]],
        page: int,
        per_page: int,
    ) -> tuple[int, Sequence[sa.Row[Any]]]:
        """``(total, rows)`` of one page of ``query`` in ``order_by`` order."""
        offset = check_page(page, per_page)
        count = sa.select(sa.func.count()).select_from(query.subquery())
        total = (await conn.execute(count)).scalar_one()
        rows = (await conn.execute(query.order_by(*order_by).offset(offset).limit(per_page))).all()
        return total, rows

    # -- dialect hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    def _make_engine(self) -> AsyncEngine:
        """A configured async engine for ``self._url``."""

    @abc.abstractmethod
    def _before_migrate(self, connection: Connection) -> None:
        """Run inside the migration transaction before alembic (e.g. take a lock)."""

    @abc.abstractmethod
    def _insert_ignore(self, table: sa.Table) -> Any:
        """``INSERT ... ON CONFLICT DO NOTHING`` for ``table`` (dialect construct)."""

    @abc.abstractmethod
    def _log_text_match(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        """Condition on ``logs``: every word occurs in ``output``."""

    @abc.abstractmethod
    def _task_text_match(self, words: Sequence[str]) -> sa.ColumnElement[bool]:
        """Condition on ``tasks``: every word occurs in ``description``."""

    #: Largest number of values in one ``IN (...)`` list.
    in_chunk: int = 500
