"""The operator CLI against a real manager process on loopback."""

from __future__ import annotations

import base64
import json
import pathlib
from collections.abc import Iterator

import pytest

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


def test_tokens_create_json_prints_api_document(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    rc, out, _ = _run(capsys, manager, "-o", "json", "tokens", "create", "cli-set", "--total", "2")
    assert rc == 0
    doc = json.loads(out)
    assert doc["name"] == "cli-set" and len(doc["tokens"]) == 2
    rc, out, _ = _run(capsys, manager, "tokens", "list")
    assert rc == 0 and "cli-set" in out


def test_task_create_from_yaml_file_then_show(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    base, _ = manager
    rc, out, _ = _run(capsys, manager, "-o", "json", "tokens", "create", "cli-task", "--total", "1")
    token = json.loads(out)["tokens"][0]
    import nacl.signing
    import zmq

    public, _ = zmq.curve_keypair()
    identity = nacl.signing.SigningKey.generate().verify_key.encode()
    with ManagerClient(base, None) as anon:
        anon.request(
            "POST",
            "/rpc/targets",
            json={
                "id": "cli-dev",
                "tags": ["cli"],
                "publicKey": public.decode(),
                "identityKey": base64.b64encode(identity).decode(),
            },
            headers={"X-Auth-Token": token},
        )
    desc = tmp_path / "task.yml"
    desc.write_text("deploy:\n  run:\n    commands: [./app]\n  target:\n    tags: [cli]\n")
    rc, out, err = _run(capsys, manager, "tasks", "create", str(desc))
    assert rc == 0, err
    task_id = out.split()[-1]
    rc, out, _ = _run(capsys, manager, "-o", "json", "tasks", "show", task_id)
    doc = json.loads(out)
    assert [t["id"] for t in doc["targets"]] == ["cli-dev"]
    rc, out, _ = _run(capsys, manager, "targets", "update", "cli-dev", "--tags", "cli,new")
    assert rc == 0
    rc, out, _ = _run(capsys, manager, "-o", "json", "targets", "show", "cli-dev")
    assert json.loads(out)["tags"] == ["cli", "new"]
    rc, out, _ = _run(capsys, manager, "targets", "list")
    assert rc == 0 and "trust" in out and "cli-dev" in out  # no health report yet: "-"


def test_invalid_descriptor_exit_1_names_field(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    desc = tmp_path / "bad.yml"
    desc.write_text("deploy:\n  run:\n    comands: [x]\n  target:\n    ids: [a]\n")
    rc, _, err = _run(capsys, manager, "tasks", "create", str(desc))
    assert rc == 1
    assert "comands" in err and "$.deploy.run" in err


def test_wrong_key_exit_1_with_401(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    base, _ = manager
    rc = main(["--url", base, "--api-key", "wrong", "targets", "list"])
    assert rc == 1
    assert "401" in capsys.readouterr().err


def test_unreachable_manager_exit_1_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["--url", f"http://127.0.0.1:{free_port()}", "targets", "list"])
    assert rc == 1
    assert "cannot reach the manager" in capsys.readouterr().err


def test_bad_output_option_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-o", "xml", "targets", "list"]) == 2


def test_artifact_download_of_unknown_digest_exit_1_leaves_no_file(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    dest = tmp_path / "a.tar.gz"
    rc, _, err = _run(capsys, manager, "artifacts", "download", "0" * 64, "-o", str(dest))
    assert rc == 1 and "404" in err and "no build produced" in err
    assert list(tmp_path.iterdir()) == []
    rc, out, _ = _run(capsys, manager, "-o", "json", "artifacts", "list", "--task", "nobody")
    assert rc == 0 and json.loads(out)["total"] == 0


def test_task_create_with_archive_sends_multipart_and_names_the_problem(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    desc = tmp_path / "task.yml"
    desc.write_text("source: {zip: UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==}\ndeploy:\n  run:\n"
                    "    commands: [./app]\n  target:\n    tags: [cli]\n")  # fmt: skip
    archive = tmp_path / "src.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))
    rc, _, err = _run(capsys, manager, "tasks", "create", str(desc), "--archive", str(archive))
    assert rc == 1 and "remove source.zip" in err and "$.source.zip" in err
    missing = tmp_path / "missing.zip"
    rc, _, err = _run(capsys, manager, "tasks", "create", str(desc), "--archive", str(missing))
    assert rc == 2 and "cannot read" in err


def test_signing_keys_create_export_and_revoke(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    rc, out, err = _run(capsys, manager, "-o", "json", "keys", "signing-create", "--name", "ops")
    assert rc == 0, err
    key = json.loads(out)
    rc, out, _ = _run(capsys, manager, "-o", "json", "keys", "signing-list")
    assert rc == 0 and key["id"] in [k["id"] for k in json.loads(out)["items"]]
    dest = tmp_path / "ops.key"
    args = ["keys", "signing-export", key["id"], "--private", "--out", str(dest)]
    rc, out, err = _run(capsys, manager, *args, "--passphrase", "a long passphrase")
    assert rc == 0, err
    assert dest.read_text().startswith("-----BEGIN SWARMDEPLOY ENCRYPTED KEY-----")
    assert dest.stat().st_mode & 0o077 == 0 and "BEGIN" not in out
    rc, _, err = _run(capsys, manager, "keys", "signing-revoke", key["id"])
    assert rc == 0, err
    rc, out, _ = _run(capsys, manager, "-o", "json", "keys", "signing-export", key["id"])
    assert json.loads(out)["revokedAt"] is not None


def test_apps_list_show_and_device(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    standing = {
        "app": "cli-detector",
        "version": "2.3",
        "deploy": {
            "run": {"commands": ["true"]},
            "target": {"tags": ["nobody-yet"], "follow": True},
        },
    }
    base, key = manager
    with ManagerClient(base, key) as client:
        task = client.request("POST", "/tasks", json=standing)["id"]
    rc, out, _ = _run(capsys, manager, "-o", "json", "apps", "list")
    assert rc == 0
    names = {a["name"]: a for a in json.loads(out)["items"]}
    assert names["cli-detector"]["latest"]["taskId"] == task
    assert names["cli-detector"]["devices"] == 0
    rc, out, _ = _run(capsys, manager, "-o", "json", "apps", "show", "cli-detector")
    assert rc == 0
    doc = json.loads(out)
    assert [(r["taskId"], r["version"], r["standing"]) for r in doc["releases"]] == [
        (task, "2.3", True)
    ]
    assert doc["devices"] == []
    rc, out, _ = _run(capsys, manager, "apps", "show", "cli-detector")
    assert rc == 0 and "release" in out
    rc, _, err = _run(capsys, manager, "apps", "show", "no-such-app")
    assert rc == 1 and "no releases" in err
    rc, _, err = _run(capsys, manager, "apps", "device", "no-such-device")
    assert rc == 1 and "not found" in err
