"""End-to-end fixtures: a real manager process and real agent processes on loopback."""

from __future__ import annotations

import base64
import io
import pathlib
import zipfile
from collections.abc import Iterator

import pytest

from swarmdeploy.localfleet import LocalFleet

#: Agent options that make the tests quick without changing behaviour.
FAST_AGENT = ["--log-batch-s", "0.3", "--resend-s", "2", "--stop-grace-s", "2"]
FAST_AGENT += ["--reconnect-ivl-s", "0.1", "--reconnect-ivl-max-s", "1"]
#: Manager options for fleets that test no GUI: mounting it costs ~0.45 s of CPU per start.
FAST_MANAGER = ["--no-gui"]


def zip_b64(files: dict[str, str], modes: dict[str, int] | None = None) -> str:
    """A base64 zip archive holding ``files`` (name -> text)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = ((modes or {}).get(name, 0o644) & 0xFFFF) << 16
            zf.writestr(info, text)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(params=["zmq", "http"])
def transport(request: pytest.FixtureRequest) -> str:
    """The agents' link: the whole end-to-end suite runs over ZeroMQ and over HTTP polling."""
    return str(request.param)


@pytest.fixture
def fleet(tmp_path: pathlib.Path, transport: str) -> Iterator[LocalFleet]:
    """A started manager; agents (speaking ``transport``) are started by the test."""
    agent_args = [*FAST_AGENT, "--transport", transport]
    with LocalFleet(tmp_path, manager_args=FAST_MANAGER, agent_args=agent_args) as f:
        f.start_manager()
        yield f
