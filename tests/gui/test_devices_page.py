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
