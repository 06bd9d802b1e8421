"""Start-up hardening: process settings (in a child process), binaries, data dir checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from swarmdeploy.agent.errors import HardeningError
from swarmdeploy.agent.hardening import check_binaries, check_data_dir

_PROBE = """
import ctypes, json, os, resource
from swarmdeploy.agent.hardening import harden_process
report = harden_process()
umask = os.umask(0o022)
libc = ctypes.CDLL(None)
print(json.dumps({
    "report": [report.core_dumps_disabled, report.dumpable_cleared],
    "umask": umask,
    "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
    "dumpable": libc.prctl(3, 0, 0, 0, 0),
}))
"""


def test_harden_process_sets_umask_core_and_dumpable() -> None:
    # In a child: the settings are process-wide and must not leak into the test runner.
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout
    result = json.loads(out)
    assert result == {"report": [True, True], "umask": 0o077, "core": [0, 0], "dumpable": 0}


_MEMORY_PROBE = """
import json, sys, threading
from swarmdeploy.agent.hardening import limit_malloc_arenas, release_free_memory
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
def thread_arenas():  # glibc reserves 64 MB of address space for each further arena
    count = 0
    for line in open("/proc/self/maps"):
        fields = line.split()
        low, high = (int(x, 16) for x in fields[0].split("-"))
        count += fields[1] == "---p" and len(fields) == 5 and high - low > 32 << 20
    return count
limited = limit_malloc_arenas() if sys.argv[1] == "limit" else None
def worker():
    blocks = [bytes(range(256)) * 4 for _ in range(20_000)]  # about 20 MB in 1 kB blocks
    pin = bytes(range(256)) * 4  # above them: free() alone cannot shrink the heap
    del blocks
    kept.append(pin)
kept = []
thread = threading.Thread(target=worker)
thread.start()
thread.join()
before = rss_kb()
released = release_free_memory()
print(json.dumps([limited, thread_arenas(), released, before, rss_kb()]))
"""


def _memory_probe(mode: str) -> list[object]:
    # In a child: mallopt is process-wide and must not change the test runner.
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, mode], capture_output=True, text=True, check=True
    ).stdout
    result: list[object] = json.loads(out)
    return result


def test_one_malloc_arena_serves_every_thread() -> None:
    assert _memory_probe("limit")[:2] == [True, 0]  # glibc (the reference platform)
    assert _memory_probe("default")[:2] == [None, 1]  # the probe sees an arena otherwise


def test_freed_heap_memory_goes_back_to_the_system() -> None:
    _, _, released, before, after = _memory_probe("limit")
    assert released is True
    assert isinstance(before, int) and isinstance(after, int)
    assert after < before - 10_000  # the thread's freed 20 MB are no longer resident


def test_check_binaries_finds_shell_and_names() -> None:
    found = check_binaries(["sh", "/bin/sh"])
    assert found["/bin/sh"] == "/bin/sh" and os.path.basename(found["sh"]) == "sh"


def test_check_binaries_lists_every_missing_program(tmp_path: Path) -> None:
    not_exec = tmp_path / "tool"
    not_exec.write_text("")
    with pytest.raises(HardeningError) as err:
        check_binaries(["no-such-program-xyz", str(not_exec), "/bin/sh"])
    assert str(err.value).endswith(f"no-such-program-xyz, {not_exec}")


def test_check_binaries_uses_given_path(tmp_path: Path) -> None:
    tool = tmp_path / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert check_binaries(["mytool"], path=str(tmp_path))["mytool"] == str(tool)


def test_data_dir_created_private(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    assert check_data_dir(data) == data.resolve()
    assert data.stat().st_mode & 0o777 == 0o700


def test_missing_data_dir_without_create_refused(tmp_path: Path) -> None:
    with pytest.raises(HardeningError, match="not usable"):
        check_data_dir(tmp_path / "agent", create=False)


def test_world_writable_data_dir_refused(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    data.mkdir()
    data.chmod(0o777)
    with pytest.raises(HardeningError, match="world-writable"):
        check_data_dir(data)


def test_data_dir_below_world_writable_parent_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    (shared / "agent").mkdir(parents=True)
    shared.chmod(0o777)
    with pytest.raises(HardeningError, match="sticky"):
        check_data_dir(shared / "agent")
    shared.chmod(0o1777)  # like /tmp: others cannot rename our entries
    assert check_data_dir(shared / "agent")


def test_data_dir_that_is_a_file_refused(tmp_path: Path) -> None:
    (tmp_path / "agent").write_text("")
    with pytest.raises(HardeningError, match="not a directory"):
        check_data_dir(tmp_path / "agent")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the dir away")
def test_data_dir_of_other_user_refused(tmp_path: Path) -> None:
    data = tmp_path / "agent"
    data.mkdir(mode=0o700)
    os.chown(data, 65534, 65534)
    with pytest.raises(HardeningError, match="belongs to uid 65534"):
        check_data_dir(data)
