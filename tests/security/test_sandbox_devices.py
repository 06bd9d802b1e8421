"""Issue 14: hardware and host paths for deployed software (robots, drones), granted by the
device's owner and asked for by the signed task. With real bubblewrap: a fake serial port
(a character device node made with mknod, mode 0660, group ``dialout``) the agent allows
(``allow_devices``) and the task asks for (``sandbox.devices``) can be opened and written
by the sandboxed command through the granted group; a second node next to it, visible
through a granted read-only path, cannot be opened (read-only binds are ``nodev``); a
granted ``:rw`` path is writable, a read-only one is not. A task asking for anything not
granted is refused before anything is fetched, and the reason names every refused item.
Needs root, bubblewrap and /usr/bin/python3 (CI)."""

from __future__ import annotations

import grp
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from swarmdeploy.manager.services.task_signing import sandbox_of
from swarmdeploy.protocol.manifest import SandboxPolicy
from swarmdeploy.protocol.states import TargetState
from tests.agent.daemon_rig import Rig
from tests.agent.helpers import eventually
from tests.security.rig import deploy, secured_rig
from tests.security.test_sandbox_daemon import PYTHON, _need_sandbox

S = TargetState
GROUP = "dialout"

PROBE = """\
import os, sys
def attempt(label, path, flags):
    try:
        fd = os.open(path, flags)
        if flags & os.O_WRONLY:
            os.write(fd, b"x")
        os.close(fd)
        print(label, "OK")
    except OSError as exc:
        print(label, "DENIED", exc.strerror)
hw, rw = sys.argv[1], sys.argv[2]
attempt("GRANTED-DEVICE", hw + "/ttyFAKE0", os.O_WRONLY)
attempt("OTHER-DEVICE", hw + "/ttyFAKE1", os.O_WRONLY)
attempt("HOST-TTY", "/dev/ttyS0", os.O_WRONLY)
attempt("RO-PATH-READ", hw + "/calibration.txt", os.O_RDONLY)
attempt("RO-PATH-WRITE", hw + "/new.txt", os.O_WRONLY | os.O_CREAT)
attempt("RW-PATH-WRITE", rw + "/log.txt", os.O_WRONLY | os.O_CREAT)
print("GROUPS", *sorted(os.getgroups()))
"""


@dataclass
class Hardware:
    """A fake serial port, a second device node, a read-only and a writable host dir."""

    hw: Path
    rw: Path
    gid: int

    @property
    def granted(self) -> Path:
        return self.hw / "ttyFAKE0"


@pytest.fixture
def hardware(tmp_path: Path) -> Hardware:
    _need_sandbox()
    gid = grp.getgrnam(GROUP).gr_gid
    hw, rw = tmp_path / "hw", tmp_path / "rw"
    hw.mkdir(mode=0o755)
    rw.mkdir(mode=0o755)
    os.chown(rw, 65534, 65534)  # the dir the owner gives the sandbox user to write
    for name in ("ttyFAKE0", "ttyFAKE1"):  # /dev/null's numbers: writes succeed, go nowhere
        os.mknod(hw / name, stat.S_IFCHR | 0o660, os.makedev(1, 3))
        os.chown(hw / name, 0, gid)
        os.chmod(hw / name, 0o660)  # mknod's mode went through the umask
    (hw / "calibration.txt").write_text("42\n")
    for path, mode in ((hw, 0o755), (rw, 0o755), (hw / "calibration.txt", 0o644)):
        path.chmod(mode)
    return Hardware(hw, rw, gid)


def _grants(hardware: Hardware) -> dict[str, Any]:
    return {
        "allow_devices": (str(hardware.granted),),
        "allow_paths": ((str(hardware.hw), False), (str(hardware.rw), True)),
        "allow_groups": (GROUP,),
    }


@pytest.fixture
async def rig(tmp_path: Path, hardware: Hardware) -> AsyncIterator[Rig]:
    async with await secured_rig(tmp_path, **_grants(hardware)) as rig:
        await rig.start()
        yield rig


async def _deploy(rig: Rig, hardware: Hardware, state: S, **section: Any) -> None:
    await deploy(
        rig,
        "t1",
        state,
        files={"probe.py": PROBE},
        run=[f"{PYTHON} probe.py {hardware.hw} {hardware.rw}"],
        sequence=1,
        sign_fields={"sandbox": sandbox_of({"sandbox": section})},
    )


async def _results(rig: Rig) -> dict[str, str]:
    await eventually(lambda: any(x.startswith("GROUPS") for x in rig.outputs("t1")), 10)
    lines = (x.partition(" ") for x in rig.outputs("t1"))
    return {key: value for key, _, value in lines if key.isupper()}


async def test_granted_device_path_and_group_work_and_nothing_else(
    rig: Rig, hardware: Hardware
) -> None:
    await _deploy(
        rig,
        hardware,
        S.EXITED,
        devices=[str(hardware.granted)],
        paths=[{"path": str(hardware.hw)}, {"path": str(hardware.rw), "rw": True}],
        groups=[GROUP],
    )
    got = await _results(rig)
    assert got["GRANTED-DEVICE"] == "OK"
    assert got["OTHER-DEVICE"].startswith("DENIED")  # visible, but not granted: nodev
    assert got["HOST-TTY"].startswith("DENIED")  # bwrap's minimal /dev
    assert got["RO-PATH-READ"] == "OK"
    assert got["RO-PATH-WRITE"].startswith("DENIED")
    assert got["RW-PATH-WRITE"] == "OK"
    assert str(hardware.gid) in got["GROUPS"].split()
    assert (hardware.rw / "log.txt").exists() and not (hardware.hw / "new.txt").exists()


async def test_without_the_group_the_granted_device_cannot_be_opened(
    rig: Rig, hardware: Hardware
) -> None:
    await _deploy(rig, hardware, S.EXITED, devices=[str(hardware.granted)])
    got = await _results(rig)
    assert got["GRANTED-DEVICE"].startswith("DENIED Permission denied")
    assert str(hardware.gid) not in got["GROUPS"].split()


async def test_task_asking_beyond_the_grants_is_refused_naming_each_item(
    rig: Rig, hardware: Hardware
) -> None:
    other = hardware.hw / "ttyFAKE1"
    await _deploy(
        rig,
        hardware,
        S.INSTALL_FAILED,
        devices=[str(hardware.granted), str(other)],
        paths=[{"path": str(hardware.hw), "rw": True}, {"path": "/etc"}],
        groups=[GROUP, "video"],
    )
    reason = rig.reason("t1")
    assert reason.startswith("refused: sandbox_refused: this device does not grant ")
    refused = reason.split(" grant ", 1)[1].split("; ")
    assert sorted(refused) == sorted(
        [f"path {hardware.hw} (rw)", "path /etc", f"device {other}", "group video"]
    )
    assert not any(x.startswith("GROUPS") for x in rig.outputs("t1"))  # nothing ran
    assert not (rig.settings.data_dir / "tasks" / "t1").exists()


async def test_signed_manifest_cannot_choose_another_user(rig: Rig, hardware: Hardware) -> None:
    policy = SandboxPolicy(uid=1000, gid=1000)
    await deploy(
        rig, "t1", S.INSTALL_FAILED, run=["id"], sequence=1, sign_fields={"sandbox": policy}
    )
    assert "uid 1000 gid 1000 (this device runs tasks as uid 65534 gid 65534)" in rig.reason("t1")
