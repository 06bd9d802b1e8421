"""``swarmdeploy agent provision``: prepare a mounted image or a directory tree (seed 000's
installer), so many devices can be flashed from one image (ADR 0008).

The image gets everything the devices share: the settings (``agent.env``), the trust anchor,
and the unit, enabled (the ``multi-user.target.wants`` link ``systemctl enable`` makes); the
unit's ``StateDirectory=`` creates the data dir at first boot. The one thing that differs per
device is the one-time token, so it is kept out of the shared image:

* ``--token T`` (one device, or an image per device): ``token.env`` goes into the image;
* ``--token-file F --overlays DIR`` (a hundred devices): F holds one ``TOKEN [ID]`` per line;
  each line becomes ``DIR/<ID or device-NNNN>/etc/swarmdeploy/token.env`` (mode 0600), a
  per-device overlay copied onto each device's root after flashing
  (``cp -a DIR/device-0001/. /mnt/``). The overlays must lie outside the image.

The agent program itself comes from the .deb (ADR 0009), installed into the image by the
image's own package manager; provision warns when the ``--exec`` program is not in the image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TextIO

from swarmdeploy.agent.provision import files
from swarmdeploy.agent.provision.layout import (
    TOKEN_ENV,
    UNIT_NAME,
    AgentConfig,
    FileSpec,
    agent_env,
    agent_unit,
    public_files,
    token_env,
    wants_link,
)
from swarmdeploy.agent.provision.system import ProvisionError
from swarmdeploy.protocol.messages import valid_name

_TOKEN = re.compile(r"^[A-Za-z0-9-]{1,64}$")


@dataclass(frozen=True, slots=True)
class DeviceToken:
    """One line of a token file: a token and, optionally, the device's target id."""

    token: str
    target_id: str | None = None

    @property
    def overlay_name(self) -> str:
        """The overlay directory's name (the id when given)."""
        return self.target_id or ""


@dataclass(frozen=True, slots=True)
class ProvisionRequest:
    """``agent provision``: the image root, the shared settings and the tokens."""

    root: Path
    config: AgentConfig
    token: DeviceToken | None = None
    devices: tuple[DeviceToken, ...] = ()
    overlays: Path | None = None
    dry_run: bool = False


def check_token(token: str, where: str) -> str:
    """A registration token as the manager hands them out (``xxxx-xxxx-xxxx``)."""
    if not _TOKEN.match(token):
        raise ProvisionError(f"{where}: {token!r} is not a registration token (xxxx-xxxx-xxxx)")
    return token


def parse_token_file(text: str, name: str) -> tuple[DeviceToken, ...]:
    """``TOKEN [ID]`` per line (``#`` comments and blank lines ignored); ProvisionError
    names the line of a malformed entry, a repeated token or a repeated id."""
    devices: list[DeviceToken] = []
    seen: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{name} line {number}"
        if len(words) > 2:
            raise ProvisionError(f"{where}: expected 'TOKEN [ID]', got {line.strip()!r}")
        token = check_token(words[0], where)
        target_id = words[1] if len(words) == 2 else None
        if target_id is not None and not valid_name(target_id):
            raise ProvisionError(f"{where}: {target_id!r} is not a valid target id")
        for key in (token, target_id):
            if key is not None and key in seen:
                raise ProvisionError(f"{where}: {key!r} appears twice")
            if key is not None:
                seen.add(key)
        devices.append(DeviceToken(token, target_id))
    if not devices:
        raise ProvisionError(f"{name} holds no token")
    return tuple(devices)


def image_files(request: ProvisionRequest) -> list[FileSpec]:
    """The shared files of the image (plus the token when one device's token is given)."""
    specs = [
        agent_env(request.config),
        *public_files(request.config),
        agent_unit(request.config.exec_command),
        wants_link(),
    ]
    if request.token is not None:
        specs.append(token_env(request.token.token, request.token.target_id))
    return specs


def overlay_files(request: ProvisionRequest) -> dict[str, FileSpec]:
    """``{overlay directory name: token file}``, one per device of the token file."""
    overlays: dict[str, FileSpec] = {}
    for number, device in enumerate(request.devices, 1):
        name = device.overlay_name or f"device-{number:04d}"
        overlays[name] = token_env(device.token, device.target_id)
    return overlays


def _check(request: ProvisionRequest) -> None:
    if request.root.exists() and not request.root.is_dir():
        raise ProvisionError(f"--root {request.root} is not a directory")
    if request.devices and request.overlays is None:
        raise ProvisionError("--token-file needs --overlays DIR (one directory per device)")
    if request.overlays is None:
        return
    overlays, root = request.overlays.resolve(), request.root.resolve()
    if overlays == root or root in overlays.parents:
        raise ProvisionError(
            f"--overlays {request.overlays} lies inside the image: every device would get"
            " every token"
        )
    if request.token is None and files.below(request.root, TOKEN_ENV).exists():
        raise ProvisionError(
            f"the image already holds {TOKEN_ENV}: every device would share that token;"
            " remove it first"
        )


def provision(request: ProvisionRequest, out: TextIO) -> int:
    """Run ``agent provision`` (see the module doc); return the exit status."""
    _check(request)
    specs = image_files(request)
    overlays = overlay_files(request)
    if request.dry_run:
        out.write(files.describe(specs))
        for name, spec in overlays.items():
            out.write(f"--- overlay {name}:\n")
            out.write(files.describe([spec]))
        out.write("(nothing was written: --dry-run)\n")
        return 0
    for spec in specs:
        out.write(f"wrote {files.write(request.root, spec)}\n")
    if request.overlays is not None:
        for name, spec in overlays.items():
            overlay = request.overlays / name
            overlay.mkdir(mode=0o755, parents=True, exist_ok=True)
            files.write(overlay, spec)
        out.write(
            f"wrote {len(overlays)} device overlays below {request.overlays}; after flashing"
            f" a device, copy one onto its root: cp -a {request.overlays}/<name>/. /mnt/\n"
        )
    program = PurePosixPath(request.config.exec_command.split()[0])
    if not files.below(request.root, program).exists():
        out.write(
            f"warning: {program} is not in the image yet; install the swarmdeploy-agent"
            " .deb into it (docs/operator-guide.md) or pass --exec\n"
        )
    out.write(f"{UNIT_NAME} is enabled in the image and starts on its first boot\n")
    return 0
