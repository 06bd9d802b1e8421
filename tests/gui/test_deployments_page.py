"""Deployments in the GUI with real agents: the list, a live progress tree, failures grouped
by identical reason, stop."""

from __future__ import annotations

import pathlib
import re
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from swarmdeploy.client import ApiError
from swarmdeploy.localfleet import LocalFleet, wait_for
from tests.e2e.conftest import FAST_AGENT
from tests.gui.conftest import screenshot, sign_in

AGENTS = ("g1", "g2", "g3")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root: pathlib.Path = tmp_path_factory.mktemp("gui-fleet")
    with LocalFleet(root, agent_args=FAST_AGENT) as f:
        f.start_manager()
        for agent_id, token in zip(AGENTS, f.tokens("gui", len(AGENTS)), strict=True):
            f.start_agent(agent_id, token=token, tags=["gui"])
        f.wait_online(list(AGENTS))
        yield f


def _task(fleet: LocalFleet, description: str, run: list[str]) -> str:
    body = {
        "description": description,
        "deploy": {"run": {"commands": run}, "target": {"tags": ["gui"]}},
    }
    return str(fleet.api.request("POST", "/tasks", json=body)["id"])


def test_failed_devices_are_one_line_per_identical_reason(page: Any, fleet: LocalFleet) -> None:
    task = _task(fleet, "gui failing release", ["echo starting; exit 3"])
    fleet.wait_states(task, dict.fromkeys(AGENTS, "failed"))
    sign_in(page, fleet.url, fleet.admin_key)
    page.get_by_test_id("nav-Deployments").click()
    row = page.get_by_test_id("task-table").locator("tbody tr", has_text="gui failing release")
    expect(row).to_contain_text("3 failed")
    screenshot(page, "deployments")
    row.click()
    expect(page).to_have_url(re.compile(f"/ui/deployments/{task}$"))
    groups = page.get_by_test_id("failure-group")
    expect(groups).to_have_count(1)
    expect(groups.first).to_contain_text(re.compile(r"^3 devices failed: .+"))
    expect(page.get_by_test_id("task-counts")).to_have_text(
        "0 succeeded, 3 failed, 0 stopped, 0 waiting"
    )
    tree = page.get_by_test_id("task-tree")
    expect(tree).to_contain_text("run (3)")
    screenshot(page, "progress")
    tree.get_by_text("g1", exact=True).click()  # a device opens its live log of this task
    expect(page).to_have_url(re.compile(f"/ui/logs\\?target=g1&task={task}&live=1$"))
    expect(page.get_by_test_id("logs-table").locator('tr[data-error="true"]').first).to_be_visible()
    expect(page.get_by_test_id("logs-live")).to_have_attribute("aria-checked", "true")
    page.go_back()
    # The devices page shows each device's newest outcome as a red dot and in words.
    page.get_by_test_id("nav-Devices").click()
    page.get_by_test_id("device-filter").fill("g2")
    device = page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
    expect(device).to_have_count(1)
    expect(device.first).to_contain_text("failed")
    expect(device.first.locator(".outcome-failed")).to_have_count(1)


def test_progress_follows_a_running_deployment_live_and_stop_ends_it(
    page: Any, fleet: LocalFleet
) -> None:
    sign_in(page, fleet.url, fleet.admin_key)
    task = _task(fleet, "gui long runner", ["sleep 300"])
    page.goto(f"{fleet.url}/ui/deployments/{task}")
    # The page was opened before the agents got far: it must update by itself.
    expect(page.get_by_test_id("task-status")).to_have_text("running · 3 devices", timeout=30_000)
    expect(page.get_by_test_id("task-tree")).to_contain_text("running (3)")
    page.get_by_test_id("task-delete").click()  # refused while it runs
    page.get_by_test_id("task-delete-confirm").click()
    expect(page.get_by_text(re.compile("Not deleted: .*"))).to_be_visible()
    page.get_by_test_id("task-stop").click()
    expect(page.get_by_test_id("task-counts")).to_have_text(
        "0 succeeded, 0 failed, 3 stopped, 0 waiting", timeout=30_000
    )
    assert set(fleet.states(task).values()) == {"stopped"}
    page.get_by_test_id("task-delete").click()
    page.get_by_test_id("task-delete-confirm").click()
    expect(page).to_have_url(re.compile("/ui/deployments$"))
    with pytest.raises(ApiError) as gone:
        fleet.task(task)
    assert gone.value.status == 404


