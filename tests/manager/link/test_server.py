"""The link server's lifecycle and service hooks: allow-list at start, revocation on delete,
online/offline, throttled last-seen writes, health on /metrics (docs/protocol.md §3, §6.1)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from swarmdeploy.manager.events import Event
from swarmdeploy.manager.link import LinkServer, LinkStateError
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import Lifecycle, LinkState
from swarmdeploy.transport.http_manager import HttpManagerTransport
from swarmdeploy.transport.multi import MultiManagerTransport
from swarmdeploy.transport.zmq import ZmqManagerTransport
from tests.manager.conftest import make_settings, running_api
from tests.manager.link.conftest import TIMEOUT_S, Rig, deploy_doc, link_rig
from tests.manager.scrape import sample


async def test_registered_keys_admitted_before_start_after_restart(tmp_path: Path) -> None:
    async with link_rig(tmp_path) as rig:
        agent = await rig.agent("t1")
        keys = agent.keys
        entries = [m.LogEntry(seq=i, time_ms=i) for i in (1, 2, 3)]
        await agent.send(m.LogBatch(entries=entries))
        await agent.take(m.LogAck)
    async with link_rig(tmp_path) as rig:
        again = rig.connect_as("t1", keys)
        await again.start()
        assert (await again.take(m.Welcome)).log_acked_seq == 3


async def test_delete_revokes_at_once_and_stops_unfinished_rows(rig: Rig) -> None:
    doomed = await rig.agent("t1")
    other = await rig.agent("t2")
    task_id = await rig.create_task(deploy_doc(ids=["t1", "t2"]))
    await doomed.take(m.Announce)
    await doomed.report(task_id, TargetState.RUNNING)
    assert (await rig.api.client.delete("/targets/t1")).status_code == 204
    state = await doomed.transport.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)
    assert state is LinkState.AUTH_FAILED
    assert not rig.link.transport.is_allowed("t1")
    assert await rig.row_state(task_id, "t1") == "stopped"
    await other.take(m.Welcome)  # the others reconnect and are served as before
    await other.sync()


async def test_silent_target_goes_offline_with_event(tmp_path: Path) -> None:
    async with link_rig(tmp_path, heartbeat_interval_s=0.1) as rig:
        # Subscribed first: the target goes offline 0.3 s after its hello, which a loaded
        # machine can spend before a later subscription exists.
        sub = rig.api.services.events.subscribe(["targetUpdated"], target="t1")
        agent = await rig.agent("t1")
        welcome = agent.log[0]
        assert isinstance(welcome, m.Welcome) and welcome.heartbeat_interval_s == 0.1
        async with asyncio.timeout(TIMEOUT_S):
            event = await sub.get()
            while isinstance(event, Event) and event.payload["online"] is True:
                event = await sub.get()  # the "came online" event of the hello
        assert isinstance(event, Event) and event.payload["online"] is False
        assert (await rig.api.client.get("/targets/t1")).json()["online"] is False
        await agent.send(m.Heartbeat())
        async with asyncio.timeout(TIMEOUT_S):
            event = await sub.get()
        assert isinstance(event, Event) and event.payload["online"] is True


async def test_last_seen_writes_are_batched_but_api_is_current(rig: Rig) -> None:
    agent = await rig.agent("t1")
    other = await rig.agent("t2")
    await rig.link.sweep()  # a batch now: the next one is due a touch interval (5 s) later
    stored = await rig.api.storage.get_target("t1")
    assert stored is not None and stored.last_seen_at is not None
    first = stored.last_seen_at
    rig.clock.advance(1)
    for _ in range(20):
        await agent.send(m.Heartbeat())
    await agent.sync()
    stored = await rig.api.storage.get_target("t1")
    assert stored is not None and stored.last_seen_at == first  # no write per heartbeat
    api_seen = (await rig.api.client.get("/targets/t1")).json()["lastSeenAt"]
    assert api_seen >= first + 1000
    rig.clock.advance(5)
    await agent.send(m.Heartbeat())
    await other.send(m.Heartbeat())
    await agent.sync()
    await other.sync()
    await rig.link.sweep()  # the sweep stores both unstored contact times in one batch
    for target_id in ("t1", "t2"):
        stored = await rig.api.storage.get_target(target_id)
        assert stored is not None and stored.last_seen_at is not None
        assert stored.last_seen_at >= first + 6000


async def test_fleet_health_on_metrics_without_target_labels(rig: Rig) -> None:
    for target_id, disk, rss, cpu in (
        ("t1", 4_096_000, 21_000_000, 12.5),
        ("t2", 9_000_000_000, 1_000_000, 3.0),
    ):
        agent = await rig.agent(target_id)
        await agent.send(m.Health(disk_free_bytes=disk, agent_rss_bytes=rss, cpu_percent=cpu))
        await agent.sync()
    await rig.link.sweep()  # health documents are stored with the next batch of contacts
    text = (await rig.api.client.get("/metrics")).text
    assert sample(text, "swarmdeploy_targets_disk_free_bytes_min") == 4_096_000
    assert sample(text, "swarmdeploy_targets_agent_rss_bytes_max") == 21_000_000
    assert sample(text, "swarmdeploy_targets_cpu_percent_max") == 12.5
    assert sample(text, "swarmdeploy_targets_online") == 2
    assert sample(text, "swarmdeploy_link_messages_received_total", type="health") == 2
    assert 'target="' not in text


async def test_link_off_by_default_for_the_api_alone(tmp_path: Path) -> None:
    async with running_api(make_settings(tmp_path)) as api:
        assert api.app.state.link is None


async def test_link_starts_only_once(rig: Rig) -> None:
    with pytest.raises(LinkStateError):
        await rig.link.start()


async def test_real_sockets_when_settings_ask(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    settings = make_settings(
        tmp_path, agent_link=True, zmq_sub_port=ports[0], zmq_pub_port=ports[1]
    )
    async with running_api(settings) as api:
        link = api.app.state.link
        assert isinstance(link, LinkServer)
        assert isinstance(link.transport, MultiManagerTransport)  # ZeroMQ and HTTP at once
        zmq_link = link.transport.transports["zmq"]
        assert isinstance(zmq_link, ZmqManagerTransport)
        assert zmq_link.ports == (ports[0], ports[1])
        assert isinstance(link.transport.transports["http"], HttpManagerTransport)
    assert link.transport.lifecycle is Lifecycle.CLOSED
    assert all(t.lifecycle is Lifecycle.CLOSED for t in link.transport.transports.values())
