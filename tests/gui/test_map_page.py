"""The map in Chromium: markers with context but no tile server, clustering, click and
rectangle selection, bulk edit of the selection, the deployments timeline."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.gui.conftest import screenshot, sign_in
from tests.manager.api.test_floorplans import png

TURIN = [f"bot-{i:04d}" for i in range(100, 130)]
BONN = [f"bot-{i:04d}" for i in range(130, 150)]
GREY = "#9ca3af"


@pytest.fixture(scope="module")
def located(gui_manager: tuple[str, str]) -> tuple[str, str]:
    base, key = gui_manager
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=headers) as http:
        for i, target in enumerate(TURIN):
            location = {"lat": 45.0 + i * 0.004, "lon": 7.6 + i * 0.004}
            http.put(f"/targets/{target}", json={"location": location}).raise_for_status()
        for i, target in enumerate(BONN):
            location = {"lat": 50.7 + i * 0.004, "lon": 7.0 + i * 0.004}
            http.put(f"/targets/{target}", json={"location": location}).raise_for_status()
        task = {
            "description": "map timeline release",
            "deploy": {"run": {"commands": ["true"]}, "target": {"ids": BONN[:2]}},
        }
        http.post("/tasks", json=task).raise_for_status()
    return base, key


MARKERS = f'path[fill="{GREY}"], path[fill="#2563eb"]'


def _open_map(page: Any, base: str, key: str) -> Any:
    sign_in(page, base, key)
    page.get_by_test_id("nav-Map").click()
    expect(page.get_by_test_id("map-summary")).to_contain_text("50 of ")
    markers = page.locator(MARKERS)
    expect(markers).to_have_count(2, timeout=15_000)  # framed on the fleet: a cluster per city
    return markers


def test_map_frames_the_fleet_with_outlines_and_clusters_when_zoomed_out(
    page: Any, located: tuple[str, str]
) -> None:
    base, key = located
    _open_map(page, base, key)
    assert page.locator('path[fill="#e2e8f0"]').count() > 20  # country outlines
    assert page.locator("img.leaflet-tile").count() == 0  # no tile server asked
    screenshot(page, "map")
    # Zoomed out to the world (as the zoom buttons would, without racing their animation).
    page.evaluate(
        "() => getElement(document.querySelector('[data-testid=map]').id.slice(1))"
        ".map.setZoom(2, {animate: false})"
    )
    expect(page.locator(MARKERS)).to_have_count(1, timeout=15_000)
    expect(page.get_by_test_id("map-timeline")).to_contain_text("map timeline release")


def test_click_selects_a_cluster_and_a_rectangle_selects_what_it_covers(
    page: Any, located: tuple[str, str]
) -> None:
    base, key = located
    markers = _open_map(page, base, key)
    boxes = sorted((markers.nth(i).bounding_box() for i in range(2)), key=lambda b: b["y"])
    north = boxes[0]  # Bonn
    page.mouse.click(north["x"] + north["width"] / 2, north["y"] + north["height"] / 2)
    expect(page.get_by_test_id("map-selection")).to_have_text("20 selected")

    page.locator("a.leaflet-draw-draw-rectangle").click()
    # A rectangle around the southern cluster (Turin) only.
    marks = page.locator(MARKERS)
    boxes = sorted((marks.nth(i).bounding_box() for i in range(2)), key=lambda b: b["y"])
    south = boxes[1]
    x0, y0 = south["x"] - 30, south["y"] - 30
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + south["width"] + 60, y0 + south["height"] + 60, steps=5)
    page.mouse.up()
    expect(page.get_by_test_id("map-selection")).to_have_text("30 selected")

    page.get_by_test_id("map-edit").click()
    page.get_by_test_id("bulk-add").fill("turin, lab")
    page.get_by_test_id("bulk-apply").click()
    expect(page.get_by_text(re.compile("30 device\\(s\\) updated"))).to_be_visible()
    tagged = httpx.get(
        f"{base}/targets",
        params={"tags": "turin,lab", "perPage": 1000},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert sorted(t["id"] for t in tagged["items"]) == TURIN
    assert all("fleet" in t["tags"] for t in tagged["items"])  # existing tags kept


def test_a_floor_plan_is_uploaded_and_a_device_is_placed_on_it_with_a_click(
    page: Any, located: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    base, key = located
    plan_file = tmp_path / "hall.png"
    plan_file.write_bytes(png(800, 600))
    sign_in(page, base, key)
    page.get_by_test_id("nav-Map").click()
    # No name typed: the plan is named after its file (a typed name races the upload here).
    page.get_by_test_id("plan-upload").locator("input[type=file]").set_input_files(str(plan_file))
    expect(page.get_by_test_id("map-summary")).to_have_text(
        re.compile(r"^0 of \d+ devices are on hall.png$")
    )
    overlay = page.locator("img.leaflet-image-layer")
    expect(overlay).to_have_count(1)
    page.wait_for_function(
        "() => document.querySelector('img.leaflet-image-layer').naturalWidth === 800"
    )
    page.get_by_test_id("map-place").fill("bot-0200")
    box = overlay.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    expect(page.get_by_test_id("map-summary")).to_have_text(
        re.compile(r"^1 of \d+ devices are on hall.png$")
    )
    expect(page.locator(MARKERS)).to_have_count(1)
    doc = httpx.get(f"{base}/targets/bot-0200", headers={"Authorization": f"Bearer {key}"}).json()
    assert abs(doc["indoor"]["x"] - 200) < 20 and abs(doc["indoor"]["y"] - 300) < 20
    screenshot(page, "indoor")
    # The image route serves signed-in sessions only.
    assert httpx.get(f"{base}/ui/floorplan-image/{doc['indoor']['plan']}").status_code == 401
