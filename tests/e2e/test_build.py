"""Build tasks through real processes (issue 4, seed 003 CRD-103/104/105): a C program built
on a builder agent and deployed to two ``armhf`` agents, failures, reuse of an earlier build,
an offline build host, and the build package surviving a manager restart mid-upload."""

from __future__ import annotations

import json
import pathlib
import signal
import tarfile
import zipfile
from typing import Any

import pytest
import yaml

from swarmdeploy.cli.app import main as cli
from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import zip_b64

pytestmark = pytest.mark.e2e

HELLO_C = r"""#include <stdio.h>
#include <sys/utsname.h>
int main(void) {
    struct utsname u;
    uname(&u);
    printf("hello from a cross-built binary on %s\n", u.nodename[0] ? "target" : "?");
    return 0;
}
"""

COUNT_C = r"""#include <stdio.h>
int main(void) {
    for (int i = 1; i <= 3; i++) printf("count %d\n", i);
    return 0;
}
"""

BROKEN_C = "int main(void) { return missing_symbol }\n"


def _start(fleet: LocalFleet, ids_tags: dict[str, list[str]]) -> None:
    tokens = fleet.tokens("build", len(ids_tags))
    for (agent_id, tags), token in zip(ids_tags.items(), tokens, strict=True):
        fleet.start_agent(agent_id, token=token, tags=tags)
    fleet.wait_online(list(ids_tags))


FLEET = {"builder": ["x86-64-gcc"], "pi-1": ["armhf"], "pi-2": ["armhf"]}


def _post(fleet: LocalFleet, descriptor: dict[str, Any]) -> str:
    return str(fleet.api.request("POST", "/tasks", json=descriptor)["id"])


def _build_state(fleet: LocalFleet, task_id: str) -> dict[str, Any]:
    build: dict[str, Any] = fleet.task(task_id)["build"]
    return build


def _wait_build(fleet: LocalFleet, task_id: str, state: str, timeout_s: float = 60) -> None:
    def reached() -> bool:
        build = _build_state(fleet, task_id)
        assert build["state"] not in {"built", "build_failed", "declined"} - {state}, build
        return bool(build["state"] == state)

    wait_for(reached, timeout_s=timeout_s, what=f"build of {task_id} {state}")


def _outputs(fleet: LocalFleet, **filters: str) -> list[tuple[str, str]]:
    return [(x["target"], x["output"]) for x in fleet.logs(**filters)]


