"""State reports (agent/reports.py): re-sent with backoff until acknowledged."""

from __future__ import annotations

from swarmdeploy.agent.reports import StateReporter
from swarmdeploy.agent.state import AgentState
from swarmdeploy.protocol.messages import Message, StateAck, StateReport
from swarmdeploy.protocol.states import TargetState as S
from tests.agent.fake_clock import FakeClock, no_jitter


class Link:
    """Records the messages sent."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, msg: Message) -> bool:
        self.sent.append(msg)
        return True

    def reports(self) -> list[tuple[str, S]]:
        return [(m.task_id, m.state) for m in self.sent if isinstance(m, StateReport)]


def reporter(link: Link, clock: FakeClock) -> StateReporter:
    state = AgentState(agent_id="a")
    return StateReporter(state, lambda: None, link.send, 2.0, clock=clock, rng=no_jitter)


async def resend_times(
    rep: StateReporter, link: Link, clock: FakeClock, upto: float
) -> list[float]:
    """Step the clock by 0.1 s up to ``upto`` s on; the offsets of every re-send."""
    start, out = clock.now, []
    while clock.now - start < upto:
        clock.advance(0.1)
        before = len(link.sent)
        await rep.resend_due()
        if len(link.sent) > before:
            out.append(round(clock.now - start, 1))
    return out


async def test_unacked_report_second_resend_waits_twice_as_long() -> None:
    link, clock = Link(), FakeClock()
    rep = reporter(link, clock)
    assert await rep.report("t", S.ACCEPTED)
    times = await resend_times(rep, link, clock, 15.0)
    assert times == [2.0, 6.0, 14.0]  # waits 2, 4, 8
    assert link.reports() == [("t", S.ACCEPTED)] * 4


async def test_ack_and_hello_bring_the_interval_back_to_the_base() -> None:
    link, clock = Link(), FakeClock()
    rep = reporter(link, clock)
    await rep.report("t", S.ACCEPTED)
    await rep.report("t", S.TRANSFERRING)
    assert await resend_times(rep, link, clock, 6.5) == [2.0, 6.0]  # next wait: 8 s
    rep.on_ack(StateAck(task_id="t", state=S.ACCEPTED, ok=True))
    # the 8 s wait already running is kept; the one after it is the base again
    assert await resend_times(rep, link, clock, 10.0) == [7.5, 9.5]
    assert link.reports()[-1] == ("t", S.TRANSFERRING)
    rep.sent_with_hello()  # a new connection
    assert await resend_times(rep, link, clock, 2.5) == [2.0]


async def test_nothing_is_resent_once_everything_is_acked() -> None:
    link, clock = Link(), FakeClock()
    rep = reporter(link, clock)
    await rep.report("t", S.ACCEPTED)
    rep.on_ack(StateAck(task_id="t", state=S.ACCEPTED, ok=True))
    assert await resend_times(rep, link, clock, 10.0) == []
