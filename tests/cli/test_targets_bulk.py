"""``targets update`` on a selection (``POST /targets/bulk``), ``-o json`` in every position
and ``targets show`` against a real manager process; targets are registered over the real
``POST /rpc/targets`` with fresh keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import nacl.signing
import pytest
import zmq

from swarmdeploy.cli.app import main
from swarmdeploy.client import ApiError, ManagerClient
from tests.cli.manager_proc import free_port, running_manager

DEVICES = {"bulk-a": ["lab", "pi"], "bulk-b": ["lab"], "bulk-c": ["field"], "other-d": ["lab"]}


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    ports = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port()), "--no-gui"]
    with running_manager(tmp_path_factory.mktemp("bulk"), *ports) as (base, key):
        with ManagerClient(base, key) as admin:
            tokens = admin.request("POST", "/token_sets", params={"name": "b", "total": 4})
        with ManagerClient(base, None) as anon:
            for (device, tags), token in zip(DEVICES.items(), tokens["tokens"], strict=True):
                public, _ = zmq.curve_keypair()
                identity = nacl.signing.SigningKey.generate().verify_key.encode()
                body = {"id": device, "tags": tags, "publicKey": public.decode(),
                        "identityKey": base64.b64encode(identity).decode()}  # fmt: skip
                anon.request("POST", "/rpc/targets", json=body, headers={"X-Auth-Token": token})
        yield base, key


@pytest.fixture(autouse=True)
def reset_tags(manager: tuple[str, str]) -> None:
    with ManagerClient(*manager) as admin:
        for device, tags in DEVICES.items():
            admin.request("PUT", f"/targets/{device}", json={"tags": tags})


def _run(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], *args: str
) -> tuple[int, str, str]:
    base, key = manager
    rc = main(["--url", base, "--api-key", key, *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _tags(manager: tuple[str, str]) -> dict[str, list[str]]:
    with ManagerClient(*manager) as admin:
        items = admin.request("GET", "/targets", params={"perPage": 100})["items"]
    return {t["id"]: t["tags"] for t in items}


@pytest.mark.parametrize(
    "position",
    [
        ["-o", "json", "targets", "list", "--tag", "lab"],
        ["targets", "-o", "json", "list", "--tag", "lab"],
        ["targets", "list", "-o", "json", "--tag", "lab"],
        ["targets", "list", "--tag", "lab", "-o", "json"],
        ["targets", "list", "--tag", "lab", "--output=json"],
        ["--output", "table", "targets", "list", "--tag", "lab", "-ojson"],
    ],
)
def test_output_json_in_every_position_prints_the_api_document(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], position: list[str]
) -> None:
    rc, out, err = _run(capsys, manager, *position)
    assert rc == 0, err
    doc = json.loads(out)
    with ManagerClient(*manager) as admin:
        assert doc == admin.request("GET", "/targets", params={"tags": "lab"})


def test_bulk_add_and_remove_by_tag_matches_the_list_filter(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    rc, out, _ = _run(capsys, manager, "-o", "json", "targets", "list", "--tag", "lab",
                      "--search", "bulk")  # fmt: skip
    listed = sorted(t["id"] for t in json.loads(out)["items"])
    args = ["targets", "update", "--tag", "lab", "--all-matching", "bulk"]
    rc, out, err = _run(capsys, manager, *args, "--add-tags", "canary", "--remove-tags", "pi",
                        "-o", "json")  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["matched"] == 2 and sorted(doc["ids"]) == listed == ["bulk-a", "bulk-b"]
    tags = _tags(manager)
    assert tags["bulk-a"] == ["lab", "canary"] and tags["bulk-b"] == ["lab", "canary"]
    assert tags["other-d"] == ["lab"] and tags["bulk-c"] == ["field"]
    rc, out, _ = _run(capsys, manager, *args, "--add-tags", "canary")  # nothing to change
    assert rc == 0 and "2 target(s) selected, 0 changed" in out
    with ManagerClient(*manager) as admin:
        audit = admin.request("GET", "/audit", params={"perPage": 1000})["items"]
    assert any(e["action"] == "target.bulk_update" for e in audit)


def test_bulk_by_ids_set_tags_location_and_missing_ids(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    rc, out, err = _run(capsys, manager, "-o", "json", "targets", "update", "--ids",
                        "bulk-a,bulk-c,nope", "--set-tags", "x,y", "--location",
                        "48.1,11.5")  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["missing"] == ["nope"] and sorted(doc["ids"]) == ["bulk-a", "bulk-c"]
    with ManagerClient(*manager) as admin:
        a = admin.request("GET", "/targets/bulk-a")
    assert a["tags"] == ["x", "y"] and a["location"] == {"lat": 48.1, "lon": 11.5}


def test_clear_location_of_one_target_and_of_a_selection(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    def locations() -> dict[str, object]:
        with ManagerClient(*manager) as admin:
            items = admin.request("GET", "/targets", params={"perPage": 100})["items"]
        return {t["id"]: t.get("location") for t in items}

    rc, _, err = _run(capsys, manager, "targets", "update", "--ids", "bulk-a,bulk-b,bulk-c",
                      "--location", "48.1,11.5")  # fmt: skip
    assert rc == 0, err
    rc, _, err = _run(capsys, manager, "targets", "update", "bulk-c", "--clear-location")
    assert rc == 0, err
    assert locations()["bulk-c"] is None and locations()["bulk-a"] is not None
    rc, out, err = _run(capsys, manager, "targets", "update", "--tag", "lab",
                        "--all-matching", "bulk", "--clear-location")  # fmt: skip
    assert rc == 0 and "2 target(s) selected, 2 changed" in out, (out, err)
    assert locations()["bulk-a"] is None and locations()["bulk-b"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bulk-a", "--location", "1,2", "--clear-location"], "not both"),
        (["bulk-a", "--tags", ""], "--clear-tags"),
        (["--tag", "lab", "--set-tags", " , "], "--clear-tags"),
        (["--add-tags", "x"], "select targets"),
        (["--all-matching", "", "--add-tags", "x"], "every target"),
        (["bulk-a", "--tag", "lab", "--add-tags", "x"], "not both"),
        (["--tag", "lab"], "give at least one"),
        (["--tag", "lab", "--location", "91,0"], "latitude"),
        (["--tag", "lab", "--set-tags", "a", "--add-tags", "b"], "replaces"),
    ],
)
def test_bad_updates_refused_with_one_line_and_nothing_changes(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str], args: list[str], message: str
) -> None:
    before = _tags(manager)
    rc, _, err = _run(capsys, manager, "targets", "update", *args)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert _tags(manager) == before


def test_bulk_endpoint_refuses_viewer_and_empty_selection(manager: tuple[str, str]) -> None:
    base, key = manager
    with ManagerClient(base, key) as admin:
        viewer = admin.request("POST", "/api_keys", json={"name": "v", "role": "viewer"})
        with pytest.raises(ApiError) as empty:
            admin.request("POST", "/targets/bulk", json={"selection": {}, "addTags": ["x"]})
    assert empty.value.status == 422 and "every target" in empty.value.message
    with ManagerClient(base, viewer["key"]) as client, pytest.raises(ApiError) as refused:
        client.request("POST", "/targets/bulk",
                       json={"selection": {"tags": "lab"}, "addTags": ["x"]})  # fmt: skip
    assert refused.value.status == 403


def test_single_target_update_keeps_the_target_document(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    rc, out, err = _run(capsys, manager, "targets", "update", "bulk-b", "--name", "Bee",
                        "--tags", "one,two", "-o", "json")  # fmt: skip
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["id"] == "bulk-b" and doc["name"] == "Bee" and doc["tags"] == ["one", "two"]
    rc, out, err = _run(capsys, manager, "targets", "update", "bulk-b", "--add-tags", "three")
    assert rc == 0 and _tags(manager)["bulk-b"] == ["one", "two", "three"], err


def test_targets_show_is_a_readable_table_without_raw_keys(
    capsys: pytest.CaptureFixture[str], manager: tuple[str, str]
) -> None:
    rc, out, err = _run(capsys, manager, "targets", "show", "bulk-a")
    assert rc == 0, err
    for label in ("OS", "architecture", "agent version", "transport", "trust", "health"):
        assert label in out
    assert "__extra__" not in out and "publicKey" not in out
    rc, _, err = _run(capsys, manager, "targets", "show", "nope")
    assert rc == 1 and "404" in err and len(err.strip().splitlines()) == 1
