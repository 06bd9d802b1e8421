"""Credentials in query strings never reach the manager's log (issue 9, item 4)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from swarmdeploy.manager.logredact import CredentialRedactor, redact
from tests.cli.manager_proc import running_manager


async def _open_events(ws_url: str) -> None:
    async with asyncio.timeout(10), connect(ws_url) as ws:
        await ws.send(json.dumps({"hello": 1}))


async def _refused(ws_url: str) -> None:
    with pytest.raises(InvalidStatus):
        await _open_events(ws_url)


def test_events_access_token_is_redacted_in_the_real_managers_log(tmp_path: Path) -> None:
    log_file = tmp_path / "manager.log"
    with running_manager(tmp_path / "data", "--agent-link", "off", log_file=log_file) as (
        base,
        key,
    ):
        ws_url = base.replace("http://", "ws://") + f"/events?topics=logs&access_token={key}"
        asyncio.run(_open_events(ws_url))
        asyncio.run(_refused(ws_url.replace(key, "sdk_0123456789ab_wrongsecret")))
    text = log_file.read_text()
    assert '"WebSocket /events?topics=logs&access_token=[redacted]" [accepted]' in text
    assert key not in text
    assert "wrongsecret" not in text


def test_redact_covers_credential_parameters_and_keeps_the_rest() -> None:
    assert redact("/events?access_token=abc&topics=logs") == (
        "/events?access_token=[redacted]&topics=logs"
    )
    assert redact("/x?topics=logs&Access_Token=abc") == "/x?topics=logs&Access_Token=[redacted]"
    assert redact("/x?token=1234-5678-9abc;key=z") == "/x?token=[redacted];key=[redacted]"
    assert redact("/x?monkey=1&topics=a") == "/x?monkey=1&topics=a"


def test_redactor_rewrites_uvicorn_style_record_arguments() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1,
        '%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", "/logs?access_token=s3cret", "1.1", 200),
        None,
    )  # fmt: skip
    assert CredentialRedactor().filter(record)
    assert "s3cret" not in record.getMessage()
