"""Browser tests: a real manager process with the GUI and Debian's Chromium driven by
Playwright. Skipped, with the reason shown, where Chromium or Playwright is missing."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cli.manager_proc import free_port, running_manager

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Enough devices that the table must stay fast with more than one API page of targets.
FLEET_SIZE = 1100


def register_fleet(base: str, admin_key: str, count: int, prefix: str) -> list[str]:
    """Register ``count`` devices through ``POST /rpc/targets`` with one-time tokens, as
    agents do (ids ``{prefix}-0000``..., tags ``fleet`` and ``even``/``odd``)."""
    import nacl.signing
    import zmq

    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            answer = await http.post(
                "/token_sets",
                params={"name": f"{prefix}-set", "total": count},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            answer.raise_for_status()
            tokens = answer.json()["tokens"]
            gate = asyncio.Semaphore(16)

            async def one(i: int, token: str) -> str:
                public, _ = zmq.curve_keypair()
                identity = nacl.signing.SigningKey.generate().verify_key.encode()
                target_id = f"{prefix}-{i:04d}"
                body = {
                    "id": target_id,
                    "name": f"robot {i}",
                    "tags": ["fleet", "even" if i % 2 == 0 else "odd"],
                    "publicKey": public.decode(),
                    "identityKey": base64.b64encode(identity).decode(),
                }
                async with gate:
                    reply = await http.post(
                        "/rpc/targets", json=body, headers={"X-Auth-Token": token}
                    )
                reply.raise_for_status()
                return target_id

            return list(await asyncio.gather(*(one(i, t) for i, t in enumerate(tokens))))

    # Playwright's synchronous API keeps an event loop running in this thread.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


#: CI sets this: a missing browser is then an error, not a skip (the GUI must be tested there).
REQUIRE_BROWSER = os.environ.get("SWARMDEPLOY_REQUIRE_BROWSER") == "1"
#: Set to write a screenshot of each view to docs/screenshots/ (``make screenshots``).
SCREENSHOTS = os.environ.get("SWARMDEPLOY_SCREENSHOTS") == "1"
SCREENSHOT_DIR = pathlib.Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def screenshot(page: Any, name: str) -> None:
    """Save the page as ``docs/screenshots/<name>.png`` when screenshots are asked for."""
    if SCREENSHOTS:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT_DIR / f"{name}.png"))


def _missing(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"browser tests required (SWARMDEPLOY_REQUIRE_BROWSER=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not session-wide: Playwright's synchronous API keeps an
    event loop running in this thread while it is open, which would break every asyncio test
    that runs after the browser tests."""
    if not pathlib.Path(CHROMIUM).exists():
        _missing(f"no Chromium at {CHROMIUM} (Debian package chromium)")
    try:
        import playwright.sync_api as playwright_api
    except ImportError:
        _missing("Playwright is not installed (the dev extra has it)")
    with playwright_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def gui_manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A manager with the GUI on and :data:`FLEET_SIZE` registered devices."""
    data_dir = tmp_path_factory.mktemp("gui-manager")
    args = ["--zmq-pub-port", str(free_port()), "--zmq-sub-port", str(free_port())]
    args += ["--registration-burst", "5000", "--registration-rate", "10000"]
    args += ["--registration-global-rate", "10000"]
    with running_manager(data_dir, *args) as (base, key):
        register_fleet(base, key, FLEET_SIZE, "bot")
        yield base, key


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
    finally:
        context.close()


def sign_in(page: Any, base: str, key: str) -> None:
    """Sign in through the form and wait for the devices page."""
    page.goto(f"{base}/")
    page.get_by_test_id("api-key").fill(key)
    page.get_by_test_id("signin").click()
    page.wait_for_url("**/ui/devices")
