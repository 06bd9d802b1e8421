"""Log lines of the in-memory storage: filtering, sorting, retention."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence

from swarmdeploy.storage.common import fts_words
from swarmdeploy.storage.records import TERMINAL_TASK, LogQuery, LogRecord


class LogStore:
    """Log lines by id with their full-text words and the ``(target, seq)`` de-duplication set."""

    def __init__(self) -> None:
        self._rows: dict[int, LogRecord] = {}
        self._words: dict[int, frozenset[str]] = {}
        self._keys: set[tuple[str, int]] = set()
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, logs: Sequence[LogRecord]) -> int:
        """Store lines whose ``(target, seq)`` is new (``seq=None`` always); returns the count."""
        stored = 0
        for log in logs:
            if log.seq is not None:
                key = (log.target, log.seq)
                if key in self._keys:
                    continue
                self._keys.add(key)
            row_id = self._next_id
            self._next_id += 1
            self._rows[row_id] = dataclasses.replace(log, id=row_id)
            self._words[row_id] = frozenset(fts_words(log.output))
            stored += 1
        return stored

    def max_seq(self, target_id: str) -> int:
        """The highest stored ``seq`` of ``target_id``, 0 if none."""
        return max((seq for target, seq in self._keys if target == target_id), default=0)

    def _matches(self, log: LogRecord, query: LogQuery, words: set[str]) -> bool:
        checks = (
            query.target is None or log.target == query.target,
            query.task is None or log.task == query.task,
            query.stage is None or log.stage == query.stage,
            query.command is None or log.command == query.command,
            query.error is None or log.error == query.error,
            query.since is None or log.time >= query.since,
            query.until is None or log.time < query.until,
            query.terminal_stages is None
            or log.task != TERMINAL_TASK
            or log.stage in query.terminal_stages,
        )
        return all(checks) and words <= self._words[log.id or 0]

    def query(self, query: LogQuery) -> list[LogRecord]:
        """All lines matching ``query`` sorted by ``(sort_by, id)`` in ``sort_order``."""
        words = set(fts_words(query.output or ""))
        found = [log for log in self._rows.values() if self._matches(log, query, words)]
        field = query.sort_by
        found.sort(
            key=lambda log: (getattr(log, field), log.id), reverse=query.sort_order == "desc"
        )
        return found

    def _delete(self, ids: Iterator[int] | list[int]) -> int:
        count = 0
        for row_id in list(ids):
            log = self._rows.pop(row_id)
            del self._words[row_id]
            if log.seq is not None:
                self._keys.discard((log.target, log.seq))
            count += 1
        return count

    def delete_task(self, task_id: str) -> int:
        """Delete every line of ``task_id``; returns how many."""
        return self._delete([i for i, log in self._rows.items() if log.task == task_id])

    def purge(self, older_than: int | None, keep_rows: int | None) -> int:
        """Delete lines with ``time < older_than`` and all but the newest ``keep_rows`` lines
        (newest by ``(time, id)``); returns how many were deleted."""
        if keep_rows is not None and keep_rows < 0:
            raise ValueError(f"keep_rows must be >= 0, got {keep_rows}")
        deleted = 0
        if older_than is not None:
            deleted += self._delete([i for i, log in self._rows.items() if log.time < older_than])
        if keep_rows is not None and len(self._rows) > keep_rows:
            by_age = sorted(self._rows.items(), key=lambda kv: (kv[1].time, kv[0]))
            deleted += self._delete([i for i, _ in by_age[: len(by_age) - keep_rows]])
        return deleted
