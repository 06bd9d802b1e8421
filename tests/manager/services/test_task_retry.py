"""Which rows a task retry chooses (``manager.services.task_retry.choose``)."""

from __future__ import annotations

import pytest

from swarmdeploy.manager.errors import ConflictError, NotFoundError
from swarmdeploy.manager.services.task_retry import choose
from swarmdeploy.storage.records import TaskRecord, TaskTargetRecord


def _task(*, expires_at: int = 1000, stopped_at: int | None = None) -> TaskRecord:
    return TaskRecord(
        id="k1",
        description="",
        debug=False,
        descriptor={},
        created_at=0,
        expires_at=expires_at,
        created_by="alice",
        stopped_at=stopped_at,
    )


ROWS = [
    TaskTargetRecord("k1", "b", "build_failed", 1, role="build"),
    TaskTargetRecord("k1", "d1", "declined", 1, reason="no trust anchor"),
    TaskTargetRecord("k1", "d2", "install_failed", 1),
    TaskTargetRecord("k1", "d3", "running", 1),
    TaskTargetRecord("k1", "d4", "failed", 1),
]


def test_choose_without_targets_takes_every_retryable_deploy_row() -> None:
    assert [r.target_id for r in choose(_task(), ROWS, None, now_ms=5)] == ["d1", "d2"]


def test_choose_named_targets_once_each() -> None:
    chosen = choose(_task(), ROWS, ["d2", "d2"], now_ms=5)
    assert [r.target_id for r in chosen] == ["d2"]


@pytest.mark.parametrize(
    ("wanted", "words"),
    [(["d3"], "d3 is running"), (["d4"], "d4 is failed"), (["b"], "b is build_failed")],
)
def test_choose_refuses_a_target_in_another_state(wanted: list[str], words: str) -> None:
    with pytest.raises(ConflictError, match=words):
        choose(_task(), ROWS, wanted, now_ms=5)


def test_choose_unknown_target_is_not_found() -> None:
    with pytest.raises(NotFoundError, match="ghost"):
        choose(_task(), ROWS, ["d1", "ghost"], now_ms=5)


def test_choose_refuses_stopped_expired_and_nothing_to_do() -> None:
    with pytest.raises(ConflictError, match="stopped"):
        choose(_task(stopped_at=3), ROWS, None, now_ms=5)
    with pytest.raises(ConflictError, match="deadline"):
        choose(_task(expires_at=5), ROWS, None, now_ms=5)
    with pytest.raises(ConflictError, match="no target to retry"):
        choose(_task(), ROWS[3:4], None, now_ms=5)
