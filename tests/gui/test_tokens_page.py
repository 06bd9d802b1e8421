"""Registration tokens in the GUI: created and shown once with the agent command line, which
enrols a real agent process; listed with what is left; deleted; admin only."""

from __future__ import annotations

import pathlib
import re
import shlex
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect

from tests.gui.conftest import screenshot, sign_in


def _wait_online(base: str, key: str, target_id: str, agent: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        answer = httpx.get(
            f"{base}/targets/{target_id}", headers={"Authorization": f"Bearer {key}"}
        )
        if answer.status_code == 200 and answer.json()["online"]:
            return
        assert agent.poll() is None, "the agent exited"
        assert time.monotonic() < deadline, f"{target_id} not online in time"
        time.sleep(0.2)  # polling the condition above, bounded by the deadline


def test_created_tokens_are_shown_once_and_the_command_line_enrols_an_agent(
    page: Any, gui_manager: tuple[str, str], tmp_path: pathlib.Path
) -> None:
    base, key = gui_manager
    sign_in(page, base, key)
    page.get_by_test_id("nav-Tokens").click()
    page.get_by_test_id("token-name").fill("gui-lab")
    page.get_by_test_id("token-count").fill("3")
    page.get_by_test_id("token-create").click()
    token_re = re.compile(r"\b[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}\b")
    expect(page.get_by_test_id("token-list")).to_contain_text(token_re)
    listed = page.get_by_test_id("token-list").inner_text()
    tokens = token_re.findall(listed)
    assert len(tokens) == 3, listed
    shown = page.get_by_test_id("token-command").locator("code")
    expect(shown).to_contain_text("--token")
    command = shown.inner_text().strip()
    assert f"--manager {base}" in command and f"--token {tokens[0]}" in command
    screenshot(page, "tokens")
    page.get_by_test_id("token-close").click()
    table = page.get_by_test_id("token-table")
    expect(table.locator("tbody tr", has_text="gui-lab")).to_contain_text("3")

    # The command line as shown, with a scratch data dir and the CA the API serves.
    ca = httpx.get(f"{base}/ca", headers={"Authorization": f"Bearer {key}"}).json()
    (tmp_path / "ca.pem").write_text(ca["certificate"])
    argv = shlex.split(command)
    assert argv[:2] == ["swarmdeploy", "agent"]
    argv[argv.index("--data-dir") + 1] = str(tmp_path / "agent")
    argv[argv.index("--trust-anchor") + 1] = str(tmp_path / "ca.pem")
    argv += ["--id", "gui-enrolled"]
    # A second tab on the devices page sees the new device appear by itself.
    watcher = page.context.new_page()
    watcher.goto(f"{base}/ui/devices")
    watcher.get_by_test_id("device-filter").fill("gui-enrolled")
    rows = watcher.get_by_test_id("device-table").locator("tbody.q-virtual-scroll__content tr")
    expect(rows).to_have_count(0)
    agent = subprocess.Popen(
        [sys.executable, "-m", "swarmdeploy", *argv[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_online(base, key, "gui-enrolled", agent)
        expect(rows).to_have_count(1, timeout=15_000)
        expect(rows.first).to_contain_text("online", timeout=15_000)
    finally:
        agent.terminate()
        agent.wait(timeout=15)
    page.reload()
    row = page.get_by_test_id("token-table").locator("tbody tr", has_text="gui-lab")
    expect(row.locator("td").nth(1)).to_have_text("2")

    page.get_by_test_id("token-delete-gui-lab").click()
    expect(
        page.get_by_test_id("token-table").locator("tbody tr", has_text="gui-lab")
    ).to_have_count(0)
    gone = httpx.get(f"{base}/token_sets/gui-lab", headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 404


def test_tokens_page_is_for_admins_only(page: Any, gui_manager: tuple[str, str]) -> None:
    base, admin = gui_manager
    answer = httpx.post(
        f"{base}/api_keys",
        json={"name": "gui-operator", "role": "operator"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    sign_in(page, base, answer.json()["key"])
    expect(page.get_by_test_id("nav-Tokens")).to_have_count(0)
    expect(page.get_by_test_id("nav-Keys")).to_have_count(0)
    page.goto(f"{base}/ui/tokens")
    expect(page.get_by_test_id("no-access")).to_be_visible()
    expect(page.get_by_test_id("token-create")).to_have_count(0)


def test_keys_page_creates_an_api_key_shown_once_and_revokes_keys(
    page: Any, gui_manager: tuple[str, str]
) -> None:
    base, key = gui_manager
    sign_in(page, base, key)
    page.get_by_test_id("nav-Keys").click()
    page.get_by_test_id("apikey-name").fill("gui-ci-bot")
    page.get_by_test_id("apikey-create").click()
    secret_box = page.get_by_test_id("apikey-secret").locator("code")
    expect(secret_box).to_contain_text("sdk_")
    secret = secret_box.inner_text().strip()
    who = httpx.get(f"{base}/rpc/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert who.json()["name"] == "gui-ci-bot" and who.json()["role"] == "viewer"
    page.get_by_test_id("apikey-close").click()
    key_id = next(
        k["id"]
        for k in httpx.get(f"{base}/api_keys", headers={"Authorization": f"Bearer {key}"}).json()[
            "items"
        ]
        if k["name"] == "gui-ci-bot"
    )
    page.get_by_test_id(f"apikey-revoke-{key_id}").click()
    expect(page.get_by_test_id("apikey-table")).not_to_contain_text("gui-ci-bot")
    gone = httpx.get(f"{base}/rpc/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert gone.status_code == 401

    page.get_by_test_id("signing-generate").click()
    signing = page.get_by_test_id("signing-table")
    expect(signing).to_contain_text("valid")
    [record] = [
        k
        for k in httpx.get(
            f"{base}/operator_keys", headers={"Authorization": f"Bearer {key}"}
        ).json()["items"]
        if k["revokedAt"] is None
    ][-1:]
    page.get_by_test_id(f"signing-revoke-{record['id']}").click()
    expect(signing.locator("tr", has_text=record["id"])).to_contain_text("revoked")
    expect(page.get_by_test_id("ca-info")).to_contain_text("sha256:")
    screenshot(page, "keys")
