"""Every ``swarmdeploy agent install|uninstall|provision`` line of the operator guide and the
ADRs parses with the real parser (the guide cannot drift from the options)."""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

from swarmdeploy.agent.provision.cli import COMMANDS, build_parser

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ("docs/operator-guide.md", "docs/adr/0008-device-provisioning.md", "README.md")
_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def guide_lines() -> list[str]:
    """The ``swarmdeploy agent <command>`` lines of the shell blocks (continuations joined)."""
    found = []
    for doc in DOCS:
        for block in _BLOCK.findall((ROOT / doc).read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                for start, word in enumerate(words):
                    if word.endswith("swarmdeploy") and words[start + 1 : start + 2] == ["agent"]:
                        if words[start + 2 : start + 3] and words[start + 2] in COMMANDS:
                            found.append(" ".join(words[start + 2 :]))
    return found


def test_the_guide_shows_each_command() -> None:
    shown = {line.split()[0] for line in guide_lines()}
    assert shown >= {"install", "provision"}


@pytest.mark.parametrize("line", guide_lines())
def test_guide_line_parses(line: str) -> None:
    args = build_parser({}).parse_args(shlex.split(line))
    assert args.command in COMMANDS
