"""The response collector through the daemon: spool, batches, acks, reconnects, log requests."""

from __future__ import annotations

from swarmdeploy.protocol.messages import LogRequest
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import TARGET, Rig
from tests.agent.helpers import eventually

S = TargetState
CHATTY = "i=0; while [ $i -lt 60 ]; do i=$((i+1)); echo line $i; done; exec sleep 300"


def lines_of(rig: Rig) -> list[str]:
    return [o for o in rig.outputs("t1") if o.startswith("line ")]


async def test_log_batch_resent_after_a_reconnect_is_stored_once(rig: Rig) -> None:
    await rig.start()
    rig.manager.ack_logs = False  # acks get lost: the agent must send again
    await rig.deploy("t1", S.RUNNING, run=[CHATTY], debug=True)
    await eventually(lambda: len(lines_of(rig)) == 60)
    batches = rig.manager.log_batches
    await eventually(lambda: rig.manager.log_batches > batches, timeout_s=5)  # re-sent
    rig.manager.ack_logs = True
    assert rig.network is not None
    await rig.network.cut(TARGET)  # reconnect: welcome carries what the manager stored
    await eventually(lambda: len(rig.manager.hellos) >= 2)
    await eventually(lambda: len(rig.daemon.spool) == 0)  # type: ignore[union-attr]
    assert lines_of(rig) == [f"line {i}" for i in range(1, 61)]
    seqs = [e.seq for e in rig.manager.logs[TARGET]]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_non_debug_output_is_sent_once_on_log_request(rig: Rig) -> None:
    await rig.start()
    run = ["echo quiet; echo loud >&2; exec sleep 300"]
    await rig.deploy("t1", S.RUNNING, run=run, debug=False)
    await rig.output_seen("t1", "loud")  # errors always
    assert "quiet" not in rig.outputs("t1")
    assert any("starting 1 run" in o for o in rig.outputs("t1"))  # stage markers
    for request_id in ("r1", "r2"):
        await rig.manager.send(TARGET, LogRequest(request_id=request_id, since_ms=0))
        await rig.acked(request_id)
    await rig.output_seen("t1", "quiet")
    assert rig.outputs("t1").count("quiet") == 1


async def test_lines_spooled_while_offline_arrive_after_reconnect(rig: Rig) -> None:
    await rig.start()
    assert rig.network is not None
    await rig.deploy("t1", S.RUNNING, run=["sleep 0.5; " + CHATTY], debug=True)
    await rig.network.partition(TARGET)
    await eventually(lambda: len(rig.daemon.spool) >= 60)  # type: ignore[union-attr]
    assert lines_of(rig) == []
    await rig.network.heal(TARGET)
    await eventually(lambda: len(lines_of(rig)) == 60)
    assert lines_of(rig) == [f"line {i}" for i in range(1, 61)]
