"""The agent's building blocks stay lean: no server stack is imported (idle RSS budget)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.agent.helpers import SERVER_STACK

MODULES = [
    "archive",
    "errors",
    "fsutil",
    "hardening",
    "health",
    "output",
    "process",
    "resources",
    "runner",
    "sdnotify",
    "spool",
    "state",
    "supervise",
]
FORBIDDEN = [
    *SERVER_STACK,
    # heavy stdlib modules the agent avoids at import time (archive imports them on use)
    "tarfile",
    "zipfile",
    "lzma",
    "bz2",
    "tempfile",
    "secrets",
]


def test_agent_modules_import_nothing_heavy() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import swarmdeploy.agent.{m}\n" for m in MODULES)
        + f"print(json.dumps([m for m in {FORBIDDEN!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
