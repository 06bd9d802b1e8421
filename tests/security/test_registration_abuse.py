"""Registration under a guessing attack (issue 9, item 6): 60 addresses x 10 wrong tokens
no longer lock out a device enrolling with a valid token from a new address, guessing stays
bounded, and the refusals make one summary log line, not one per try."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.manager.conftest import Api, device_body, make_settings, running_api

DEFAULTS = {"registration_rate_per_min": 10.0, "registration_burst": 10,
            "registration_global_rate_per_min": 600.0}  # fmt: skip


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with running_api(make_settings(tmp_path, **DEFAULTS)) as running:
        yield running


async def _register(api: Api, address: str, token: str, target_id: str) -> int:
    transport = httpx.ASGITransport(app=api.app, client=(address, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://manager") as client:
        resp = await client.post("/rpc/targets", json=device_body(target_id),
                                 headers={"X-Auth-Token": token})  # fmt: skip
        return resp.status_code


async def test_guessing_from_60_addresses_does_not_lock_out_a_valid_token(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarmdeploy.manager.services.registration")
    token = (await api.tokens(1))[0]
    statuses: list[int] = []
    for g in range(10):  # ten waves of one guess from each of 60 addresses, as fast as it goes
        wave = [_register(api, f"198.51.100.{a}", f"{a:04x}-{g:04x}-0bad", f"guess-{a}-{g}")
                for a in range(60)]  # fmt: skip
        statuses += await asyncio.gather(*wave)
    assert set(statuses) <= {401, 429} and statuses.count(401) >= 100
    assert await _register(api, "203.0.113.7", token, "new-device") == 201
    # the attackers themselves stay refused (one guess per address per quiet period)
    assert await _register(api, "198.51.100.3", "0000-0000-0bad", "again") == 429
    assert caplog.records == []  # no line per refused try ...
    api.services.registration.report()
    (line,) = caplog.records  # ... one summary
    assert "wrong token(s) from 60 address(es)" in line.getMessage()
    assert "under attack" in line.getMessage()
