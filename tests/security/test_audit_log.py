"""The audit log (issue 9, item 10): kept apart from task logs, never deleted with a task,
hash-chained so that ``swarmdeploy audit verify`` finds a removed or edited entry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from swarmdeploy.cli.app import main
from swarmdeploy.client import ManagerClient
from tests.cli.manager_proc import free_port, running_manager
from tests.manager.conftest import Api


async def test_deleting_a_task_keeps_who_stopped_and_deleted_it(api: Api) -> None:
    await api.add_targets(["dev-1"])
    alice = await api.headers_for("operator", name="alice")
    doc = {"description": "x", "deploy": {"run": {"commands": ["./app"]},
                                          "target": {"ids": ["dev-1"]}}}  # fmt: skip
    task_id = (await api.client.post("/tasks", json=doc, headers=alice)).json()["id"]
    assert (await api.client.put(f"/tasks/{task_id}/stop", headers=alice)).status_code == 202
    assert (await api.client.delete(f"/tasks/{task_id}", headers=alice)).status_code == 204
    assert (await api.client.get("/logs", params={"task": task_id})).json()["total"] == 0
    entries = (await api.client.get("/audit")).json()["items"]
    done = [(e["action"], e["target"]) for e in entries if "key alice" in e["actor"]]
    assert done == [("task.stop", task_id), ("task.delete", task_id)]


async def test_newline_in_a_terminal_command_forges_no_row(api: Api) -> None:
    await api.add_targets(["dev-1"])
    forged = "uptime\n2026-01-01T00:00:00.000+00:00 dev-1 terminal - $manager | all fine"
    resp = await api.client.put("/targets/dev-1/command", json={"command": forged})
    assert resp.status_code == 202, resp.text
    dump = await api.client.get("/logs", headers={"Accept": "text/plain"})
    assert len(dump.text.splitlines()) == 2  # the header and the one pointer line
    entries = (await api.client.get("/audit")).json()["items"]
    assert entries[-1]["details"]["command"] == forged  # kept exactly, in one entry


async def test_audit_needs_the_admin_role(api: Api) -> None:
    operator = await api.headers_for("operator")
    assert (await api.client.get("/audit", headers=operator)).status_code == 403


def _verify(capsys: pytest.CaptureFixture[str], base: str, key: str, *args: str) -> tuple[int, str]:
    rc = main(["--url", base, "--api-key", key, "audit", "verify", *args])
    return rc, capsys.readouterr().out


def test_audit_verify_finds_an_edited_and_a_removed_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    ports = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    with running_manager(data, *ports) as (base, key):
        with ManagerClient(base, key) as client:
            for name in ("a", "b", "c", "d"):
                client.request("POST", "/token_sets", params={"name": name, "total": 1})
        rc, out = _verify(capsys, base, key)
        assert rc == 0 and "intact: 4 entries" in out
        head = out.rsplit("head ", 1)[1].strip()
        db = sqlite3.connect(data / "swarmdeploy.db")
        with db:
            db.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
        rc, out = _verify(capsys, base, key)
        assert rc == 3 and "BROKEN at entry 2" in out and "changed" in out
        with db:
            db.execute("DELETE FROM audit_log WHERE seq = 2")
        rc, out = _verify(capsys, base, key)
        assert rc == 3 and "BROKEN at entry 2" in out and "missing" in out
        with db:
            db.execute("DELETE FROM audit_log WHERE seq >= 2")  # cut the tail
        rc, out = _verify(capsys, base, key)
        assert rc == 0  # a cut tail leaves a valid chain ...
        rc, out = _verify(capsys, base, key, "--expect-head", head)
        assert rc == 3 and "BROKEN at entry 4" in out  # ... but not the noted head
        db.close()
