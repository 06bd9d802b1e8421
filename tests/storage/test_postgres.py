"""PostgreSQL specifics: registration under real concurrency, concurrent migrations, outages."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from swarmdeploy.storage import StorageUnavailable, TokenRejected
from swarmdeploy.storage.postgres import PostgresStorage
from tests.fixtures_pg import PgUnavailable, start_pg_server, unavailable

from .helpers import line, target

pytestmark = pytest.mark.postgres


def _asyncpg(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def test_replicas_racing_for_tokens_spend_each_exactly_once(pg_database_url: str) -> None:
    replicas = [PostgresStorage(_asyncpg(pg_database_url), pool_size=3) for _ in range(4)]
    await asyncio.gather(*(r.open() for r in replicas))  # concurrent migrations: advisory lock
    try:
        tokens = [f"tok{i}".encode() for i in range(20)]
        await replicas[0].create_token_set("fleet", tokens, created_at=0, expires_at=100)
        rng = random.Random(7)

        async def claim(replica: PostgresStorage, worker: int) -> list[bytes]:
            won = []
            for token in rng.sample(tokens, len(tokens)):
                try:
                    await replica.register_target(
                        token, target(f"w{worker}-{token.decode()}"), now=1
                    )
                    won.append(token)
                except TokenRejected:
                    pass
            return won

        workers = [claim(replicas[i % 4], i) for i in range(8)]
        results = await asyncio.gather(*workers)
        spent = [t for won in results for t in won]
        assert sorted(spent) == sorted(tokens)
        assert (await replicas[1].list_targets()).total == 20
    finally:
        for replica in replicas:
            await replica.close()


async def test_open_without_server_raises_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = PostgresStorage(
        f"postgresql+asyncpg://postgres@127.0.0.1:{port}/x", connect_timeout_s=2
    )
    with pytest.raises(StorageUnavailable):
        await backend.open()


async def test_server_restart_gives_unavailable_then_recovers() -> None:
    try:
        server = await asyncio.to_thread(start_pg_server)
    except PgUnavailable as exc:
        unavailable(str(exc))
        raise
    try:
        backend = PostgresStorage(_asyncpg(server.url()), connect_timeout_s=2)
        await backend.open()
        try:
            await backend.add_logs([line("before")])
            await asyncio.to_thread(server.halt)
            with pytest.raises(StorageUnavailable):
                await backend.count_logs()
            await asyncio.to_thread(server.start)
            assert await backend.count_logs() == 1  # the pool reconnects by itself
        finally:
            await backend.close()
    finally:
        await asyncio.to_thread(server.stop)
