"""The bubblewrap sandbox with real bwrap: confinement, network, uid, limits, output, stop.

Needs ``bwrap`` (Debian package ``bubblewrap``) and root (the agent switches to uid 65534).
Without them the tests are skipped with the reason -- except in CI, where they fail.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import psutil
import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import ConfigError, LaunchError
from swarmdeploy.agent.grants import sandbox_grants
from swarmdeploy.agent.process import (
    RUN_ID_VAR,
    Child,
    Launcher,
    LaunchSpec,
    child_env,
)
from swarmdeploy.agent.runner import new_run_id
from swarmdeploy.agent.sandbox import (
    NOBODY,
    BwrapLauncher,
    FallbackLauncher,
    Rlimits,
    SandboxConfig,
    SandboxGrants,
    SandboxPolicy,
    detect_bwrap,
    make_launcher,
)
from swarmdeploy.agent.seccomp import filter_program
from swarmdeploy.agent.taskdirs import hand_over, tree_digest
from tests.agent.helpers import Recorder, connect_probe, eventually, kill_marked_now

GRACE_S = 2.0
#: A Python the sandbox user can execute (the venv's lives below /root, mode 0700).
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "python3"


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@dataclass
class Dirs:
    """An agent data dir (0700, with a key file) holding one task's dirs."""

    data: Path
    task: Path
    state: Path
    key: Path


