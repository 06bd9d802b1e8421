"""A real ``swarmdeploy manager`` process on loopback for the CLI tests."""

from __future__ import annotations

import contextlib
import os
import pathlib
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

from swarmdeploy.client import ApiError, ManagerClient
from swarmdeploy.localfleet import free_port


@contextlib.contextmanager
def running_manager(
    data_dir: pathlib.Path,
    *args: str,
    log_file: pathlib.Path | None = None,
    nofile: int | None = None,
) -> Iterator[tuple[str, str]]:
    """Start a manager on ``data_dir`` with ``args`` and a fresh admin key, wait until it is
    healthy (30 s at most), yield ``(base URL, admin key)``; SIGTERM it and wait at the end.
    With ``log_file`` its stderr (the log) is written there, else discarded; ``nofile``
    lowers its open-file limit."""
    port, key = free_port(), secrets.token_urlsafe(24)
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(data_dir)]
    cmd += ["--http-port", str(port), *args]
    env = {**os.environ, "SWARMDEPLOY_ADMIN_KEY": key}

    def limit() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    with contextlib.ExitStack() as files:
        log = files.enter_context(log_file.open("wb")) if log_file else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log,
                                preexec_fn=limit)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        with ManagerClient(base, None) as probe:
            while True:
                try:
                    probe.request("GET", "/health")
                    break
                except ApiError:
                    assert proc.poll() is None, "manager exited"
                    assert time.monotonic() < deadline, "manager not healthy in time"
                    time.sleep(0.1)  # polling the condition above, bounded by the deadline
        yield base, key
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
