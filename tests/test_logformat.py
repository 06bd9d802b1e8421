"""``--log-format``: readable text by default, one JSON object per line for log shippers."""

from __future__ import annotations

import io
import json
import logging
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from swarmdeploy.logformat import TEXT_FORMAT, JsonFormatter, check_format, configure


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("swarmdeploy.x", logging.WARNING, "f.py", 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_json_line_has_time_level_logger_message_and_context() -> None:
    line = JsonFormatter().format(_record("task %s: a\nb", "k1", task="k1", target="pi-7"))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "swarmdeploy.x"
    assert doc["message"] == "task k1: a\nb"
    assert (doc["task"], doc["target"]) == ("k1", "pi-7")
    assert doc["time"].endswith("Z") and doc["time"][10] == "T" and len(doc["time"]) == 24


def test_json_line_without_context_and_with_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    doc = json.loads(JsonFormatter().format(record))
    assert "task" not in doc and "target" not in doc
    assert "ValueError: boom" in doc["exc"]


def test_configure_json_and_text(restore_root: None) -> None:
    out = io.StringIO()
    configure("INFO", "JSON", stream=out, force=True)
    logging.getLogger("swarmdeploy.t").info("one", extra={"task": "k"})
    logging.getLogger("swarmdeploy.t").debug("hidden")
    [line] = out.getvalue().splitlines()
    configure("INFO", "text", stream=io.StringIO())  # configured already: a no-op
    logging.getLogger("swarmdeploy.t").info("two")
    assert len(out.getvalue().splitlines()) == 2
    assert json.loads(line)["task"] == "k"
    text = io.StringIO()
    configure("DEBUG", "text", stream=text, force=True)
    logging.getLogger("swarmdeploy.t").debug("two")
    assert text.getvalue().rstrip().endswith("DEBUG swarmdeploy.t: two")
    assert TEXT_FORMAT.startswith("%(asctime)s")


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="unknown log format 'xml': expected text or json"):
        check_format("xml")


def test_agent_refuses_an_unknown_log_format(tmp_path: pathlib.Path) -> None:
    cmd = [sys.executable, "-m", "swarmdeploy", "agent", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--log-format", "xml"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2
    assert "--log-format: unknown log format 'xml'" in done.stderr


def test_manager_refuses_an_unknown_log_format(tmp_path: pathlib.Path) -> None:
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*cmd, "--log-format", "xml"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2 and "log_format" in done.stderr, done.stderr