@pytest.fixture
def dirs() -> Iterator[Dirs]:
    # Not below /tmp: the sandbox mounts its own /tmp, which would hide the data dir anyway.
    base = Path(tempfile.mkdtemp(prefix="sd-sandbox-", dir="/var/tmp"))
    try:
        yield _make_dirs(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _make_dirs(base: Path) -> Dirs:
    data = base / "data"
    task, state = data / "tasks" / "T1", data / "state" / "T1"
    task.mkdir(parents=True)
    state.mkdir(parents=True)
    data.chmod(0o700)
    key = data / "identity.key"
    key.write_text("agent secret\n")
    return Dirs(data, task, state, key)


@pytest.fixture
def config(dirs: Dirs) -> SandboxConfig:
    found = detect_bwrap()
    _need(found is not None, "bubblewrap (bwrap) is not installed or cannot run here")
    _need(os.geteuid() == 0, "the sandbox tests switch to uid 65534 and need root")
    return SandboxConfig.detect(hidden=[dirs.data], seccomp_dir=dirs.data)


@pytest.fixture
def marker() -> Iterator[str]:
    run_id = new_run_id()
    yield run_id
    kill_marked_now(run_id)


def _launcher(config: SandboxConfig, dirs: Dirs, **policy: object) -> BwrapLauncher:
    chosen = SandboxPolicy(**policy)  # type: ignore[arg-type]
    hand_over([dirs.task, dirs.state], chosen, config)
    return BwrapLauncher(config, chosen, writable=[dirs.task, dirs.state])


async def _run(
    launcher: Launcher, dirs: Dirs, command: str, marker: str = ""
) -> tuple[int, Recorder]:
    rec = Recorder()
    spec = LaunchSpec(command, dirs.task, child_env({RUN_ID_VAR: marker or new_run_id()}))
    child = Child.spawn(spec, launcher, rec.line, 16384)
    code = await asyncio.wait_for(child.wait(), 20)
    await child.drain(5)
    return code, rec


def _out(rec: Recorder) -> list[str]:
    return [line.text for line in rec.lines if not line.error]


async def test_command_runs_as_nobody_in_sandbox_output_captured(
    config: SandboxConfig, dirs: Dirs
) -> None:
    code, rec = await _run(
        _launcher(config, dirs), dirs, "id -u; id -g; hostname; pwd; echo oops >&2; exit 3"
    )
    assert code == 3
    assert _out(rec) == [str(NOBODY), str(NOBODY), "sandbox", str(dirs.task)]
    assert [line.text for line in rec.lines if line.error] == ["oops"]


async def test_writes_in_task_and_state_dirs_succeed(config: SandboxConfig, dirs: Dirs) -> None:
    code, _ = await _run(
        _launcher(config, dirs), dirs, f"echo a > out.txt && echo b > {dirs.state}/s.txt"
    )
    assert code == 0
    assert (dirs.task / "out.txt").read_text() == "a\n"
    assert (dirs.state / "s.txt").stat().st_uid == NOBODY


async def test_cannot_write_outside_its_dirs(
    config: SandboxConfig, dirs: Dirs, tmp_path: Path
) -> None:
    targets = ["/etc/sandbox-probe", "/root/sandbox-probe", "/usr/sandbox-probe"]
    targets += [str(dirs.data / "probe"), str(tmp_path / "probe"), str(dirs.key)]
    script = "; ".join(f"(echo x >> {t}) 2>/dev/null && echo WROTE {t}" for t in targets)
    code, rec = await _run(_launcher(config, dirs), dirs, script + "; true")
    assert code == 0
    assert not [t for t in _out(rec) if t.startswith("WROTE")]
    _assert_untouched(targets[:-1], dirs.key)


def _loosen(dirs: Dirs) -> None:
    dirs.data.chmod(0o755)
    dirs.key.chmod(0o644)


def _assert_untouched(created: list[str], key: Path) -> None:
    assert not [t for t in created if Path(t).exists()]
    assert key.read_text() == "agent secret\n"


async def test_agent_data_dir_is_hidden(config: SandboxConfig, dirs: Dirs) -> None:
    _loosen(dirs)  # readable by anyone: only the tmpfs over the data dir keeps it out
    code, rec = await _run(
        _launcher(config, dirs), dirs, f"cat {dirs.key} 2>&1 || true; ls -a {dirs.data}"
    )
    assert code == 0
    assert "agent secret" not in _out(rec)
    assert dirs.key.name not in _out(rec)


async def test_read_only_task_dir_for_run_stage(config: SandboxConfig, dirs: Dirs) -> None:
    policy = SandboxPolicy()
    hand_over([dirs.task, dirs.state], policy, config)
    launcher = BwrapLauncher(config, policy, writable=[dirs.state], readonly=[dirs.task])
    code, _ = await _run(launcher, dirs, f"echo x > {dirs.state}/ok; echo x > {dirs.task}/no")
    assert code != 0
    assert (dirs.state / "ok").exists() and not (dirs.task / "no").exists()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    yield server
    server.close()


async def test_network_off_cannot_reach_loopback_listener(
    config: SandboxConfig, dirs: Dirs, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    code, rec = await _run(_launcher(config, dirs), dirs, connect_probe(SYSTEM_PYTHON, port))
    assert code == 0
    assert _out(rec)[0].startswith("FAILED")


async def test_network_on_reaches_loopback_listener(
    config: SandboxConfig, dirs: Dirs, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    code, rec = await _run(
        _launcher(config, dirs, network=True), dirs, connect_probe(SYSTEM_PYTHON, port)
    )
    assert code == 0
    assert _out(rec) == ["CONNECTED"]
    listener.accept()[0].close()


async def test_resource_limits_apply(config: SandboxConfig, dirs: Dirs) -> None:
    limits = Rlimits(cpu_s=7, nofile=16, fsize_bytes=4096)
    opener = f"{SYSTEM_PYTHON} -c \"import os; [os.open('/dev/null', 0) for _ in range(40)]\""
    script = (
        f"ulimit -t; ulimit -n; {opener} 2>&1 | tail -1; head -c 8192 /dev/zero > big; wc -c < big"
    )
    _, rec = await _run(_launcher(config, dirs, rlimits=limits), dirs, script)
    out = _out(rec)
    assert out[:2] == ["7", "16"]
    assert "Too many open files" in out[2]
    assert out[3] == "4096"  # the write beyond RLIMIT_FSIZE failed


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _alive(procs: list[psutil.Process]) -> list[int]:
    out = []
    for proc in procs:
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


async def test_agent_death_kills_the_sandbox(config: SandboxConfig, dirs: Dirs) -> None:
    launcher = _launcher(config, dirs)
    spec = LaunchSpec("sleep 300", dirs.task, child_env())
    argv, env = launcher.argv(spec), launcher.env(spec)
    parent_code = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen({argv!r}, cwd={str(dirs.task)!r}, env={env!r})\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    fake_agent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", parent_code, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert fake_agent.stdout is not None
        bwrap_pid = int(await fake_agent.stdout.readline())
        await eventually(lambda: len(_descendants(bwrap_pid)) >= 2, 10)
        inside = [psutil.Process(bwrap_pid), *_descendants(bwrap_pid)]
    finally:
        fake_agent.kill()
        await fake_agent.wait()
    await eventually(lambda: not _alive(inside), 5)


def test_environment_passes_through_without_argv(config: SandboxConfig, dirs: Dirs) -> None:
    launcher = _launcher(config, dirs)
    spec = LaunchSpec("echo $API_TOKEN; echo $HOME # s3cr3t-command", dirs.task, child_env())
    spec = LaunchSpec(spec.command, spec.cwd, {**spec.env, "API_TOKEN": "s3cr3t-value"})
    argv, env = launcher.argv(spec), launcher.env(spec)
    # /proc/<pid>/cmdline is public: neither the environment nor the command is in argv.
    assert not any("s3cr3t" in arg for arg in argv)
    done = subprocess.run(argv, cwd=dirs.task, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == ["s3cr3t-value", str(dirs.task)]


def test_missing_bind_path_launch_error(config: SandboxConfig, dirs: Dirs) -> None:
    launcher = BwrapLauncher(config, SandboxPolicy(), writable=[dirs.task / "missing"])
    with pytest.raises(LaunchError, match="does not exist"):
        launcher.argv(LaunchSpec("true", dirs.task, child_env()))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (SandboxPolicy(rw_paths=("/var/log",)), r"does not grant: path /var/log \(rw\)"),
        (SandboxPolicy(ro_paths=("/var/log",)), "does not grant: path /var/log"),
        (SandboxPolicy(rw_paths=("/srv/data/../../etc",)), "normalised"),
        (SandboxPolicy(ro_paths=("relative",)), "absolute"),
        (SandboxPolicy(devices=("/dev/ttyUSB0",)), "does not grant: device /dev/ttyUSB0"),
        (SandboxPolicy(devices=("/etc/hostname",)), "/etc/hostname .not a device node"),
        (SandboxPolicy(ro_paths=("/srv/data/nothing-here",)), "does not exist on this device"),
        (SandboxPolicy(group_names=("video",)), "does not grant: group video"),
        (SandboxPolicy(groups=(44,)), "does not grant: gid 44"),
        (
            SandboxPolicy(rlimits=Rlimits(data_bytes=1 << 40)),
            r"sandbox.limits.memoryBytes 1099511627776 \(this device's ceiling is 536870912",
        ),
        (SandboxPolicy(uid=0), "root"),
        (
            SandboxPolicy(uid=1000, gid=1000),
            "uid 1000 gid 1000 .this device runs tasks as uid 65534",
        ),
        (SandboxPolicy(groups=(0,)), "root"),
    ],
)
def test_policy_outside_agent_config_refused(policy: SandboxPolicy, message: str) -> None:
    grants = SandboxGrants(rw_prefixes=(Path("/srv/data"),), devices=("/etc/hostname",))
    config = SandboxConfig(bwrap="/usr/bin/bwrap", grants=grants)
    with pytest.raises(LaunchError, match=message):
        BwrapLauncher(config, policy)


def test_policy_inside_agent_config_accepted() -> None:
    grants = SandboxGrants(
        rw_prefixes=(Path("/"),), devices=("/dev/null",), groups=(("video", 44),)
    )
    config = SandboxConfig(bwrap="/usr/bin/bwrap", grants=grants)
    policy = SandboxPolicy(
        rw_paths=("/tmp",), devices=("/dev/null",), group_names=("video",), groups=(44,)
    )
    BwrapLauncher(config, policy)


def test_policy_is_a_strict_wire_struct() -> None:
    policy = SandboxPolicy(network=True, rlimits=Rlimits(cpu_s=5), rw_paths=("/srv/x",))
    data = msgspec.json.encode(policy, order="sorted")
    assert msgspec.json.decode(data, type=SandboxPolicy) == policy
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"network": true, "netwrk": false}', type=SandboxPolicy)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"uid": 0}', type=SandboxPolicy)


