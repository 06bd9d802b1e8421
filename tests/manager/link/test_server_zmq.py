"""The link over real CurveZMQ sockets on 127.0.0.1: a manager app on real SQLite and an
agent-side ``ZmqAgentTransport`` driven by the test (registration, delivery, chunks, logs,
revocation)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from pathlib import Path
from typing import TypeVar

from swarmdeploy.crypto import curve
from swarmdeploy.manager.keystore import load_or_create_keys, prepare_data_dir
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.manifest import decode_manifest
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.transport.base import AgentLinkConfig, LinkEvent, LinkState, ManagerLinkConfig
from swarmdeploy.transport.zmq import ZmqAgentTransport, ZmqManagerTransport
from tests.manager.conftest import identity_key_b64, make_settings, running_api
from tests.manager.link.conftest import deploy_doc

TIMEOUT_S = 10.0
M = TypeVar("M", bound=m.MessageBase)


async def receive(agent: ZmqAgentTransport, kind: type[M]) -> M:
    """The next message of ``kind`` (others are skipped; a new connection gets a hello)."""
    async with asyncio.timeout(TIMEOUT_S):
        while True:
            item = await agent.recv(timeout_s=TIMEOUT_S)
            if isinstance(item, LinkEvent) and item.state is LinkState.CONNECTED:
                await agent.send(m.Hello(agent_version="zmq-test"))
            elif isinstance(item, kind):
                return item


async def test_deploy_over_curve_zmq_end_to_end(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    prepare_data_dir(settings.data_dir)
    manager_keys = load_or_create_keys(settings.data_dir, now=dt.datetime.now(dt.UTC)).curve
    transport = ZmqManagerTransport(
        ManagerLinkConfig(keys=manager_keys, zmq_sub_port=0, zmq_pub_port=0)
    )
    async with running_api(settings, transport=transport) as api:
        keys = curve.generate_keypair()
        token = (await api.tokens(1))[0]
        body = {"id": "pi-1", "tags": ["lab"], "publicKey": keys.public,
                "identityKey": identity_key_b64()}  # fmt: skip
        r = await api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
        assert r.status_code == 201
        sub_port, pub_port = transport.ports
        agent = ZmqAgentTransport(
            AgentLinkConfig(
                target_id="pi-1",
                keys=keys,
                manager_public_key=r.json()["zeromq"]["publicKey"],
                zmq_sub_port=sub_port,
                zmq_pub_port=pub_port,
                reconnect_ivl_s=0.05,
                reconnect_ivl_max_s=0.5,
            )
        )
        await agent.connect()
        try:
            await agent.set_tags(["lab"])
            welcome = await receive(agent, m.Welcome)
            assert welcome.log_acked_seq == 0
            assert (await api.client.get("/targets/pi-1")).json()["online"] is True

            task_id = (await api.client.post("/tasks", json=deploy_doc(tags=["lab"]))).json()["id"]
            assert (await receive(agent, m.Announce)).task_id == task_id
            await agent.send(m.StateReport(task_id=task_id, state=TargetState.ACCEPTED))
            assert (await receive(agent, m.StateAck)).ok
            await agent.send(m.FetchTask(task_id=task_id))
            [art] = decode_manifest((await receive(agent, m.Task)).manifest).artifacts
            await agent.send(m.ChunkRequest(task_id=task_id, sha256=art.sha256, index=0))
            data = (await receive(agent, m.Chunk)).data
            assert len(data) == art.size_bytes and hashlib.sha256(data).hexdigest() == art.sha256

            await agent.send(m.StateReport(task_id=task_id, state=TargetState.RUNNING))
            assert (await receive(agent, m.StateAck)).state is TargetState.RUNNING
            line = m.LogEntry(seq=1, time_ms=1, task=task_id, stage="run", output="hi")
            await agent.send(m.LogBatch(entries=[line]))
            assert (await receive(agent, m.LogAck)).upto_seq == 1
            doc = (await api.client.get(f"/tasks/{task_id}")).json()
            assert doc["targets"][0]["state"] == "running"

            assert (await api.client.delete("/targets/pi-1")).status_code == 204
            state = await agent.wait_state(LinkState.AUTH_FAILED, timeout_s=TIMEOUT_S)
            assert state is LinkState.AUTH_FAILED
        finally:
            await agent.close()
