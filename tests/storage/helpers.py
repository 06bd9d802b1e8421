"""Record builders shared by the storage tests."""

from __future__ import annotations

from swarmdeploy.storage import Storage
from swarmdeploy.storage.records import LogRecord, TargetRecord, TaskRecord, TaskTargetRecord


def target(target_id: str, *, tags: tuple[str, ...] = (), name: str = "") -> TargetRecord:
    """A target with keys derived from its id."""
    return TargetRecord(
        id=target_id,
        curve_key=f"curve-{target_id}",
        identity_key=f"ident-{target_id}",
        created_at=1000,
        updated_at=1000,
        name=name,
        tags=tags,
    )


async def add_target(storage: Storage, record: TargetRecord, *, now: int = 1000) -> TargetRecord:
    """Register ``record`` through a one-token set of its own."""
    token = f"tok-{record.id}-{now}".encode()
    await storage.create_token_set(
        f"set-{record.id}-{now}", [token], created_at=now, expires_at=now + 10_000
    )
    return await storage.register_target(token, record, now=now)


def task(
    task_id: str, *, created_at: int = 1000, description: str = "", expires_at: int = 10**12
) -> TaskRecord:
    """A task with a small descriptor."""
    return TaskRecord(
        id=task_id,
        description=description or f"task {task_id}",
        debug=False,
        descriptor={"deploy": {"install": {"commands": ["true"]}}},
        created_at=created_at,
        expires_at=expires_at,
    )


def row(
    task_id: str, target_id: str, state: str = "pending", role: str = "deploy"
) -> TaskTargetRecord:
    """A per-target row."""
    assert role in ("deploy", "build")
    return TaskTargetRecord(
        task_id=task_id,
        target_id=target_id,
        state=state,
        updated_at=1000,
        role="build" if role == "build" else "deploy",
    )


def line(
    output: str,
    *,
    time: int = 1000,
    target_id: str = "t1",
    task_id: str = "k1",
    stage: str = "install",
    command: str = "make",
    error: bool = False,
    seq: int | None = None,
) -> LogRecord:
    """A log line."""
    return LogRecord(
        time=time,
        target=target_id,
        task=task_id,
        stage=stage,
        command=command,
        output=output,
        error=error,
        seq=seq,
    )