async def test_fallback_runs_as_nobody_and_warns(
    dirs: Dirs, caplog: pytest.LogCaptureFixture
) -> None:
    _need(os.geteuid() == 0, "the fallback switches to uid 65534 and needs root")
    config = SandboxConfig.detect(probe=False)
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.agent.sandbox"):
        launcher = make_launcher(
            SandboxConfig(bwrap=None, setpriv=config.setpriv, prlimit=config.prlimit),
            SandboxPolicy(rlimits=Rlimits(nofile=32)),
        )
    assert isinstance(launcher, FallbackLauncher)
    assert "bubblewrap is not available" in caplog.text
    code, rec = await _run(launcher, dirs, "id -u; ulimit -n")
    assert code == 0 and _out(rec) == [str(NOBODY), "32"]


def test_detect_bwrap_missing_returns_none(tmp_path: Path) -> None:
    assert detect_bwrap(path=str(tmp_path)) is None


def test_detect_bwrap_failing_binary_returns_none(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    assert detect_bwrap(path=str(tmp_path), probe=False) == str(fake)
    with caplog.at_level(logging.WARNING, logger="swarmdeploy.agent.sandbox"):
        assert detect_bwrap(path=str(tmp_path)) is None
    assert "No permissions" in caplog.text


def test_tree_digest_never_opens_fifos(tmp_path: Path) -> None:
    root = tmp_path / "install"
    root.mkdir()
    os.mkfifo(root / "pipe")  # opening it for reading would block for ever
    before = tree_digest(root)
    (root / "pipe").chmod(0o600)
    assert tree_digest(root) != before


def test_hand_over_does_not_follow_symlinks(tmp_path: Path) -> None:
    _need(os.geteuid() == 0, "chown needs root")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    top = tmp_path / "task"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "link").symlink_to(outside)
    hand_over([top], SandboxPolicy(), SandboxConfig(bwrap=None))
    assert (top / "sub").stat().st_uid == NOBODY
    assert (top / "sub" / "link").lstat().st_uid == NOBODY
    assert (outside / "secret").stat().st_uid == 0 and outside.stat().st_uid == 0


