"""An image prepared with ``swarmdeploy agent provision`` really brings devices up: each device
(the image plus its token overlay, copied as a flashing station would) runs the unit's
``ExecStart`` with the unit's two environment files, and registers with a real manager with
its id and tags (real processes, ZeroMQ/CURVE on loopback). A restart with the spent token
still in place comes back online.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

from swarmdeploy.agent.main import main as agent_main
from swarmdeploy.localfleet import SYSTEM_PATH, LocalFleet
from tests.provision.helpers import read_env_file

pytestmark = pytest.mark.e2e

UNIT = "etc/systemd/system/swarmdeploy-agent.service"


def device_command(root: pathlib.Path) -> tuple[list[str], dict[str, str]]:
    """The unit's ExecStart and environment files of the device tree ``root``, with every
    absolute path in them taken below ``root`` (what the device would see at ``/``)."""
    unit = (root / UNIT).read_text()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    data_dir = argv.index("--data-dir") + 1
    argv[data_dir] = str(root / argv[data_dir].lstrip("/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}
    env["PATH"] = SYSTEM_PATH
    for line in unit.splitlines():
        if line.startswith("EnvironmentFile=-"):
            path = root / line.removeprefix("EnvironmentFile=-/")
            if path.exists():
                env.update(read_env_file(path))
    anchor = env["SWARMDEPLOY_AGENT_TRUST_ANCHOR"]
    env["SWARMDEPLOY_AGENT_TRUST_ANCHOR"] = str(root / anchor.lstrip("/"))
    return argv, env


def start_device(fleet: LocalFleet, root: pathlib.Path, name: str) -> None:
    """Start the device's agent as systemd would (data dir 0700: StateDirectoryMode)."""
    argv, env = device_command(root)
    data_dir = pathlib.Path(argv[argv.index("--data-dir") + 1])
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (fleet.root / f"agent-{name}.log").open("ab") as log:
        fleet.agents[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=data_dir)


def test_devices_flashed_from_one_image_register_with_their_own_tokens(
    tmp_path: pathlib.Path,
) -> None:
    image, overlays = tmp_path / "image", tmp_path / "overlays"
    with LocalFleet(tmp_path / "fleet") as fleet:
        fleet.start_manager()
        tokens = fleet.tokens("field", 2)
        token_file = tmp_path / "tokens.txt"
        token_file.write_text(f"{tokens[0]} robot-1\n{tokens[1]} robot-2\n")
        status = agent_main(["provision", "--root", str(image), "--manager", fleet.url,
                             "--trust-anchor", str(fleet.manager_dir / "ca.pem"),
                             "--tags", "field,pi", "--token-file", str(token_file),
                             "--overlays", str(overlays),
                             "--exec", f"{sys.executable} -m swarmdeploy"])  # fmt: skip
        assert status == 0
        devices = {}
        for name in ("robot-1", "robot-2"):
            root = tmp_path / "devices" / name
            shutil.copytree(image, root, symlinks=True)
            shutil.copytree(overlays / name, root, symlinks=True, dirs_exist_ok=True)
            devices[name] = root
            start_device(fleet, root, name)
        fleet.wait_online(list(devices), timeout_s=60)
        for name in devices:
            assert sorted(fleet.target(name)["tags"]) == ["field", "pi"], fleet.agent_log(name)
        # a later start keeps the spent token file and must not stumble over it
        assert fleet.stop_agent("robot-1") == 0
        start_device(fleet, devices["robot-1"], "robot-1")
        fleet.wait_online(["robot-1"], timeout_s=60)
        token_sets = fleet.api.request("GET", "/token_sets/field")
        assert token_sets["available"] == 0, token_sets