def _cli(fleet: LocalFleet, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    rc = cli(["--url", fleet.url, f"--api-key={fleet.admin_key}", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_c_program_built_on_builder_runs_on_armhf_targets_then_is_redeployed(
    fleet: LocalFleet, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _start(fleet, FLEET)
    archive = tmp_path / "src.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("src/hello.c", HELLO_C)
    descriptor = tmp_path / "build.yml"
    descriptor.write_text(
        yaml.safe_dump(
            {
                "description": "hello for armhf",
                "debug": True,
                "build": {
                    "host": "builder",
                    "commands": ["mkdir -p out", "gcc -O2 -o out/hello src/hello.c"],
                    "artifacts": ["out/hello"],
                },
                "deploy": {"run": {"commands": ["./out/hello"]}, "target": {"tags": ["armhf"]}},
            }
        )
    )
    args = ["-o", "json", "tasks", "create", str(descriptor), "--archive", str(archive)]
    created = json.loads(_cli(fleet, capsys, *args))
    task = created["id"]
    assert created["source"]["size"] == archive.stat().st_size  # multipart, no base64
    fleet.wait_states(task, {"pi-1": "exited", "pi-2": "exited"})
    build = _build_state(fleet, task)
    assert build["state"] == "built" and build["durationMs"] >= 0
    assert build["startedAt"] <= build["finishedAt"]
    (artifact,) = build["artifacts"]

    def ran_everywhere() -> bool:
        lines = _outputs(fleet, task=task, stage="run")
        return {t for t, out in lines if out.startswith("hello from a cross-built")} == {
            "pi-1", "pi-2"
        }  # fmt: skip

    wait_for(ran_everywhere, timeout_s=20, what="the binary's output from both targets")
    assert not (fleet.agent_dir("builder") / "tasks" / task).exists()  # build dir cleaned

    listed = json.loads(_cli(fleet, capsys, "-o", "json", "artifacts", "list", "--task", task))
    assert [(a["sha256"], a["buildHost"]) for a in listed["items"]] == [
        (artifact["sha256"], "builder")
    ]
    saved = tmp_path / "hello.tar.gz"
    _cli(fleet, capsys, "artifacts", "download", artifact["sha256"], "-o", str(saved))
    with tarfile.open(saved, "r:gz") as tf:
        binary = tf.extractfile("out/hello")
        assert binary is not None and binary.read(4) == b"\x7fELF"

    again = _post(
        fleet,
        {
            "source": {"order": task},
            "deploy": {"run": {"commands": ["./out/hello"]}, "target": {"ids": ["pi-2"]}},
        },
    )
    fleet.wait_states(again, {"pi-2": "exited"})
    redeployed = fleet.task(again)
    assert redeployed["build"] is None and [t["id"] for t in redeployed["targets"]] == ["pi-2"]
    assert not [x for x in fleet.logs(task=again) if x["target"] == "builder"]  # no rebuild


def test_original_zip_build_and_deploy_shape_with_c_payload(fleet: LocalFleet) -> None:
    _start(fleet, FLEET)
    order = {
        "source": {"zip": zip_b64({"package/count_to_three.c": COUNT_C})},
        "build": {
            "commands": ["gcc -o count_to_three package/count_to_three.c"],
            "artifacts": ["count_to_three"],
            "host": "builder",
        },
        "deploy": {
            "install": {"commands": ["chmod +x count_to_three"]},
            "run": {"commands": ["./count_to_three"]},
            "target": {"ids": None, "tags": ["armhf"]},
        },
        "debug": True,
    }
    text = yaml.safe_dump(order)  # the original's document, posted as it was to /orders
    task = fleet.api.request("POST", "/orders", content=text.encode())["id"]
    fleet.wait_states(task, {"pi-1": "exited", "pi-2": "exited"})

    def counted() -> bool:
        lines = _outputs(fleet, task=task, stage="run")
        return sum(out == "count 3" for _, out in lines) == 2

    wait_for(counted, timeout_s=20, what="count 3 from both targets")
    # A second build on the same host starts from a clean directory: nothing of the first.
    second = _post(
        fleet,
        {
            "source": {"zip": zip_b64({"package/count_to_three.c": COUNT_C})},
            "build": {
                "host": "builder",
                "commands": [
                    'test "$(ls -A)" = package',
                    "touch leaked-from-build && gcc -o c package/count_to_three.c",
                ],
                "artifacts": ["c"],
            },
            "deploy": {"run": {"commands": ["./c"]}, "target": {"ids": ["pi-1"]}},
        },
    )
    fleet.wait_states(second, {"pi-1": "exited"})
    assert fleet.task(task)["status"] == "succeeded"


def test_compiler_error_fails_the_task_deploys_nothing_logs_the_compiler(
    fleet: LocalFleet,
) -> None:
    _start(fleet, FLEET)
    task = _post(
        fleet,
        {
            "source": {"zip": zip_b64({"main.c": BROKEN_C})},
            "build": {"host": "builder", "commands": ["gcc -o app main.c"], "artifacts": ["app"]},
            "deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["armhf"]}},
        },
    )
    _wait_build(fleet, task, "build_failed")
    states = fleet.wait_states(task, {"pi-1": "stopped", "pi-2": "stopped"})
    doc = fleet.task(task)
    assert doc["status"] == "failed" and len(states) == 2
    assert "gcc -o app main.c" in doc["build"]["reason"] and "exited 1" in doc["build"]["reason"]
    reasons = {t["reason"] for t in doc["targets"] if t["role"] == "deploy"}
    assert len(reasons) == 1 and reasons.pop().startswith("build failed: build command")

    def compiler_output() -> bool:
        return any("missing_symbol" in out for _, out in _outputs(fleet, task=task))

    wait_for(compiler_output, timeout_s=20, what="gcc's error in the logs")
    assert {t for t, _ in _outputs(fleet, task=task)} == {"builder"}  # never announced
    assert fleet.api.request("GET", "/artifacts", params={"task": task})["total"] == 0

    missing = _post(
        fleet,
        {
            "source": {"zip": zip_b64({"main.c": "int main(void){return 0;}\n"})},
            "build": {
                "host": "builder",
                "commands": ["gcc -o app main.c"],
                "artifacts": ["app", "docs/README"],
            },
            "deploy": {"run": {"commands": ["./app"]}, "target": {"ids": ["pi-1"]}},
        },
    )
    _wait_build(fleet, missing, "build_failed")
    assert "docs/README" in _build_state(fleet, missing)["reason"]
    fleet.wait_states(missing, {"pi-1": "stopped"})
    for path, words in (("/usr/bin/gcc", "must be relative"), ("out/../../etc", "'..'")):
        error = _refused(fleet, "/tasks", {
            "source": {"zip": zip_b64({"main.c": ""})},
            "build": {"host": "builder", "commands": ["true"], "artifacts": [path]},
            "deploy": {"run": {"commands": ["true"]}, "target": {"ids": ["pi-1"]}},
        })  # fmt: skip
        assert (error.path, words in error.message) == ("$.build.artifacts[0]", True)
    # The original answered a build without source with a 500 (reference §10.2 #2).
    error = _refused(fleet, "/orders", {"build": {"host": "builder", "commands": ["make"],
                                                  "artifacts": ["app"]}})  # fmt: skip
    assert (error.path, error.message) == (
        "$.source",
        "a build needs source files: give source.zip",
    )
    error = _refused(fleet, "/tasks", {"source": {"task": task}, "deploy": {
        "run": {"commands": ["./app"]}, "target": {"ids": ["pi-1"]}}})  # fmt: skip
    assert error.path == "$.source.task"
    assert "has no build artifacts (its build is build_failed)" in error.message


def _refused(fleet: LocalFleet, path: str, document: dict[str, Any]) -> ApiError:
    """The 422 answer to posting ``document`` (refused before any agent is involved)."""
    with pytest.raises(ApiError) as info:
        fleet.api.request("POST", path, json=document)
    assert info.value.status == 422, info.value
    return info.value


def test_offline_build_host_builds_when_it_reconnects(fleet: LocalFleet) -> None:
    _start(fleet, FLEET)
    fleet.stop_agent("builder")
    wait_for(lambda: not fleet.target("builder")["online"], timeout_s=20, what="builder offline")
    task = _post(
        fleet,
        {
            "source": {"zip": zip_b64({"main.c": COUNT_C})},
            "build": {"host": "builder", "commands": ["gcc -o app main.c"], "artifacts": ["app"]},
            "deploy": {"run": {"commands": ["./app"]}, "target": {"tags": ["armhf"]}},
        },
    )
    assert _build_state(fleet, task)["state"] == "pending"
    assert fleet.states(task) == {"pi-1": "pending", "pi-2": "pending"}
    fleet.start_agent("builder")
    fleet.wait_states(task, {"pi-1": "exited", "pi-2": "exited"})
    assert _build_state(fleet, task)["state"] == "built"


def _big_build(fleet: LocalFleet) -> str:
    """A build whose artifact (24 MB of random bytes) takes a while to upload."""
    return _post(
        fleet,
        {
            "source": {"zip": zip_b64({"main.c": COUNT_C})},
            "build": {
                "host": "builder",
                "commands": ["gcc -o app main.c", "head -c 24000000 /dev/urandom > blob"],
                "artifacts": ["app", "blob"],
            },
            "deploy": {"run": {"commands": ["./app"]}, "target": {"ids": ["pi-1"]}},
        },
    )


def _uploading(fleet: LocalFleet, task_id: str) -> bool:
    folder = fleet.manager_dir / "uploads" / task_id
    return any(p.stat().st_size > 0 for p in folder.glob("*.part")) if folder.is_dir() else False


def test_manager_killed_mid_upload_the_upload_resumes_and_the_build_deploys(
    fleet: LocalFleet,
) -> None:
    _start(fleet, {"builder": [], "pi-1": ["armhf"]})
    task = _big_build(fleet)
    wait_for(lambda: _uploading(fleet, task), timeout_s=60, interval_s=0.01,
             what="the upload to start")  # fmt: skip
    fleet.stop_manager(signal.SIGKILL)
    fleet.start_manager()
    fleet.wait_states(task, {"pi-1": "exited"}, timeout_s=90)
    assert _build_state(fleet, task)["state"] == "built"
    (artifact,) = _build_state(fleet, task)["artifacts"]
    assert artifact["size"] > 24_000_000
    manager_log = fleet.manager_log()
    assert manager_log.count("receiving artifacts.tar.gz") == 1  # resumed, not started over
    assert "starting over" not in manager_log


def test_build_host_killed_mid_upload_ends_build_failed_and_deploys_nothing(
    fleet: LocalFleet,
) -> None:
    _start(fleet, {"builder": [], "pi-1": ["armhf"]})
    task = _big_build(fleet)
    wait_for(lambda: _uploading(fleet, task), timeout_s=60, interval_s=0.01,
             what="the upload to start")  # fmt: skip
    fleet.stop_agent("builder", signal.SIGKILL)
    fleet.start_agent("builder")
    _wait_build(fleet, task, "build_failed")
    assert "interrupted by an agent restart" in _build_state(fleet, task)["reason"]
    fleet.wait_states(task, {"pi-1": "stopped"})
    assert fleet.task(task)["targets"][1]["reason"].startswith("build failed: ")
    assert not (fleet.agent_dir("builder") / "tasks" / task).exists()
