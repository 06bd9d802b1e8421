"""Agent messages handled by the manager: hello/welcome, state reports, logs, health, bye,
unknown types (docs/protocol.md §6.1, §6.2, §6.4, §6.7)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import cast

from swarmdeploy.crypto.anchors import parse_anchor_file
from swarmdeploy.crypto.operator import verify_revocation_list
from swarmdeploy.manager.events import Event
from swarmdeploy.manager.link.handlers import GROUP_MAX, AgentHandlers, ReportGroup
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.storage.records import LogQuery
from tests.manager.link.conftest import Rig, deploy_doc, link_rig

S = TargetState


def entry(seq: int, output: str | None = None) -> m.LogEntry:
    return m.LogEntry(seq=seq, time_ms=1_000 + seq, stage="run", output=output or f"line {seq}")


async def stored_seqs(rig: Rig, target_id: str) -> list[int]:
    page = await rig.api.storage.query_logs(LogQuery(target=target_id, per_page=1000))
    return sorted(r.seq for r in page.items if r.seq is not None)


async def test_hello_is_welcomed_and_target_is_online(rig: Rig) -> None:
    sub = rig.api.services.events.subscribe(["targetUpdated"], target="t1")
    agent = await rig.agent("t1")
    r = await rig.api.client.get("/targets/t1")
    assert r.json()["online"] is True
    assert r.json()["lastSeenAt"] is not None
    event = await sub.get()
    assert isinstance(event, Event) and event.payload["online"] is True
    await agent.hello(log_acked_seq=0)
    welcome = await agent.take(m.Welcome)
    assert welcome.heartbeat_interval_s == rig.api.settings.heartbeat_interval_s
    assert welcome.log_acked_seq == 0


async def test_hello_reports_are_applied_and_acked_in_order(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    report = m.TaskReport(task_id=task_id, state=S.RUNNING)
    unknown = m.TaskReport(task_id="no-such-task", state=S.RUNNING)
    await agent.hello(tasks=[report, unknown])
    await agent.take(m.Welcome)
    ack = await agent.take(m.StateAck, lambda a: a.task_id == task_id)
    assert ack.ok and ack.state is S.RUNNING
    refused = await agent.take(m.StateAck, lambda a: a.task_id == "no-such-task")
    assert not refused.ok and refused.current is None
    assert await rig.row_state(task_id, "t1") == "running"  # announced -> running via event_path


async def test_hello_reconciles_in_protocol_order(rig: Rig) -> None:
    agent = await rig.agent("t1", start=False)
    waiting = await rig.create_task(deploy_doc(ids=["t1"]))  # created while t1 is offline
    r = await rig.api.client.put("/targets/t1/stop")
    assert r.status_code == 202
    await agent.start()
    await agent.take(m.Config)
    await agent.hello(tasks=[m.TaskReport(task_id="gone", state=S.RUNNING)], config_revision=1)
    await agent.take(m.Config)
    kinds = [type(x).__name__ for x in agent.log]
    second = kinds[kinds.index("Config") + 1 :]  # what answered the second hello
    assert second == ["Welcome", "StateAck", "Announce", "Stop", "Config"]
    assert await rig.row_state(waiting, "t1") == "announced"


async def test_state_report_persisted_then_acked_and_refused_after_stop(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    assert (await agent.report(task_id, S.ACCEPTED)).ok
    assert await rig.row_state(task_id, "t1") == "accepted"
    again = await agent.report(task_id, S.ACCEPTED)  # a repeat: acked without a change
    assert again.ok and again.current is None
    assert (await agent.report(task_id, S.RUNNING)).ok
    r = await rig.api.client.get(f"/tasks/{task_id}")
    assert r.json()["targets"][0]["state"] == "running"
    await agent.report(task_id, S.STOPPED, "stopped by the operator")
    late = await agent.report(task_id, S.RUNNING)
    assert not late.ok and late.current is S.STOPPED


async def test_state_report_publishes_task_event(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    await agent.sync()
    sub = rig.api.services.events.subscribe(["taskUpdated"], task=task_id)
    await agent.report(task_id, S.DECLINED, "not enough disk")
    event = await sub.get()
    assert isinstance(event, Event)
    assert event.payload["state"] == "declined" and event.payload["reason"] == "not enough disk"


async def test_logs_stored_exactly_once_with_duplicates_and_gaps(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.send(m.LogBatch(entries=[entry(1), entry(2), entry(3)]))
    assert (await agent.take(m.LogAck)).upto_seq == 3
    await agent.send(m.LogBatch(entries=[entry(2), entry(3), entry(4), entry(5)]))
    assert (await agent.take(m.LogAck)).upto_seq == 5
    await agent.send(m.LogBatch(entries=[entry(7), entry(8)]))  # gap: 6 is missing
    assert (await agent.take(m.LogAck)).upto_seq == 5
    await agent.send(m.LogBatch(entries=[entry(6), entry(7), entry(8)]))
    assert (await agent.take(m.LogAck)).upto_seq == 8
    assert await stored_seqs(rig, "t1") == list(range(1, 9))


async def test_welcome_names_highest_stored_seq_after_manager_forgets(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.send(m.LogBatch(entries=[entry(i) for i in range(1, 5)]))
    await agent.take(m.LogAck)
    rig.link.sequencer.forget("t1")  # as after a restart: the cache is rebuilt from storage
    await agent.hello()
    assert (await agent.take(m.Welcome)).log_acked_seq == 4


async def test_welcome_trusts_agent_acked_seq_beyond_storage(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.hello(log_acked_seq=40)  # e.g. retention deleted the lines the agent saw acked
    assert (await agent.take(m.Welcome)).log_acked_seq == 40
    await agent.send(m.LogBatch(entries=[entry(41)]))
    assert (await agent.take(m.LogAck)).upto_seq == 41
    assert await stored_seqs(rig, "t1") == [41]


async def test_log_lines_published_as_events(rig: Rig) -> None:
    agent = await rig.agent("t1")
    sub = rig.api.services.events.subscribe(["logs"], target="t1")
    await agent.send(m.LogBatch(entries=[entry(1, "hello world")]))
    event = await sub.get()
    assert isinstance(event, Event) and event.payload[0]["output"] == "hello world"


async def test_health_stored_on_target(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.send(m.Health(disk_free_bytes=123_456, agent_rss_bytes=20_000_000, cpu_percent=7))
    await agent.sync()
    doc = (await rig.api.client.get("/targets/t1")).json()
    assert doc["health"]["disk_free_bytes"] == 123_456
    assert doc["health"]["agent_rss_bytes"] == 20_000_000


async def test_health_is_held_for_the_batch_and_a_moving_device_is_stored_at_once(
    rig: Rig,
) -> None:
    agent = await rig.agent("t1")
    await agent.send(m.Health(cpu_percent=5))
    await agent.sync()
    stored = await rig.api.storage.get_target("t1")
    assert stored is not None and stored.health is None  # held for the next batch ...
    doc = (await rig.api.client.get("/targets/t1")).json()
    assert doc["health"]["cpu_percent"] == 5  # ... while the API shows it from memory
    await rig.link.store_contacts(rig.clock(), every=True)
    stored = await rig.api.storage.get_target("t1")
    assert stored is not None and stored.health is not None
    assert stored.health["cpu_percent"] == 5 and rig.link.sessions.health("t1") is None
    await agent.send(m.Health(cpu_percent=6, position=m.Position(lat=45.0, lon=7.6)))
    await agent.sync()
    stored = await rig.api.storage.get_target("t1")
    assert stored is not None and stored.health is not None
    assert stored.health["cpu_percent"] == 6  # moved: stored at once ...
    held = rig.link.sessions.health("t1")  # ... and held, so the next batch writes it again
    assert held is not None and held["cpu_percent"] == 6


async def test_health_history_samples_one_report_per_interval(rig: Rig) -> None:
    agent = await rig.agent("t1")
    for cpu in (10, 20):  # the second comes within the sample interval: not kept
        await agent.send(m.Health(cpu_percent=cpu, disk_free_bytes=1_000, disk_total_bytes=4_000))
        await agent.sync()
    await rig.link.store_contacts(rig.clock(), every=True)  # the sweep stores held samples
    rig.clock.advance(rig.api.settings.health_sample_s)
    await agent.send(m.Health(cpu_percent=30, load_1m=1.5, agent_rss_bytes=21_000_000))
    await agent.sync()
    await rig.link.store_contacts(rig.clock(), every=True)
    history = (await rig.api.client.get("/targets/t1/health")).json()
    assert [p["cpuPercent"] for p in history["items"]] == [10, 30]
    first, second = history["items"]
    assert first["diskFreeBytes"] == 1_000 and first["diskTotalBytes"] == 4_000
    assert second["load1m"] == 1.5 and second["agentRssBytes"] == 21_000_000
    assert second["at"] > first["at"] and history["sampleIntervalS"] == 300
    recent = await rig.api.client.get("/targets/t1/health", params={"since": second["at"]})
    assert [p["cpuPercent"] for p in recent.json()["items"]] == [30]
    assert (await rig.api.client.get("/targets/ghost/health")).status_code == 404


async def test_bye_marks_offline_at_once(rig: Rig) -> None:
    agent = await rig.agent("t1")
    sub = rig.api.services.events.subscribe(["targetUpdated"], target="t1")
    await agent.send(m.Bye(reason="shutting down"))
    event = await sub.get()
    assert isinstance(event, Event) and event.payload["online"] is False
    assert (await rig.api.client.get("/targets/t1")).json()["online"] is False
    await agent.send(m.Heartbeat())
    event = await sub.get()
    assert isinstance(event, Event) and event.payload["online"] is True


async def test_unknown_message_type_answered_unsupported(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.send(m.UnknownMessage(type="telemetry", fields={"x": 1}))
    error = await agent.take(m.Error)
    assert error.code == "unsupported_type" and error.in_reply_to == "telemetry"


async def test_welcome_carries_the_revocation_list_once_a_key_is_revoked(rig: Rig) -> None:
    keys = rig.api.services.operator_keys
    agent = await rig.agent("t1")
    await agent.hello(log_acked_seq=0)
    assert (await agent.take(m.Welcome)).revocations == b""
    record = await keys.generate(owner="k1", name="alice", role="operator")
    await keys.revoke(record.id)
    await agent.hello(log_acked_seq=0)
    welcome = await agent.take(m.Welcome)
    anchors = parse_anchor_file(rig.api.services.keys.ca.cert_pem().decode())
    crl = verify_revocation_list(welcome.revocations, anchors, last_number=0)
    assert crl.key_ids == {record.id}


async def test_welcome_chooses_a_compression_the_agent_offered(rig: Rig) -> None:
    agent = await rig.agent("t1")
    await agent.hello(compression=["zstd", "zlib"])
    assert (await agent.take(m.Welcome)).compression == "zlib"
    await agent.hello(compression=["zstd"])
    assert (await agent.take(m.Welcome)).compression == ""
    await agent.hello()  # an agent that offers nothing (an older one) gets plain messages
    assert (await agent.take(m.Welcome)).compression == ""


async def test_wire_compression_off_declines_every_offer(tmp_path: Path) -> None:
    async with link_rig(tmp_path, wire_compression=False) as rig:
        agent = await rig.agent("t1")
        await agent.hello(compression=["zlib"])
        assert (await agent.take(m.Welcome)).compression == ""


def _hold_worker(rig: Rig, target_id: str) -> asyncio.Event:
    """Keep the target's worker busy until the returned event is set: what arrives
    meanwhile waits in its queue."""
    gate = asyncio.Event()

    async def hold() -> None:
        await gate.wait()

    assert rig.link.workers.submit(target_id, hold)
    return gate


async def test_reports_that_arrive_together_are_one_write_and_each_is_acked_in_order(
    rig: Rig,
) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    assert (await agent.report(task_id, S.ACCEPTED)).ok
    assert (await agent.report(task_id, S.TRANSFERRING)).ok
    await agent.sync()
    link = rig.link
    gate = _hold_worker(rig, "t1")  # the worker is busy: the reports wait together
    states = [S.INSTALLING, S.INSTALLED, S.RUNNING, S.EXITED]
    for state in states:
        await agent.send(m.StateReport(task_id=task_id, state=state))
    await wait_for(lambda: link.workers.queued() == 1)  # one report group
    writes = link.services.task_states.commits.items
    gate.set()
    acks = [await agent.take(m.StateAck, lambda a, s=s: a.state is s) for s in states]
    assert all(a.ok and a.task_id == task_id for a in acks)
    got = [x.state for x in agent.log if isinstance(x, m.StateAck)][-4:]
    assert got == states  # in order
    assert await rig.row_state(task_id, "t1") == "exited"
    assert link.services.task_states.commits.items - writes == 2  # the state and the contact


async def test_report_group_falls_back_to_one_by_one_when_the_furthest_is_refused(
    rig: Rig,
) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    assert (await agent.report(task_id, S.ACCEPTED)).ok
    await agent.sync()
    link = rig.link
    gate = _hold_worker(rig, "t1")
    await agent.send(m.StateReport(task_id=task_id, state=S.TRANSFERRING))
    await agent.send(m.StateReport(task_id=task_id, state=S.ACCEPTED, at_ms=7))  # behind
    await wait_for(lambda: link.workers.queued() == 1)
    gate.set()
    first = await agent.take(m.StateAck, lambda a: a.state is S.TRANSFERRING)
    late = await agent.take(m.StateAck, lambda a: a.state is S.ACCEPTED)
    assert first.ok and not late.ok and late.current is S.TRANSFERRING
    assert await rig.row_state(task_id, "t1") == "transferring"


def test_report_group_takes_later_reports_of_its_task_but_no_build_steps() -> None:
    handlers = cast(AgentHandlers, object())
    group = ReportGroup(handlers, "t1", m.StateReport(task_id="k", state=S.INSTALLING))
    assert group.take(m.StateReport(task_id="k", state=S.INSTALLED))
    assert not group.take(m.StateReport(task_id="other", state=S.RUNNING))
    assert not group.take(m.StateReport(task_id="k", state=S.BUILT))
    building = ReportGroup(handlers, "b1", m.StateReport(task_id="k", state=S.BUILDING))
    assert not building.take(m.StateReport(task_id="k", state=S.BUILT))
    for _ in range(GROUP_MAX - 2):
        assert group.take(m.StateReport(task_id="k", state=S.RUNNING))
    assert not group.take(m.StateReport(task_id="k", state=S.EXITED))  # full
    assert len(group.reports) == GROUP_MAX


async def wait_for(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait until ``condition`` holds (checked every few milliseconds)."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the worker queue offers no event
            await asyncio.sleep(0.005)
