"""Apps in the GUI with a real agent (issue 14): the apps list, one app's releases and
devices (behind and why), stop of one app on one device after a confirmation, the device
page's apps, and a viewer without the stop control."""

from __future__ import annotations

import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from swarmdeploy.localfleet import LocalFleet, running_below, wait_for
from tests.e2e.conftest import FAST_AGENT
from tests.gui.conftest import screenshot, sign_in

AGENT = "ap1"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalFleet]:
    root: pathlib.Path = tmp_path_factory.mktemp("gui-apps")
    with LocalFleet(root, agent_args=FAST_AGENT) as f:
        f.start_manager()
        f.start_agent(AGENT, token=f.tokens("apps", 1)[0], tags=["apps"])
        f.wait_online([AGENT])
        yield f


def _release(fleet: LocalFleet, app: str, version: str, deploy: dict[str, Any]) -> str:
    body = {"app": app, "version": version, "deploy": {**deploy, "target": {"ids": [AGENT]}}}
    return str(fleet.api.request("POST", "/tasks", json=body)["id"])


def test_apps_list_app_page_stop_and_device_apps(page: Any, fleet: LocalFleet) -> None:
    first = _release(fleet, "detector", "1.0", {"run": {"commands": ["exec sleep 300"]}})
    fleet.wait_states(first, {AGENT: "running"})
    # 2.0 cannot install: the device is behind, and the page says why.
    second = _release(fleet, "detector", "2.0", {"install": {"commands": ["exit 3"]}})
    fleet.wait_states(second, {AGENT: "install_failed"})
    uploader = _release(fleet, "uploader", "0.1", {"run": {"commands": ["exec sleep 301"]}})
    fleet.wait_states(uploader, {AGENT: "running"})

    sign_in(page, fleet.url, fleet.admin_key)
    page.get_by_test_id("nav-Apps").click()
    expect(page).to_have_url(re.compile("/ui/apps$"))
    expect(page.get_by_test_id("apps-summary")).to_have_text(
        "2 app(s); devices behind, summed over apps: 1"
    )
    rows = page.get_by_test_id("apps-table").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(f"detector{second} (2.0)")
    expect(rows.nth(1)).to_contain_text(f"uploader{uploader} (0.1)")
    screenshot(page, "apps")

    rows.nth(0).click()
    expect(page).to_have_url(re.compile("/ui/apps/detector$"))
    releases = page.get_by_test_id("app-releases").locator("tbody tr")
    expect(releases).to_have_count(2)
    expect(releases.nth(0)).to_contain_text("1 install_failed")
    device = page.get_by_test_id("app-devices").locator("tbody tr")
    expect(device).to_have_count(1)
    expect(device).to_contain_text(f"{AGENT}{second} (2.0)")
    expect(device).to_contain_text("behindinstall_failed: ")
    screenshot(page, "app")

    page.goto(f"{fleet.url}/ui/apps/uploader")
    page.get_by_test_id(f"app-stop-{AGENT}").click()
    page.get_by_test_id("app-stop-confirm").click()
    fleet.wait_states(uploader, {AGENT: "stopped"})
    expect(page.get_by_test_id(f"app-stop-{AGENT}")).to_have_count(0)  # nothing left to stop
    assert fleet.states(first) == {AGENT: "running"}  # the other app keeps running

    page.goto(f"{fleet.url}/ui/devices/{AGENT}")
    apps = page.get_by_test_id("device-apps").locator("tbody tr")
    expect(apps.filter(has_text="detector")).to_contain_text("behind")
    # Live: a new release of uploader, deployed while the page is open, shows up by itself
    # as desired and then as running.
    third = _release(fleet, "uploader", "0.2", {"run": {"commands": ["exec sleep 302"]}})
    fleet.wait_states(third, {AGENT: "running"})
    expect(apps.filter(has_text="uploader")).to_contain_text(
        re.compile(f"{third} \\(0.2\\){third} \\(0.2\\)"), timeout=30_000
    )
    apps.filter(has_text="detector").click()
    expect(page).to_have_url(re.compile("/ui/apps/detector$"))

    # A viewer sees the same without the stop control.
    viewer = fleet.api.request("POST", "/api_keys", json={"name": "v", "role": "viewer"})["key"]
    page.get_by_test_id("signout").click()
    page.wait_for_url("**/ui/signin")
    sign_in(page, fleet.url, str(viewer))
    page.goto(f"{fleet.url}/ui/apps/detector")
    expect(page.get_by_test_id("app-devices").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_test_id(f"app-stop-{AGENT}")).to_have_count(0)

    fleet.api.request("PUT", f"/targets/{AGENT}/apps/detector/stop")
    fleet.wait_states(first, {AGENT: "stopped"})
    fleet.api.request("PUT", f"/targets/{AGENT}/apps/uploader/stop")
    fleet.wait_states(third, {AGENT: "stopped"})
    wait_for(
        lambda: not running_below(fleet.agent_dir(AGENT), "sleep 30"),
        timeout_s=10,
        what="apps gone",
    )