def test_device_page_shows_its_history_logs_and_facts_and_edits_it(
    page: Any, fleet: LocalFleet
) -> None:
    task = _task(fleet, "gui device history", ["exit 4"])
    fleet.wait_states(task, dict.fromkeys(AGENTS, "failed"))
    sign_in(page, fleet.url, fleet.admin_key)
    page.get_by_test_id("device-filter").fill("g3")
    page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr").first.click()
    expect(page).to_have_url(re.compile("/ui/devices/g3$"))
    expect(page.get_by_test_id("device-title")).to_have_text("g3")
    facts = page.get_by_test_id("device-facts")
    expect(facts).to_contain_text("online")
    expect(facts).to_contain_text("Disk free")  # the agent's health report
    # ... which is also the first point of its health history, drawn as a chart.
    expect(page.get_by_test_id("device-health-note")).to_contain_text(
        re.compile(r"^[1-9]\d* sample\(s\), one every 300 s$")
    )
    expect(page.get_by_test_id("device-health").locator("canvas")).to_have_count(1)
    history = page.get_by_test_id("device-history")
    expect(history).to_contain_text("gui device history")
    expect(history).to_contain_text("failed")
    errors = page.get_by_test_id("device-logs").locator('tr[data-error="true"]')
    expect(errors.first).to_be_visible()
    screenshot(page, "device")

    page.get_by_test_id("device-edit-one").click()
    page.get_by_test_id("edit-name").fill("rover three")
    page.get_by_test_id("edit-tags").fill("gui, rover")
    page.get_by_test_id("edit-save").click()
    expect(page.get_by_test_id("device-title")).to_have_text("rover three (g3)")
    doc = fleet.target("g3")
    assert doc["name"] == "rover three" and doc["tags"] == ["gui", "rover"]


def test_logs_search_filters_errors_and_live_tail_shows_new_lines(
    page: Any, fleet: LocalFleet
) -> None:
    failing = _task(fleet, "gui logs failing", ["exit 5"])
    fleet.wait_states(failing, dict.fromkeys(AGENTS, "failed"))
    sign_in(page, fleet.url, fleet.admin_key)
    page.get_by_test_id("nav-Logs").click()
    page.get_by_test_id("logs-target").fill("g1")
    page.get_by_test_id("logs-errors").click()
    page.get_by_test_id("logs-search").click()
    table = page.get_by_test_id("logs-table")
    # Wait for the filtered answer to replace the first (unfiltered) one.
    expect(table.locator('tbody tr[data-error="false"]')).to_have_count(0)
    expect(table.locator('tbody tr[data-error="true"]').first).to_be_visible()
    expect(table).not_to_contain_text("g2")

    page.get_by_test_id("logs-errors").click()  # all lines again
    page.get_by_test_id("logs-target").fill("g2")
    page.get_by_test_id("logs-live").click()
    body = {
        "description": "gui live tail",
        "debug": True,
        "deploy": {"run": {"commands": ["echo live-tail-marker-77"]}, "target": {"ids": ["g2"]}},
    }
    fleet.api.request("POST", "/tasks", json=body)
    expect(page.get_by_test_id("logs-table")).to_contain_text("live-tail-marker-77", timeout=30_000)
    screenshot(page, "logs")


