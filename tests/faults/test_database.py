"""PostgreSQL starting up or shutting down is "storage unavailable" (issue #10 item 8,
docs/reliability.md): ``/health`` answers 503 and agent messages take the retry path, never
an internal error.

A smart shutdown (``pg_ctl -m smart``) waits for the connected clients while it refuses new
connections with "the database system is shutting down" (SQLSTATE 57P03, asyncpg's
``CannotConnectNowError``), as the server does while it starts up: one held connection
keeps the server in that state for as long as the test needs. The other sessions are
terminated, so the manager must open a new connection -- and is refused.
"""

from __future__ import annotations

import asyncio
import pathlib
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from httpx import ASGITransport, AsyncClient

from swarmdeploy.manager.app import create_app
from swarmdeploy.storage import StorageUnavailable, open_storage
from tests.fixtures_pg import PgServer, PgUnavailable, start_pg_server, unavailable
from tests.manager.conftest import make_settings

Refuse = Callable[[], Awaitable[None]]


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A PostgreSQL server of this test alone (it is shut down)."""
    try:
        server = start_pg_server()
    except PgUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def database(own_pg: PgServer) -> AsyncIterator[tuple[str, Refuse]]:
    """``(url, refuse)``: a database and a coroutine that puts the server into a shutdown
    that refuses new connections (57P03) until the test ends, ending every other session."""
    url = own_pg.create_database()
    holder = await asyncpg.connect(url)

    async def refuse() -> None:
        command = [str(own_pg.bin_dir / "pg_ctl"), "-D", str(own_pg.data_dir), "-m", "smart"]
        command += ["-W", "stop"]
        if own_pg.run_as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        run = subprocess.run
        await asyncio.to_thread(run, command, check=True, capture_output=True, timeout=30)
        for _ in range(200):
            try:
                probe = await asyncpg.connect(url)
            except asyncpg.exceptions.CannotConnectNowError:
                break
            await probe.close()
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the server never started refusing connections")
        await holder.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )

    try:
        yield url, refuse
    finally:
        await holder.close()


async def test_server_shutting_down_is_storage_unavailable(
    database: tuple[str, Refuse],
) -> None:
    url, refuse = database
    storage = open_storage(url)
    await storage.open()
    try:
        await refuse()
        with pytest.raises(StorageUnavailable):
            await storage.ping()
    finally:
        await storage.close()
    fresh = open_storage(url)
    with pytest.raises(StorageUnavailable):
        await fresh.open()
    await fresh.close()


async def test_health_answers_503_while_the_server_shuts_down(
    database: tuple[str, Refuse], tmp_path: pathlib.Path
) -> None:
    url, refuse = database
    app = create_app(make_settings(tmp_path, database=url))
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/health")).status_code == 200
            await refuse()
            answer = await client.get("/health")
            assert answer.status_code == 503, answer.text
            assert answer.json()["storage"] == "unavailable"
