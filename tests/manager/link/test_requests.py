"""Requests to agents: delivered at once or at ``hello``, re-sent until acknowledged,
terminal commands expire for absent targets, ``config`` after API changes (§6.2, §6.8)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swarmdeploy.manager.link.requests import config_message
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.records import LogQuery, TargetRecord
from tests.manager.link.conftest import Rig, deploy_doc, link_rig


async def manager_lines(rig: Rig, target_id: str) -> list[str]:
    page = await rig.api.storage.query_logs(LogQuery(target=target_id, command="$manager"))
    return [r.output for r in page.items]


async def open_kinds(rig: Rig, target_id: str) -> list[str]:
    return [r.kind for r in await rig.api.storage.open_requests(target_id)]


async def test_stop_resent_at_every_hello_until_acked(rig: Rig) -> None:
    agent = await rig.agent("t1")
    assert (await rig.api.client.put("/targets/t1/stop")).status_code == 202
    stop = await agent.take(m.Stop)
    assert stop.task_id == ""
    await rig.network.cut("t1")  # the link drops; the agent reconnects and says hello
    again = await agent.take(m.Stop)
    assert again.request_id == stop.request_id
    await agent.send(m.RequestAck(request_id=stop.request_id, ok=True))
    await agent.sync()
    await agent.hello()
    await agent.take(m.Welcome)
    await agent.sync()
    assert agent.count(m.Stop) == 0
    assert "stop" not in await open_kinds(rig, "t1")
    stored = await rig.api.storage.get_request("t1", stop.request_id)
    assert stored is not None and stored.state == "acked"


async def test_refused_request_leaves_manager_log_line(rig: Rig) -> None:
    agent = await rig.agent("t1")
    r = await rig.api.client.put("/targets/t1/command", json={"command": "ls"})
    assert r.status_code == 202
    command = await agent.take(m.TerminalCommand)
    assert command.command == "ls"
    await agent.send(m.RequestAck(request_id=command.request_id, ok=False, message="busy"))
    await agent.sync()
    assert any("refused by the agent: busy" in line for line in await manager_lines(rig, "t1"))


async def test_terminal_command_for_offline_target_expires(rig: Rig) -> None:
    await rig.agent("t1", start=False)
    r = await rig.api.client.put("/targets/t1/command", json={"command": "uptime"})
    assert r.status_code == 202
    assert await open_kinds(rig, "t1") == ["terminal"]
    await rig.link.sweep()
    assert await open_kinds(rig, "t1") == ["terminal"]  # not yet
    rig.clock.advance(61)
    await rig.link.sweep()
    assert await open_kinds(rig, "t1") == []
    lines = await manager_lines(rig, "t1")
    assert any("'uptime' expired: the target was offline" in line for line in lines)


async def test_sent_terminal_command_expires_when_target_drops(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await rig.api.client.put("/targets/t1/command", json={"command": "sleep 1"})
    await agent.take(m.TerminalCommand)
    await rig.network.partition("t1")
    rig.clock.advance(rig.api.settings.online_timeout_ms / 1000 + 61)
    await rig.link.sweep()
    await rig.link.sweep()
    assert "terminal" not in await open_kinds(rig, "t1")
    assert "'sleep 1' expired" in " ".join(await manager_lines(rig, "t1"))
    await rig.network.heal("t1")
    await agent.take(m.Welcome)
    await agent.sync()
    assert agent.count(m.TerminalCommand) == 0


async def test_non_terminal_requests_do_not_expire(rig: Rig) -> None:
    agent = await rig.agent("t1", start=False)
    await rig.api.client.put("/targets/t1/logs")
    rig.clock.advance(3600)
    await rig.link.sweep()
    await agent.start()
    request = await agent.take(m.LogRequest)
    await agent.send(m.RequestAck(request_id=request.request_id))
    await agent.sync()
    target = await rig.api.storage.get_target("t1")
    assert target is not None and target.log_request_at > 0


async def test_acked_stop_of_undelivered_task_marks_it_stopped(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    await rig.wait_row(task_id, "t1", "announced")
    assert (await rig.api.client.put(f"/tasks/{task_id}/stop")).status_code == 202
    stop = await agent.take(m.Stop)
    assert stop.task_id == task_id
    await agent.send(m.RequestAck(request_id=stop.request_id, message="nothing to stop"))
    await rig.wait_row(task_id, "t1", TargetState.STOPPED.value)


async def test_config_pushed_after_api_tag_change_and_not_repeated(rig: Rig) -> None:
    agent = await rig.agent("t1", tags=["a"])
    first = await agent.take(m.Config)  # hello said revision 0
    await agent.send(m.RequestAck(request_id=first.request_id))
    r = await rig.api.client.put("/targets/t1", json={"tags": ["a", "robots"], "name": "arm"})
    assert r.status_code == 200
    config = await agent.take(m.Config)
    record = await rig.api.storage.get_target("t1")
    assert record is not None
    assert (config.tags, config.name, config.revision) == (
        ["a", "robots"],
        "arm",
        record.updated_at,
    )
    assert config.revision > first.revision
    await agent.send(m.RequestAck(request_id=config.request_id))
    await agent.sync()
    await agent.hello(config_revision=config.revision)
    await agent.take(m.Welcome)
    await agent.sync()
    assert agent.count(m.Config) == 0
    await agent.hello(config_revision=0)
    assert (await agent.take(m.Config)).revision == record.updated_at


async def test_task_by_api_assigned_tag_reaches_agent(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await rig.api.client.put("/targets/t1", json={"tags": ["new"]})
    config = await agent.take(m.Config, lambda c: c.tags == ["new"])
    await agent.transport.set_tags(config.tags)  # what the agent does with a config
    task_id = await rig.create_task(deploy_doc(tags=["new"]))
    assert (await agent.take(m.Announce)).task_id == task_id


def test_config_revision_never_goes_below_agents() -> None:
    record = TargetRecord(id="t", curve_key="k", identity_key="i", created_at=5, updated_at=10)
    assert config_message(record).revision == 10
    assert config_message(record, agent_revision=20).revision == 20
    same = config_message(dataclasses.replace(record))
    renamed = config_message(dataclasses.replace(record, name="x"))
    assert same.request_id == config_message(record).request_id
    assert renamed.request_id != same.request_id and renamed.revision == same.revision


async def test_stop_survives_manager_restart_and_is_delivered_and_acked_once(
    tmp_path: Path,
) -> None:
    async with link_rig(tmp_path) as first:
        offline = await first.agent("t1", start=False)
        assert (await first.api.client.put("/targets/t1/stop")).status_code == 202
        [stored] = await first.api.storage.open_requests("t1")
    # the manager stopped before the agent came online; a new app opens the same SQLite file
    async with link_rig(tmp_path) as second:
        agent = second.connect_as("t1", offline.keys)
        await agent.start()
        await agent.take(m.Welcome)
        stop = await agent.take(m.Stop)
        assert (stop.request_id, stop.task_id) == (stored.id, "")
        await agent.send(m.RequestAck(request_id=stop.request_id, ok=True))
        await agent.sync()
        acked = await second.api.storage.get_request("t1", stop.request_id)
        assert acked is not None and acked.state == "acked"
        second.clock.advance(5)
        await agent.send(m.RequestAck(request_id=stop.request_id, ok=True))  # a repeat
        await agent.hello()
        await agent.take(m.Welcome)
        await agent.sync()
        assert await second.api.storage.get_request("t1", stop.request_id) == acked
        assert sum(isinstance(x, m.Stop) for x in agent.log) == 1


async def test_terminal_command_still_expires_after_manager_restart(tmp_path: Path) -> None:
    async with link_rig(tmp_path) as first:
        await first.agent("t1", start=False)
        r = await first.api.client.put("/targets/t1/command", json={"command": "uptime"})
        assert r.status_code == 202
    async with link_rig(tmp_path) as second:
        await second.link.sweep()
        assert await open_kinds(second, "t1") == ["terminal"]
        second.clock.advance(61)
        await second.link.sweep()
        assert await open_kinds(second, "t1") == []
        assert any("'uptime' expired" in line for line in await manager_lines(second, "t1"))


async def test_too_many_open_requests_are_refused_with_503(tmp_path: Path) -> None:
    async with link_rig(tmp_path, dispatch_queue_size=2) as rig:
        agent = await rig.agent("t1")
        for _ in range(2):
            assert (await rig.api.client.put("/targets/t1/logs")).status_code == 202
        refused = await rig.api.client.put("/targets/t1/logs")
        assert refused.status_code == 503 and "retry-after" in refused.headers
        first = await agent.take(m.LogRequest)  # delivered at once: the target is connected
        await agent.send(m.RequestAck(request_id=first.request_id))
        await agent.sync()
        assert (await rig.api.client.put("/targets/t1/logs")).status_code == 202


async def test_answered_requests_are_purged_after_retention(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await rig.api.client.put("/targets/t1/stop")
    stop = await agent.take(m.Stop)
    await agent.send(m.RequestAck(request_id=stop.request_id))
    await agent.sync()
    await rig.link.maintain()
    assert await rig.api.storage.get_request("t1", stop.request_id) is not None
    rig.clock.advance(rig.link.settings.request_retention_s + 1)
    await rig.link.maintain()
    assert await rig.api.storage.get_request("t1", stop.request_id) is None


async def test_task_stop_lists_a_vanished_target_as_refused(rig: Rig) -> None:
    await rig.agent("t1", start=False)
    await rig.agent("t2", start=False)
    task_id = await rig.create_task(deploy_doc(ids=["t1", "t2"]))
    for target_id in ("t1", "t2"):
        await rig.api.storage.set_task_target_state(
            task_id, target_id, state="running", updated_at=1
        )
    await rig.api.storage.delete_target("t1")  # behind the registry's back: the row stays
    r = await rig.api.client.put(f"/tasks/{task_id}/stop")
    assert r.status_code == 202 and (r.json()["requested"], r.json()["refused"]) == (1, ["t1"])
    assert await open_kinds(rig, "t2") == ["stop"]
