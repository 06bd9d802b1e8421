"""The simulated agent's answers to ``error`` (swarmdeploy/simulate/agent.py): as the real
agent, an answer nobody waits for is not a failure."""

from __future__ import annotations

from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.protocol import messages as m
from swarmdeploy.protocol.states import TargetState
from swarmdeploy.simulate.agent import SimAgent
from swarmdeploy.simulate.state import Progress, SimSettings, SimTask


def _agent() -> tuple[SimAgent, Progress]:
    progress = Progress(1)
    settings = SimSettings(manager_url="http://127.0.0.1:1", anchors=AnchorSet(), tags=())
    agent = SimAgent("sim-1", settings, progress)
    agent.tasks["k"] = SimTask(task_id="k", kind="deploy", state=TargetState.INSTALLING)
    return agent, progress


def _refused(in_reply_to: str) -> m.Error:
    return m.Error(code="not_authorized", message="task k is not yours to fetch now",
                   in_reply_to=in_reply_to, task_id="k", sha256="ab" * 32, index=2)  # fmt: skip


async def test_an_error_for_a_chunk_after_the_transfer_ended_is_ignored() -> None:
    agent, progress = _agent()
    await agent._on_error(_refused("chunk_request"))  # a re-sent request, answered late
    assert progress.failures == [] and progress.counts["stale_chunk_errors"] == 1


async def test_an_error_for_a_fetch_still_fails_the_agent() -> None:
    agent, progress = _agent()
    await agent._on_error(_refused("fetch_task"))
    assert progress.failures == ["sim-1: error not_authorized for fetch_task: "
                                 "task k is not yours to fetch now"]  # fmt: skip
