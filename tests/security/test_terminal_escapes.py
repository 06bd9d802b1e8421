"""Terminal escape injection (issue 9, item 2): strings from the API reach the operator's
terminal escaped, and registration refuses control characters in names and tags."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from swarmdeploy.cli.app import main
from swarmdeploy.cli.render import Renderer
from swarmdeploy.client import ManagerClient
from tests.cli.manager_proc import free_port, running_manager
from tests.manager.conftest import Api, device_body

#: Clear screen, an OSC 8 hyperlink, an OSC 52 clipboard write, a title, C1 CSI, bidi override.
EVIL = (
    "X-\x1b[2J\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\"
    "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;title\x07\x9b31m\u202eexe.txt"
)
RAW = ("\x1b", "\x07", "\x9b", "\u202e")


def _printed(output: str, doc: dict[str, object], columns: list[str]) -> str:
    buffer = io.StringIO()
    renderer = Renderer(output, Console(file=buffer, force_terminal=True, soft_wrap=True))
    renderer.listing(doc, columns)
    renderer.document(doc["items"][0])  # type: ignore[index]
    renderer.message(f"created task {EVIL}")
    return buffer.getvalue()


@pytest.mark.parametrize("output", ["table", "json"])
def test_device_output_in_a_log_listing_is_shown_escaped(output: str) -> None:
    line = {"time": 1, "target": "dev", "task": EVIL, "stage": "run", "command": "$agent",
            "output": EVIL, "error": False}  # fmt: skip
    text = _printed(output, {"items": [line], "total": 1, "page": 1, "perPage": 1},
                    ["time", "task", "output"])  # fmt: skip
    # rich's own colours are SGR sequences ESC [ ... m; nothing else may appear
    without_styles = re.sub("\x1b\\[[0-9;]*m", "", text)
    for char in RAW:
        assert char not in without_styles, (output, repr(char))
    assert "\\x1b]8;;http://evil.example/" in text or "\\u001b]8;;http://evil" in text


def test_task_description_is_escaped_by_the_real_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    with running_manager(tmp_path / "data", *ports) as (base, key):
        with ManagerClient(base, key) as client:
            token = client.request("POST", "/token_sets", params={"name": "s", "total": 1})
            client.request("POST", "/rpc/targets", json=device_body("dev-1", tags=["lab"]),
                           headers={"X-Auth-Token": token["tokens"][0]})  # fmt: skip
            doc = {"description": EVIL, "deploy": {"run": {"commands": ["./a"]},
                                                  "target": {"tags": ["lab"]}}}  # fmt: skip
            client.request("POST", "/tasks", json=doc)
        for args in (["tasks", "list"], ["-o", "json", "tasks", "list"]):
            assert main(["--url", base, "--api-key", key, *args]) == 0
            out = capsys.readouterr().out
            for char in RAW:
                assert char not in out, (args, repr(char))
            assert "2J" in out  # shown, as an escape


@pytest.mark.parametrize("name", ["a\x1b[2Jb", "line\nbreak", "del\x7f", "c1\x9b", "bidi\u202e"])
async def test_registration_refuses_control_characters_in_the_name(api: Api, name: str) -> None:
    token = (await api.tokens(1))[0]
    body = {**device_body("dev-1"), "name": name}
    resp = await api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
    assert resp.status_code == 422, resp.text
    assert resp.json()["path"] == "$.name"
    assert "control and bidi characters are not allowed" in resp.json()["error"]


async def test_registration_refuses_control_characters_in_tags(api: Api) -> None:
    token = (await api.tokens(1))[0]
    body = {**device_body("dev-1"), "tags": ["ok", "x\x1b]0;t\x07"]}
    resp = await api.client.post("/rpc/targets", json=body, headers={"X-Auth-Token": token})
    assert resp.status_code == 422 and resp.json()["path"] == "$.tags[1]"


async def test_operator_cannot_set_a_name_with_control_characters(api: Api) -> None:
    await api.add_targets(["dev-1"])
    resp = await api.client.put("/targets/dev-1", json={"name": "a\u202eb"})
    assert resp.status_code == 422 and resp.json()["path"] == "$.name"
    ok = await api.client.put("/targets/dev-1", json={"name": "Hall 3 / Gerät ünï"})
    assert ok.status_code == 200 and ok.json()["name"] == "Hall 3 / Gerät ünï"
