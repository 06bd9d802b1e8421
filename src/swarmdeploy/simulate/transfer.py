"""The chunked pull of a simulated agent (``docs/protocol.md`` §6.5), in memory.

A :class:`Transfer` keeps a window of ``chunk_request`` outstanding, checks the length of
every chunk against the signed manifest, and hashes each artifact in chunk order (chunks
that arrive early wait in a small buffer), so that memory stays at a few chunks per agent
however large the artifact is. Nothing is written to disk.
"""

from __future__ import annotations

import hashlib

from swarmdeploy.agent.backoff import Backoff
from swarmdeploy.protocol.manifest import ArtifactInfo
from swarmdeploy.protocol.messages import Chunk, ChunkRequest

Key = tuple[str, int]  # (sha256, chunk index)


class Transfer:
    """Pulls every chunk of ``artifacts`` for ``task_id`` with ``window`` requests in flight."""

    def __init__(self, task_id: str, artifacts: list[ArtifactInfo], window: int) -> None:
        self.task_id = task_id
        self._window = window
        self._artifacts = {a.sha256: a for a in artifacts}
        self._todo: list[Key] = [(a.sha256, i) for a in artifacts for i in range(a.chunk_count)]
        self._todo.reverse()  # pop() from the end gives chunk order
        self._outstanding: dict[Key, float] = {}  # key -> monotonic time sent
        self._backoff: dict[Key, Backoff] = {}  # re-sent keys: their backoff, as the agent's
        self._early: dict[Key, bytes] = {}
        self._hashers = {a.sha256: hashlib.sha256() for a in artifacts}
        self._hashed = dict.fromkeys(self._artifacts, 0)  # chunks hashed so far, per artifact

    @property
    def complete(self) -> bool:
        """Whether every chunk of every artifact has been hashed."""
        return all(self._hashed[s] == a.chunk_count for s, a in self._artifacts.items())

    def _request(self, key: Key) -> ChunkRequest:
        return ChunkRequest(task_id=self.task_id, sha256=key[0], index=key[1])

    def next_requests(self, now: float) -> list[ChunkRequest]:
        """Requests that fill the window up again (each marked as sent at ``now``)."""
        out = []
        while self._todo and len(self._outstanding) < self._window:
            key = self._todo.pop()
            self._outstanding[key] = now
            out.append(self._request(key))
        return out

    def accept(self, chunk: Chunk) -> bool:
        """Take one chunk; ``False`` for one not asked for or of the wrong length."""
        key = (chunk.sha256, chunk.index)
        if key not in self._outstanding:
            return False
        _offset, length = self._artifacts[chunk.sha256].chunk_span(chunk.index)
        if len(chunk.data) != length:
            return False
        del self._outstanding[key]
        self._backoff.pop(key, None)
        self._early[key] = chunk.data
        sha = chunk.sha256
        while (sha, self._hashed[sha]) in self._early:
            self._hashers[sha].update(self._early.pop((sha, self._hashed[sha])))
            self._hashed[sha] += 1
        return True

    def overdue(self, now: float, limit_s: float) -> list[ChunkRequest]:
        """Requests unanswered for their backoff wait (``limit_s`` at first, then doubling
        with jitter like the agent's re-sends), marked as sent again at ``now``."""
        late = []
        for key, sent in self._outstanding.items():
            backoff = self._backoff.get(key)
            if backoff is None:
                backoff = self._backoff[key] = Backoff(limit_s)
                backoff.sent(sent)
            if backoff.due(now):
                backoff.sent(now)
                late.append(key)
        for key in late:
            self._outstanding[key] = now
        return [self._request(k) for k in late]

    def restart(self) -> list[ChunkRequest]:
        """Every outstanding request again (after a reconnect)."""
        self._backoff.clear()
        return [self._request(k) for k in self._outstanding]

    def retry(self, sha256: str, index: int) -> None:
        """Make one outstanding request due at once (the manager answered ``busy``)."""
        if (sha256, index) in self._outstanding:
            self._outstanding[(sha256, index)] = 0.0
            self._backoff.pop((sha256, index), None)

    def mismatches(self) -> list[str]:
        """Names of the artifacts whose SHA-256 differs from the signed digest."""
        return [a.name for s, a in self._artifacts.items() if self._hashers[s].hexdigest() != s]
