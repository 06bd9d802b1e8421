"""Who sees terminal output (issue 9): the operator who ran the command and admins -- never a
viewer, nor another operator -- in ``GET /logs`` and on ``/events``.

A real app on SQLite; the agent's output lines enter through the log service as the link
stores them (stage ``terminal:<signing key id>``, the key that signed the command)."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import connect

from swarmdeploy.storage.records import LogRecord
from tests.manager.api.test_events_ws import next_message, serve
from tests.manager.conftest import Api

SECRET = "root:$6$saltsalt$hash:19000:0:99999:7:::"


async def operator_ran_a_command(api: Api) -> tuple[dict[str, str], str]:
    """Operator alice runs a terminal command on t1; returns her headers and key id."""
    assert (await api.register("t1")).status_code == 201
    alice = await api.headers_for("operator", name="alice")
    r = await api.client.put("/targets/t1/command", json={"command": "head -1 /etc/shadow"},
                             headers=alice)  # fmt: skip
    assert r.status_code == 202, r.text
    [key] = [k for k in await api.services.operator_keys.list() if k.name == "alice"]
    return alice, key.id


async def agent_output(api: Api, key_id: str, seq: int = 1) -> None:
    line = LogRecord(5, "t1", "terminal", f"terminal:{key_id}", "head", SECRET, seq=seq)
    await api.services.logs.ingest([line])


async def terminal_lines(api: Api, headers: dict[str, str] | None) -> list[dict[str, Any]]:
    r = await api.client.get("/logs", params={"task": "terminal"}, headers=headers)
    assert r.status_code == 200
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def test_logs_show_terminal_output_to_its_operator_and_admins_only(api: Api) -> None:
    alice, key_id = await operator_ran_a_command(api)
    await agent_output(api, key_id)
    mine = await terminal_lines(api, alice)
    assert SECRET in [x["output"] for x in mine]
    assert any("terminal command by key alice" in x["output"] for x in mine)  # the audit line
    assert SECRET in [x["output"] for x in await terminal_lines(api, None)]  # admin
    assert await terminal_lines(api, await api.headers_for("viewer")) == []
    assert await terminal_lines(api, await api.headers_for("operator", name="bob")) == []
    viewer_all = await api.client.get("/logs", headers=await api.headers_for("viewer", "v2"))
    assert SECRET not in viewer_all.text
    text = await api.client.get(
        "/logs", headers={**await api.headers_for("viewer", "v3"), "Accept": "text/plain"}
    )
    assert SECRET not in text.text


async def test_events_carry_terminal_output_to_its_operator_and_admins_only(api: Api) -> None:
    alice, key_id = await operator_ran_a_command(api)
    viewer = await api.headers_for("viewer")
    bob = await api.headers_for("operator", name="bob")
    async with serve(api.app) as base:
        url = f"{base}/events?topics=logs&target=t1"
        async with (
            connect(url, additional_headers=viewer) as viewer_ws,
            connect(url, additional_headers=bob) as bob_ws,
            connect(url, additional_headers=alice) as alice_ws,
        ):
            await asyncio.sleep(0)
            await agent_output(api, key_id)
            after = LogRecord(6, "t1", "task-1", "run", "./app", "ordinary output", seq=2)
            await api.services.logs.ingest([after])
            first = await next_message(alice_ws)
            assert [x["output"] for x in first["payload"]] == [SECRET]
            for ws in (viewer_ws, bob_ws):  # the next event they get is the ordinary line
                message = await next_message(ws)
                assert [x["output"] for x in message["payload"]] == ["ordinary output"]