def test_new_deployment_form_uploads_an_archive_shows_matches_and_deploys(
    page: Any, fleet: LocalFleet, tmp_path: pathlib.Path
) -> None:
    archive = tmp_path / "hello.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("hello.sh")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\necho hello from the form\n")
    sign_in(page, fleet.url, fleet.admin_key)
    page.get_by_test_id("nav-Deployments").click()
    page.get_by_test_id("task-new").click()
    expect(page).to_have_url(re.compile("/ui/deployments/new$"))
    page.get_by_test_id("compose-description").fill("gui form release")
    page.get_by_test_id("compose-archive").locator("input[type=file]").set_input_files(str(archive))
    expect(page.get_by_test_id("compose-archive-name")).to_contain_text("hello.zip")
    page.get_by_test_id("compose-run").fill("./hello.sh")
    page.get_by_test_id("compose-tags").fill("nosuchtag")
    expect(page.get_by_test_id("compose-error")).to_contain_text("$.deploy.target")
    page.get_by_test_id("compose-tags").fill("gui")
    expect(page.get_by_test_id("compose-matches")).to_contain_text("3 device(s) match: g1, g2, g3")
    expect(page.get_by_test_id("compose-yaml")).to_contain_text("gui form release")
    screenshot(page, "new-deployment")
    page.get_by_test_id("compose-submit").click()
    expect(page).to_have_url(re.compile(r"/ui/deployments/(?!new)[a-z0-9-]+$"))
    task = page.url.rsplit("/", 1)[1]
    expect(page.get_by_test_id("task-counts")).to_have_text(
        "3 succeeded, 0 failed, 0 stopped, 0 waiting", timeout=30_000
    )
    # ./hello.sh exited 0 on every device: the uploaded archive was stored and delivered.
    assert fleet.task(task)["source"]["size"] == archive.stat().st_size

    # Duplicate: the same files (source.task) to the same devices, edited as YAML.
    page.get_by_test_id("task-duplicate").click()
    expect(page).to_have_url(re.compile("/ui/deployments/new$"))
    yaml_box = page.get_by_test_id("compose-yaml")
    expect(yaml_box).to_contain_text(f"task: {task}")
    expect(page.get_by_test_id("compose-matches")).to_contain_text("3 device(s) match")
    page.get_by_test_id("compose-submit").click()
    expect(page).to_have_url(re.compile(r"/ui/deployments/(?!new)[a-z0-9-]+$"))
    again = page.url.rsplit("/", 1)[1]
    assert again != task
    expect(page.get_by_test_id("task-counts")).to_have_text(
        "3 succeeded, 0 failed, 0 stopped, 0 waiting", timeout=30_000
    )
    assert fleet.task(again)["source"]["task"] == task


def test_terminal_runs_a_signed_command_in_the_sandbox_and_escapes_its_output(
    page: Any, fleet: LocalFleet
) -> None:
    sign_in(page, fleet.url, fleet.admin_key)
    page.goto(f"{fleet.url}/ui/devices/g1")
    page.get_by_test_id("device-terminal").click()
    expect(page).to_have_url(re.compile("/ui/devices/g1/terminal$"))
    expect(page.get_by_test_id("terminal-policy")).to_contain_text("sandbox")
    screen = page.get_by_test_id("terminal-screen").locator(".xterm-rows")
    page.get_by_test_id("terminal-command").fill("echo uid=$(id -u)")
    page.get_by_test_id("terminal-command").press("Enter")
    expect(screen).to_contain_text("uid=65534", timeout=30_000)  # the sandbox user, not root
    page.get_by_test_id("terminal-command").fill("printf 'X-\\033[2J-Y\\n'")
    page.get_by_test_id("terminal-run").click()
    expect(screen).to_contain_text("X-\\x1b[2J-Y", timeout=30_000)  # shown, not obeyed
    screenshot(page, "terminal")
    audit = fleet.api.request("GET", "/audit", params={"perPage": 1000})
    assert any("echo uid=$(id -u)" in str(entry) for entry in audit["items"])


def _row(fleet: LocalFleet, task: str, target: str) -> tuple[str, int]:
    """``(state, attempt)`` of ``target``'s row of ``task``."""
    row = next(t for t in fleet.task(task)["targets"] if t["id"] == target)
    return str(row["state"]), int(row["attempt"])