def test_tree_digest_detects_changes(tmp_path: Path) -> None:
    root = tmp_path / "install"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "robot").write_text("#!/bin/sh\necho hi\n")
    (root / "link").symlink_to("bin/robot")
    before = tree_digest(root)
    assert tree_digest(root) == before

    def relink() -> None:
        (root / "link").unlink()
        (root / "link").symlink_to("/etc/shadow")

    changes: list[Callable[[], object]] = [
        lambda: (root / "bin" / "robot").write_text("#!/bin/sh\necho pwned\n"),
        lambda: (root / "bin" / "robot").chmod(0o4755),
        lambda: (root / "extra").write_text(""),
        relink,
    ]
    seen = {before}
    for change in changes:
        change()
        digest = tree_digest(root)
        assert digest not in seen
        seen.add(digest)


async def test_seccomp_filter_keeps_threads_fork_and_exec_working(
    config: SandboxConfig, dirs: Dirs
) -> None:
    assert config.seccomp is not None or filter_program() is None
    _need(config.seccomp is not None, "no seccomp table for this architecture")
    threads = "import threading as t; x = t.Thread(target=print, args=('THREAD',)); x.start()"
    script = f'{SYSTEM_PYTHON} -c "{threads}"; (echo FORKED) & wait; ls /proc/self/fd | wc -l'
    code, rec = await _run(_launcher(config, dirs), dirs, script)
    assert code == 0 and _out(rec) == ["THREAD", "FORKED", "4"]  # 0-2 + the one ls opened


def test_seccomp_program_shape() -> None:
    for arch in ("x86_64", "aarch64"):
        program = filter_program(arch)
        assert program is not None and len(program) % 8 == 0 and len(program) // 8 < 256
    assert filter_program("armv7l") is None  # no table: the agent reports seccomp false


def test_grants_resolve_groups_on_this_device(tmp_path: Path) -> None:
    settings = AgentSettings(data_dir=tmp_path, allow_groups=("dialout",), max_processes=9)
    grants = sandbox_grants(settings)
    assert grants.groups == (("dialout", grp.getgrnam("dialout").gr_gid),)
    assert grants.ceilings.processes == 9
    unknown = AgentSettings(data_dir=tmp_path, allow_groups=("no-such-group-here",))
    with pytest.raises(ConfigError, match="--allow-group 'no-such-group-here': no such group"):
        sandbox_grants(unknown)


def test_process_limit_is_left_out_where_it_would_count_the_agents_own_processes() -> None:
    spec = LaunchSpec("true", Path("/"), {})
    root = FallbackLauncher(SandboxConfig(bwrap=None), SandboxPolicy(), quiet=True)
    assert "--nproc=256" in root.argv(spec) and f"--data={512 << 20}" in root.argv(spec)
    own = SandboxConfig(bwrap=None, privileged=False)
    argv = FallbackLauncher(own, SandboxPolicy(rlimits=Rlimits(nproc=9)), quiet=True).argv(spec)
    assert not any(arg.startswith("--nproc") for arg in argv) and f"--data={512 << 20}" in argv
    limits = own.report()["limits"]
    assert isinstance(limits, dict) and limits["processes"] == 0
