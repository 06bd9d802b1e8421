"""Helpers shared by the transports: backoff, topic checks, the agent inbox."""

from __future__ import annotations

import pytest

from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.messages import ALL_TOPIC, Heartbeat, id_topic, tag_topic
from swarmdeploy.transport.base import LinkEvent, LinkState
from swarmdeploy.transport.link import AgentInbox, backoff_s, check_topic


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    for attempt in range(40):
        delay = backoff_s(attempt, 0.5, 30.0)
        ceiling = min(30.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


@pytest.mark.parametrize("topic", [ALL_TOPIC, id_topic("a"), tag_topic("b.c")])
def test_valid_topics_pass(topic: bytes) -> None:
    check_topic(topic)


@pytest.mark.parametrize("topic", [b"ALL", b"TAG-x", b"ID-a\x00b\x00", b"X-a\x00", b""])
def test_invalid_topics_are_refused(topic: bytes) -> None:
    with pytest.raises(MessageError):
        check_topic(topic)


async def test_inbox_keeps_order_and_never_loses_events() -> None:
    inbox = AgentInbox(maxsize=2)
    assert inbox.offer(Heartbeat(sent_at_ms=1))
    assert inbox.offer(Heartbeat(sent_at_ms=2))
    assert not inbox.offer(Heartbeat(sent_at_ms=3))  # full
    await inbox.set_state(LinkState.CONNECTED)  # an event makes room by dropping the oldest
    assert await inbox.get(0) == Heartbeat(sent_at_ms=2)
    assert await inbox.get(0) == LinkEvent(LinkState.CONNECTED)
    assert await inbox.get(0.01) is None
    await inbox.set_state(LinkState.CONNECTED)  # no change, no event
    assert inbox.empty()
    assert await inbox.wait_state((LinkState.CONNECTED,), timeout_s=0.1) is LinkState.CONNECTED
    with pytest.raises(TimeoutError):
        await inbox.wait_state((LinkState.CLOSED,), timeout_s=0.05)
