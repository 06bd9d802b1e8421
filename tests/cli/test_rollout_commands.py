"""``swarmdeploy tasks pause|resume|abort`` against a real manager process on loopback."""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Iterator

import nacl.signing
import pytest
import zmq

from swarmdeploy.cli.app import main
from swarmdeploy.client import ManagerClient
from tests.cli.manager_proc import free_port, running_manager


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    data_dir = tmp_path_factory.mktemp("manager")
    ports = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    with running_manager(data_dir, *ports) as running:
        yield running


def _run(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], *args: str
) -> tuple[int, str, str]:
    base, key = manager
    rc = main(["--url", base, "--api-key", key, *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _register(manager: tuple[str, str], target_id: str, token: str) -> None:
    public, _ = zmq.curve_keypair()
    identity = nacl.signing.SigningKey.generate().verify_key.encode()
    with ManagerClient(manager[0], None) as anon:
        anon.request(
            "POST",
            "/rpc/targets",
            json={
                "id": target_id,
                "tags": ["staged"],
                "publicKey": public.decode(),
                "identityKey": base64.b64encode(identity).decode(),
            },
            headers={"X-Auth-Token": token},
        )


def test_pause_resume_abort_of_a_staged_rollout(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    rc, out, _ = _run(capsys, manager, "-o", "json", "tokens", "create", "staged", "--total", "3")
    assert rc == 0
    for i, token in enumerate(json.loads(out)["tokens"]):
        _register(manager, f"staged-{i}", token)
    desc = tmp_path / "task.yml"
    desc.write_text(
        "deploy:\n  run:\n    commands: [./app]\n  target:\n    tags: [staged]\n"
        "rollout:\n  groups:\n    - count: 1\n      errorThreshold: 0\n    - {}\n"
    )
    rc, out, err = _run(capsys, manager, "tasks", "create", str(desc))
    assert rc == 0, err
    task_id = out.split()[-1]

    rc, out, err = _run(capsys, manager, "tasks", "pause", task_id)
    assert rc == 0, err
    assert out.strip() == f"rollout of task {task_id}: paused, group 1 of 2"
    rc, _, err = _run(capsys, manager, "tasks", "pause", task_id)
    assert rc == 1 and "not running" in err
    rc, out, err = _run(capsys, manager, "tasks", "resume", task_id)
    assert rc == 0 and "running, group 1 of 2" in out, err
    rc, out, err = _run(capsys, manager, "-o", "json", "tasks", "abort", task_id)
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["rollout"]["state"] == "aborted"
    later = [t for t in doc["targets"] if t["id"] != "staged-0"]
    assert {t["state"] for t in later} == {"stopped"}

    rc, _, err = _run(capsys, manager, "tasks", "abort", "no-such-task-0000")
    assert rc == 1 and "not found" in err


def test_rollback_of_a_release_no_device_got_says_why(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    rc, out, _ = _run(capsys, manager, "-o", "json", "tokens", "create", "back", "--total", "1")
    assert rc == 0
    _register(manager, "back-0", json.loads(out)["tokens"][0])
    desc = tmp_path / "task.yml"
    desc.write_text("app: tool\ndeploy:\n  run: {commands: [./tool]}\n  target: {ids: [back-0]}\n")
    rc, out, err = _run(capsys, manager, "tasks", "create", str(desc))
    assert rc == 0, err
    task_id = out.split()[-1]
    rc, out, err = _run(capsys, manager, "tasks", "rollback", task_id)
    assert rc == 1 and out == ""
    assert f"no device got the release of task {task_id}" in err
    rc, _, err = _run(capsys, manager, "tasks", "rollback", "no-such-task-0000")
    assert rc == 1 and "not found" in err
