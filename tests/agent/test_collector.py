"""The response collector (agent/collector.py): log batches re-sent with backoff."""

from __future__ import annotations

from pathlib import Path

from swarmdeploy.agent.collector import ResponseCollector
from swarmdeploy.agent.spool import LogSpool, RecentLines
from swarmdeploy.protocol.messages import LogBatch, Message
from tests.agent.fake_clock import FakeClock, no_jitter


class Link:
    """Records the log batches sent (as their highest seq)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def send(self, msg: Message) -> bool:
        assert isinstance(msg, LogBatch)
        self.batches.append(msg.entries[-1].seq)
        return True


async def send_times(
    col: ResponseCollector, link: Link, clock: FakeClock, upto: float
) -> list[float]:
    """Tick every 0.1 s for ``upto`` s; the offsets at which a batch went out."""
    start, out = clock.now, []
    while clock.now - start < upto:
        clock.advance(0.1)
        before = len(link.batches)
        await col.tick(True)
        if len(link.batches) > before:
            out.append(round(clock.now - start, 1))
    return out


def collector(tmp_path: Path, link: Link, clock: FakeClock) -> ResponseCollector:
    spool = LogSpool(tmp_path / "spool.bin")
    return ResponseCollector(
        spool, RecentLines(), link.send, batch_s=0.5, resend_s=2.0, clock=clock, rng=no_jitter
    )


async def test_unacked_batch_second_resend_waits_twice_as_long(tmp_path: Path) -> None:
    link, clock = Link(), FakeClock()
    col = collector(tmp_path, link, clock)
    col.marker("t", "install", "starting")
    assert await send_times(col, link, clock, 7.0) == [0.1, 2.1, 6.1]  # waits 2, 4
    assert link.batches == [1, 1, 1]
    col.spool.close()


async def test_ack_makes_the_next_batch_start_at_the_base_interval(tmp_path: Path) -> None:
    link, clock = Link(), FakeClock()
    col = collector(tmp_path, link, clock)
    col.marker("t", "install", "one")
    await send_times(col, link, clock, 6.5)  # sent, re-sent twice: next wait 8 s
    col.on_ack(1)
    col.marker("t", "install", "two")
    assert await send_times(col, link, clock, 2.5) == [0.1, 2.1]  # new batch: re-sent after 2 s
    assert link.batches[-2:] == [2, 2]
    col.spool.close()
