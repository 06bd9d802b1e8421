"""Typed configuration of the agent link, derived once from the manager's settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from swarmdeploy.manager.settings import Settings
from swarmdeploy.protocol.messages import DEFAULT_CHUNK_BYTES, MAX_CHUNK_BYTES


@dataclasses.dataclass(frozen=True, slots=True)
class LinkSettings:
    """How the manager serves agents (units in the names; times in the manager's clock).

    ``touch_interval_ms`` throttles writes of a target's last contact: a storm of messages
    costs one write per interval, while the in-memory session stays exact. Answered requests
    are kept ``request_retention_s`` (the record of what was asked), then purged by the
    maintenance pass that runs every ``maintenance_interval_s``. A new task is announced to
    ``announce_wave`` targets at a time, while fewer than ``max_transferring`` targets are
    still pulling their payload (:mod:`.announcer`). That bounds the chunk bytes in flight:
    the chunks queued for agents are shared frames (one per chunk, however many agents wait
    for it; ``transport.zmq_manager.CHUNK_CACHE_BYTES`` of them kept for reuse), and libzmq
    encrypts each into a buffer per connection it writes to, so roughly ``max_transferring``
    x ``chunk_bytes`` (8 MiB) more -- an estimate: measured is the peak RSS only
    (``docs/performance.md``).
    """

    uploads_dir: Path
    heartbeat_interval_s: float = 15.0
    online_timeout_ms: int = 45_000
    touch_interval_ms: int = 5_000
    terminal_expiry_ms: int = 60_000
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_upload_bytes: int = 4 << 30
    sweep_interval_s: float = 1.0
    queue_per_target: int = 256
    announce_wave: int = 32
    max_transferring: int = 32
    auth_cache_ms: int = 5_000
    request_retention_s: float = 7 * 86_400.0
    maintenance_interval_s: float = 600.0
    #: Accept an agent's offer to compress large messages (``docs/protocol.md`` §2.1).
    compression: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be between 1 and {MAX_CHUNK_BYTES}")
        if min(self.heartbeat_interval_s, self.sweep_interval_s, self.maintenance_interval_s) <= 0:
            raise ValueError(
                "heartbeat_interval_s, sweep_interval_s and maintenance_interval_s must be > 0"
            )
        if self.request_retention_s < 0:
            raise ValueError("request_retention_s must not be negative")
        if min(self.online_timeout_ms, self.queue_per_target, self.max_upload_bytes) < 1:
            raise ValueError("online_timeout_ms, queue_per_target and max_upload_bytes must be > 0")
        if not 0 < self.announce_wave <= self.max_transferring:
            raise ValueError("announce_wave must be > 0 and at most max_transferring")

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSettings:
        """The link configuration of a manager started with ``settings``."""
        heartbeat_s = settings.heartbeat_interval_s
        return cls(
            uploads_dir=settings.data_dir / "uploads",
            heartbeat_interval_s=heartbeat_s,
            online_timeout_ms=settings.online_timeout_ms,
            touch_interval_ms=int(min(5.0, heartbeat_s / 3) * 1000),
            terminal_expiry_ms=int(settings.terminal_expiry_s * 1000),
            max_upload_bytes=settings.max_upload_bytes,
            sweep_interval_s=min(1.0, heartbeat_s / 3),
            compression=settings.wire_compression,
        )