def test_a_halted_rollout_shows_why_retries_its_failed_device_and_is_aborted(
    page: Any, fleet: LocalFleet
) -> None:
    sign_in(page, fleet.url, fleet.admin_key)
    body = {
        "description": "gui staged failing install",
        "app": "gui-staged",
        "deploy": {
            "install": {"commands": ["echo no room >&2; exit 3"]},
            "run": {"commands": ["true"]},
            "target": {"tags": ["gui"]},
        },
        "rollout": {"groups": [{"name": "canary", "count": 1, "errorThreshold": 0}, {}]},
    }
    task = str(fleet.api.request("POST", "/tasks", json=body)["id"])
    page.goto(f"{fleet.url}/ui/deployments/{task}")  # opened before it halts: follows it live
    state = page.get_by_test_id("rollout-state")
    expect(state).to_have_text("Rollout halted · group 1 of 2 (canary)", timeout=30_000)
    expect(page.get_by_test_id("rollout-reason")).to_have_text(
        re.compile(r"^Halted because: group canary: 1 of 1 target\(s\) failed.*error threshold")
    )
    groups = page.get_by_test_id("rollout-groups").locator("tbody tr")
    expect(groups.nth(0)).to_contain_text("1 install_failed")
    expect(groups.nth(1)).to_contain_text("2 pending")
    expect(page.get_by_test_id("rollout-pause")).to_be_disabled()
    expect(page.get_by_test_id("rollout-resume")).to_be_enabled()
    screenshot(page, "rollout")
    assert fleet.states(task) == {"g1": "install_failed", "g2": "pending", "g3": "pending"}

    # Retry failed: g1 waits again (attempt 1) while the rollout stays halted; Resume
    # announces it, it fails again and the rollout halts again.
    page.get_by_test_id("rollout-retry").click()
    page.get_by_test_id("rollout-confirm").click()
    wait_for(lambda: _row(fleet, task, "g1") == ("pending", 1), timeout_s=30, what="a retry")
    expect(groups.nth(0)).to_contain_text("1 pending")
    expect(state).to_have_text(re.compile(r"^Rollout halted"))
    page.get_by_test_id("rollout-resume").click()
    page.get_by_test_id("rollout-confirm").click()
    fleet.wait_states(task, {"g1": "install_failed"})
    expect(groups.nth(0)).to_contain_text("1 install_failed")
    expect(state).to_have_text("Rollout halted · group 1 of 2 (canary)")
    assert fleet.states(task) == {"g1": "install_failed", "g2": "pending", "g3": "pending"}
    expect(page.get_by_test_id("rollout-error")).to_be_hidden()

    # Roll back: refused with the API's words shown (no device got this release: 409).
    page.get_by_test_id("rollout-rollback").click()
    page.get_by_test_id("rollout-confirm").click()
    error = page.get_by_test_id("rollout-error")
    expect(error).to_have_text(re.compile(r"^Roll back refused \(HTTP 409\): \S"))

    page.goto(f"{fleet.url}/ui/deployments/{task}")
    page.get_by_test_id("rollout-abort").click()
    page.get_by_test_id("rollout-confirm").click()
    expect(state).to_have_text(re.compile(r"^Rollout aborted"))
    assert fleet.states(task) == {"g1": "install_failed", "g2": "stopped", "g3": "stopped"}
    expect(page.get_by_test_id("rollout-abort")).to_be_disabled()


def test_roll_back_from_the_page_opens_the_new_task_that_restores_the_previous_release(
    page: Any, fleet: LocalFleet
) -> None:
    first = {
        "app": "gui-rb",
        "version": "1",
        "deploy": {"run": {"commands": ["true"]}, "target": {"tags": ["gui"]}},
    }
    v1 = str(fleet.api.request("POST", "/tasks", json=first)["id"])
    fleet.wait_states(v1, dict.fromkeys(AGENTS, "exited"))
    second = {
        "app": "gui-rb",
        "version": "2",
        "deploy": {"run": {"commands": ["exit 3"]}, "target": {"tags": ["gui"]}},
        "rollout": {"groups": [{"name": "canary", "count": 1, "errorThreshold": 0}, {}]},
    }
    v2 = str(fleet.api.request("POST", "/tasks", json=second)["id"])
    sign_in(page, fleet.url, fleet.admin_key)
    page.goto(f"{fleet.url}/ui/deployments/{v2}")
    expect(page.get_by_test_id("rollout-state")).to_have_text(
        re.compile(r"^Rollout halted"), timeout=30_000
    )
    page.get_by_test_id("rollout-rollback").click()
    page.get_by_test_id("rollout-confirm").click()
    expect(page).to_have_url(re.compile(f"/ui/deployments/(?!{v2})[a-z0-9-]+$"))
    back = page.url.rsplit("/", 1)[1]
    expect(page.get_by_test_id("task-links")).to_have_text(f"Rolls back {v2}")
    fleet.wait_states(back, {"g1": "exited"})
    assert fleet.task(back)["rollbackOf"] == v2
    assert fleet.task(v2)["rollout"]["state"] == "aborted"
    page.goto(f"{fleet.url}/ui/deployments/{v2}")
    expect(page.get_by_test_id("task-links")).to_have_text(f"Rolled back by {back}")
