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


#: What the running agent must not keep loaded (docs/adr/0006): the descriptor parser (about
#: 0.7 MB; the agent needs only its bounds and patterns, in ``descriptor_common``) and
#: ``http.client`` with the email package (about 1 MB; loaded by an HTTP health check only).
NOT_LONG_LIVED = ["swarmdeploy.protocol.descriptor", "http.client", "email", "zipfile", "tarfile"]


def test_the_running_agent_keeps_neither_the_descriptor_parser_nor_an_http_client() -> None:
    code = (
        "import json, sys\n"
        "from swarmdeploy.agent.main import keep_lean, import_long_lived\n"
        "keep_lean()\n"
        "import_long_lived()\n"
        "import swarmdeploy.agent.daemon\n"
        f"print(json.dumps([m for m in {NOT_LONG_LIVED!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
