"""Sign-in, roles and the devices page in Debian Chromium against a real manager process."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.gui.conftest import FLEET_SIZE, screenshot, sign_in


def test_root_redirects_to_sign_in_and_a_wrong_key_is_refused(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, _ = gui_manager
    page.goto(f"{base}/")
    expect(page).to_have_url(re.compile(r"/ui/signin$"))
    page.get_by_test_id("api-key").fill("sdk_not_a_key")
    screenshot(page, "signin")
    page.get_by_test_id("signin").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("Sign-in refused")
    page.goto(f"{base}/ui/devices")
    expect(page).to_have_url(re.compile(r"/ui/signin$"))


def test_admin_sees_every_device_and_filters_by_tag_and_name(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, key = gui_manager
    started = time.monotonic()
    sign_in(page, base, key)
    expect(page.get_by_test_id("device-summary")).to_have_text(f"{FLEET_SIZE} devices, 0 online")
    loaded_s = time.monotonic() - started
    assert loaded_s < 10, f"the devices page took {loaded_s:.1f} s with {FLEET_SIZE} devices"
    table = page.get_by_test_id("device-table")
    # Virtual scrolling: far fewer rows in the page than devices.
    assert table.locator("tbody.q-virtual-scroll__content tr").count() < 200
    page.get_by_test_id("device-filter").fill("robot 1077")
    expect(table.locator("tbody.q-virtual-scroll__content tr")).to_have_count(1)
    expect(table.locator("tbody.q-virtual-scroll__content tr").first).to_contain_text("bot-1077")
    expect(table.locator("tbody.q-virtual-scroll__content tr").first).to_contain_text("fleet, odd")
    expect(table.locator("tbody.q-virtual-scroll__content tr").first).to_contain_text("offline")
    expect(page.get_by_test_id("whoami")).to_have_text("admin (admin)")
    screenshot(page, "devices")


def _api_key(base: str, admin: str, name: str, role: str) -> str:
    answer = httpx.post(
        f"{base}/api_keys",
        json={"name": name, "role": role},
        headers={"Authorization": f"Bearer {admin}"},
    )
    answer.raise_for_status()
    return str(answer.json()["key"])


def test_viewer_gets_no_delete_control_and_the_api_refuses_it_anyway(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, admin = gui_manager
    viewer = _api_key(base, admin, "gui-viewer", "viewer")
    sign_in(page, base, viewer)
    expect(page.get_by_test_id("whoami")).to_have_text("gui-viewer (viewer)")
    expect(page.get_by_test_id("device-summary")).to_contain_text("devices")
    expect(page.get_by_test_id("device-delete")).to_have_count(0)
    refused = httpx.delete(
        f"{base}/targets/bot-0001", headers={"Authorization": f"Bearer {viewer}"}
    )
    assert refused.status_code == 403


def test_admin_deletes_a_selected_device_which_is_revoked(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, key = gui_manager
    sign_in(page, base, key)
    expect(page.get_by_test_id("device-summary")).to_have_text(f"{FLEET_SIZE} devices, 0 online")
    page.get_by_test_id("device-filter").fill("bot-0042")
    row = page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
    expect(row).to_have_count(1)
    row.first.locator(".q-checkbox").click()
    page.get_by_test_id("device-delete").click()
    page.get_by_test_id("device-delete-confirm").click()
    expect(page.get_by_test_id("device-summary")).to_have_text(
        f"{FLEET_SIZE - 1} devices, 0 online"
    )
    gone = httpx.get(f"{base}/targets/bot-0042", headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 404


def test_sign_out_forgets_the_session(page: Any, gui_manager: tuple[str, str]) -> None:
    base, key = gui_manager
    sign_in(page, base, key)
    page.get_by_test_id("signout").click()
    expect(page).to_have_url(re.compile(r"/ui/signin$"))
    page.goto(f"{base}/ui/devices")
    expect(page).to_have_url(re.compile(r"/ui/signin$"))


def _request_counts(base: str, key: str) -> dict[tuple[str, str], float]:
    """``(method, route template) -> requests answered`` from ``GET /metrics``."""
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {key}"}).text
    counts: dict[tuple[str, str], float] = {}
    pattern = re.compile(
        r'^swarmdeploy_http_request_duration_seconds_count\{[^}]*method="(\w+)",'
        r'route="([^"]*)"[^}]*\} (\S+)$'
    )
    for line in text.splitlines():
        if m := pattern.match(line):
            where = (m.group(1), m.group(2))
            counts[where] = counts.get(where, 0.0) + float(m.group(3))
    return counts


def _apply_as_one_bulk_request(page: Any, base: str, key: str, count: int) -> None:
    """Apply the open bulk dialog; the manager must have seen one ``POST /targets/bulk``
    and no ``PUT /targets/{id}``."""
    before = _request_counts(base, key)
    page.get_by_test_id("bulk-apply").click()
    expect(page.get_by_text(f"{count} device(s) updated")).to_be_visible()
    after = _request_counts(base, key)
    bulk = ("POST", "/targets/bulk")
    assert after.get(bulk, 0) - before.get(bulk, 0) == 1
    puts = [k for k in after if k[0] == "PUT" and k[1] == "/targets/{target_id}"]
    assert all(after[k] == before.get(k, 0) for k in puts), "no PUT per device"


def test_bulk_tagging_the_selected_devices_is_one_request(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, key = gui_manager
    headers = {"Authorization": f"Bearer {key}"}
    sign_in(page, base, key)
    expect(page.get_by_test_id("device-summary")).to_contain_text("devices")
    page.get_by_test_id("device-filter").fill("robot 12")  # robot 12 and robot 120..129
    rows = page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
    expect(rows).to_have_count(11)
    chosen = sorted(f"bot-{i:04d}" for i in [12, *range(120, 130)])
    for i in range(11):
        rows.nth(i).locator(".q-checkbox").click()
    page.get_by_test_id("device-edit").click()
    page.get_by_test_id("bulk-apply").click()  # nothing given: said so, nothing sent
    expect(page.get_by_test_id("bulk-error")).to_contain_text("Nothing to change")
    page.get_by_test_id("bulk-add").fill("no/slash")  # refused by the API: its words shown
    page.get_by_test_id("bulk-apply").click()
    expect(page.get_by_test_id("bulk-error")).to_contain_text(re.compile(r"^Not changed: .+"))
    page.get_by_test_id("bulk-add").fill("bulked")
    page.get_by_test_id("bulk-remove").fill("even")
    _apply_as_one_bulk_request(page, base, key, 11)
    tagged = httpx.get(
        f"{base}/targets", params={"tags": "bulked", "perPage": 100}, headers=headers
    ).json()
    assert sorted(t["id"] for t in tagged["items"]) == chosen
    for target in tagged["items"]:  # removeTags then addTags, other tags kept
        number = int(target["id"].split("-")[1])
        assert target["tags"] == ["fleet", *(["odd"] if number % 2 else []), "bulked"]
    audit = httpx.get(f"{base}/audit", params={"perPage": 1000}, headers=headers).json()
    entries = [e for e in audit["items"] if e["action"] == "target.bulk_update"]
    assert len(entries) == 1 and entries[0]["details"]["changedCount"] == 11


def test_bulk_clearing_the_location_is_one_request(page: Any, gui_manager: tuple[str, str]) -> None:
    base, key = gui_manager
    headers = {"Authorization": f"Bearer {key}"}
    chosen = sorted(f"bot-{i:04d}" for i in [14, *range(140, 150)])
    located = {"selection": {"ids": chosen}, "location": {"lat": 45.07, "lon": 7.69}}
    httpx.post(f"{base}/targets/bulk", json=located, headers=headers).raise_for_status()
    sign_in(page, base, key)
    expect(page.get_by_test_id("device-summary")).to_contain_text("devices")
    page.get_by_test_id("device-filter").fill("robot 14")  # robot 14 and robot 140..149
    rows = page.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
    expect(rows).to_have_count(11)
    for i in range(11):
        rows.nth(i).locator(".q-checkbox").click()
    page.get_by_test_id("device-edit").click()
    page.get_by_test_id("bulk-clear").click()
    _apply_as_one_bulk_request(page, base, key, 11)
    for target_id in chosen:
        doc = httpx.get(f"{base}/targets/{target_id}", headers=headers).json()
        assert doc["location"] is None, target_id


def _rollout_task(base: str, key: str, ids: list[str]) -> str:
    """A staged rollout to offline devices: its first group is announced and waits."""
    body = {
        "description": "gui staged release",
        "deploy": {"run": {"commands": ["true"]}, "target": {"ids": ids}},
        "rollout": {"groups": [{"name": "first", "count": 2}, {}]},
    }
    answer = httpx.post(f"{base}/tasks", json=body, headers={"Authorization": f"Bearer {key}"})
    answer.raise_for_status()
    return str(answer.json()["id"])


def _rollout_state(base: str, key: str, task: str) -> str:
    doc = httpx.get(f"{base}/tasks/{task}", headers={"Authorization": f"Bearer {key}"}).json()
    return str(doc["rollout"]["state"])


def test_a_rollout_is_paused_resumed_and_aborted_from_its_page(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, key = gui_manager
    task = _rollout_task(base, key, [f"bot-{i:04d}" for i in range(900, 905)])
    sign_in(page, base, key)
    page.goto(f"{base}/ui/deployments/{task}")
    state = page.get_by_test_id("rollout-state")
    expect(state).to_have_text("Rollout running · group 1 of 2 (first)")
    groups = page.get_by_test_id("rollout-groups").locator("tbody tr")
    expect(groups).to_have_count(2)
    expect(groups.nth(0)).to_contain_text("2 pending")
    expect(groups.nth(1)).to_contain_text("waiting")
    expect(page.get_by_test_id("rollout-resume")).to_be_disabled()
    expect(page.get_by_test_id("rollout-retry")).to_be_disabled()  # nothing failed
    expect(page.get_by_test_id("rollout-rollback")).to_be_disabled()  # nothing delivered

    page.get_by_test_id("rollout-pause").click()
    expect(page.get_by_test_id("rollout-question")).to_contain_text("Pause the rollout?")
    page.get_by_test_id("rollout-confirm").click()
    expect(state).to_have_text("Rollout paused · group 1 of 2 (first)")
    assert _rollout_state(base, key, task) == "paused"
    expect(page.get_by_test_id("rollout-pause")).to_be_disabled()

    page.get_by_test_id("rollout-resume").click()
    page.get_by_test_id("rollout-confirm").click()
    expect(state).to_have_text("Rollout running · group 1 of 2 (first)")
    assert _rollout_state(base, key, task) == "running"

    page.get_by_test_id("rollout-abort").click()
    page.get_by_test_id("rollout-cancel").click()  # asked, not done
    expect(page.get_by_test_id("rollout-question")).to_have_count(0)
    assert _rollout_state(base, key, task) == "running"
    page.get_by_test_id("rollout-abort").click()
    page.get_by_test_id("rollout-confirm").click()
    expect(state).to_have_text("Rollout aborted · group 1 of 2 (first)")
    expect(groups.nth(1)).to_contain_text("3 stopped")
    audit = httpx.get(
        f"{base}/audit", params={"perPage": 1000}, headers={"Authorization": f"Bearer {key}"}
    ).json()
    actions = [e["action"] for e in audit["items"] if e.get("target") == task]
    assert actions[-3:] == ["task.pause", "task.resume", "task.abort"]


def test_a_viewer_sees_the_rollout_but_no_action_buttons(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, admin = gui_manager
    task = _rollout_task(base, admin, [f"bot-{i:04d}" for i in range(910, 913)])
    viewer = _api_key(base, admin, "gui-rollout-viewer", "viewer")
    sign_in(page, base, viewer)
    page.goto(f"{base}/ui/deployments/{task}")
    expect(page.get_by_test_id("rollout-state")).to_have_text(
        "Rollout running · group 1 of 2 (first)"
    )
    expect(page.get_by_test_id("rollout-groups").locator("tbody tr")).to_have_count(2)
    for action in ("pause", "resume", "abort", "retry", "rollback"):
        expect(page.get_by_test_id(f"rollout-{action}")).to_have_count(0)
    expect(page.get_by_test_id("task-stop")).to_have_count(0)
    refused = httpx.post(
        f"{base}/tasks/{task}/pause", json={}, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert refused.status_code == 403
