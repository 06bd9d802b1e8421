"""What the task descriptor's sections share (:mod:`.descriptor`, :mod:`.descriptor_health`,
:mod:`.descriptor_rollout`): the strict struct base, bounds, the name patterns and the command
check. The agent takes the bounds and patterns from here: it never parses descriptors, and
:mod:`.descriptor` would cost it about 0.7 MB of memory."""

from __future__ import annotations

import re

import msgspec

from swarmdeploy.protocol.errors import DescriptorError

#: Largest number of commands in one stage; a sane bound, not a feature limit.
MAX_COMMANDS = 256
#: Largest length of one shell command in characters.
MAX_COMMAND_CHARS = 16_384
#: Largest number of ids or tags in one target selector.
MAX_SELECTORS = 100_000
#: An app name: also a directory name on devices, so no ``/`` and no leading dot.
APP_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: The app of a task that names none (the original's one deployment per device).
DEFAULT_APP = "default"
#: A group name as ``groupadd`` accepts it (the device resolves it to its own gid).
GROUP_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"

#: A task or rollout group name.
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}\Z")


class Strict(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, rename="camel"):
    """Base of the descriptor's structs: unknown fields refused, camelCase names."""


def check_commands(commands: list[str] | None, path: str) -> None:
    """Refuse too many, empty, too long or NUL-carrying commands (``path`` names the list)."""
    if commands is None:
        return
    if len(commands) > MAX_COMMANDS:
        raise DescriptorError(f"at most {MAX_COMMANDS} commands are allowed", path)
    for i, cmd in enumerate(commands):
        if not cmd.strip():
            raise DescriptorError("a command must not be empty", f"{path}[{i}]")
        if len(cmd) > MAX_COMMAND_CHARS:
            raise DescriptorError(
                f"a command must be at most {MAX_COMMAND_CHARS} characters", f"{path}[{i}]"
            )
        if "\x00" in cmd:
            raise DescriptorError("a command must not contain NUL characters", f"{path}[{i}]")
