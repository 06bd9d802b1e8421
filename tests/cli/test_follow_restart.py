"""``tasks watch`` across a manager restart, with real processes: the ``/events`` stream
drops, the follower waits for the manager, reopens the stream and ends when the device
(started only after the restart) has installed the task."""

from __future__ import annotations

import pathlib
import threading
from typing import Any

import pytest

from swarmdeploy.cli.live import follow_task
from swarmdeploy.client import ManagerClient
from swarmdeploy.client.progress import Progress
from swarmdeploy.client.stream import EventStream
from swarmdeploy.localfleet import LocalFleet, wait_for

pytestmark = pytest.mark.e2e

FAST_AGENT = ["--log-batch-s", "0.3", "--resend-s", "2", "--stop-grace-s", "2"]
FAST_AGENT += ["--reconnect-ivl-s", "0.1", "--reconnect-ivl-max-s", "1"]


def test_watch_reconnects_after_a_manager_restart(tmp_path: pathlib.Path) -> None:
    with LocalFleet(tmp_path, agent_args=FAST_AGENT) as fleet:
        fleet.start_manager()
        fleet.start_agent("r1", token=fleet.tokens("r", 1)[0])
        fleet.wait_online(["r1"])
        fleet.stop_agent("r1")
        body = {"deploy": {"install": {"commands": ["true"]}, "target": {"ids": ["r1"]}}}
        task_id = fleet.api.request("POST", "/tasks", json=body)["id"]
        seen: list[Progress] = []
        result: dict[str, Any] = {}
        client = ManagerClient(fleet.url, fleet.admin_key)
        stream = EventStream(client, {"topics": "taskUpdated,taskDeleted", "task": task_id})

        def run() -> None:
            try:  # poll_s far away: the end must come through the reopened stream
                result["end"] = follow_task(client, task_id, lambda d, p: seen.append(p),
                                            poll_s=600, timeout_s=120, stream=stream)  # fmt: skip
            except Exception as exc:  # handed to the test thread
                result["error"] = exc

        follower = threading.Thread(target=run)
        follower.start()
        try:
            wait_for(lambda: bool(seen), timeout_s=30, what="the first reading")
            fleet.stop_manager()
            fleet.start_manager()
            wait_for(lambda: stream.reconnects >= 1, timeout_s=30, what="the stream reopened")
            fleet.start_agent("r1")
            follower.join(timeout=90)
            assert not follower.is_alive(), "the follower did not end"
            assert "error" not in result, result.get("error")
            _, now, timed_out = result["end"]
            assert not timed_out and now.all_succeeded, now
        finally:
            stream.close()
            client.close()
            follower.join(timeout=5)
