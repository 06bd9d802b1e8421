"""Salt 3008.3 as a runnable peer for ``python -m bench salt``, all on loopback.

* :func:`salt_venv` installs Salt into a venv of its own once (cached below ``--cache``; a
  marker file written after a successful install tells a complete venv from a broken one);
* :class:`SaltPeer` writes a master and N minion configurations (``root_dir`` per daemon,
  free loopback ports, ``auto_accept``, ``worker_threads: 2``; the configuration of
  ``dependencies.md`` §4), starts ``salt-master`` and the ``salt-minion`` daemons in the
  foreground as child processes (working directory below the root, so that nothing can be
  missed at the end), waits until every minion answers ``test.ping``, runs ``state.apply``
  both through the ``salt`` command line and through ``LocalClient`` in a warm helper process,
  and stops everything (SIGTERM to each daemon, then SIGKILL to anything still below the root).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from swarmdeploy.localfleet import free_port, processes_below

SALT_VERSION = "3008.3"
MARKER = ".swarmdeploy-bench-ok"

#: ``sls`` of the benchmark: copy the fresh file, then run a command on it.
STATE = """\
{% set dest = '@ROOT@/deployed/' ~ grains['id'] ~ '/payload.bin' %}
payload:
  file.managed:
    - name: {{ dest }}
    - source: salt://payload.bin
    - makedirs: True
checksum:
  cmd.run:
    - name: sha256sum {{ dest }}
    - require:
      - file: payload
"""

#: Marks the helper's answer lines (Salt itself may print to stdout, e.g. while the master
#: is not up yet).
ANSWER = "@@answer "

#: Runs in the Salt venv: one JSON request per line in, one JSON answer per line out.
HELPER = """\
import json, sys, time
import salt.client
client = salt.client.LocalClient(c_path=sys.argv[1])
for line in sys.stdin:
    req = json.loads(line)
    t0 = time.perf_counter()
    fun, args = ("test.ping", []) if req["op"] == "ping" else ("state.apply", ["bench"])
    try:
        ret, error = client.cmd("*", fun, args, timeout=req["timeout"]), ""
    except Exception as exc:
        ret, error = {}, f"{type(exc).__name__}: {exc}"
    answer = {"s": time.perf_counter() - t0, "ret": ret, "error": error}
    print("@@answer " + json.dumps(answer, default=str), flush=True)
"""


class SaltError(Exception):
    """Salt could not be installed, started or did not answer as expected."""


def salt_venv(cache: Path) -> Path:
    """The venv holding Salt :data:`SALT_VERSION` below ``cache``; installed on first use."""
    venv = cache / f"salt-{SALT_VERSION}-venv"
    if (venv / MARKER).exists():
        return venv
    print(f"salt: installing Salt {SALT_VERSION} into {venv} (once) ...", flush=True)
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", f"salt=={SALT_VERSION}"]
    done = subprocess.run(pip, capture_output=True, text=True)
    if done.returncode != 0:
        raise SaltError(f"pip install salt=={SALT_VERSION} failed:\n{done.stderr[-2000:]}")
    check = [str(venv / "bin" / "python"), "-c", "import salt.version as v; print(v.__version__)"]
    version = subprocess.run(check, capture_output=True, text=True, check=True).stdout.strip()
    if version != SALT_VERSION:
        raise SaltError(f"the venv holds Salt {version}, not {SALT_VERSION}")
    (venv / MARKER).write_text(version + "\n")
    return venv


def tree(pid: int) -> list[psutil.Process]:
    """Process ``pid`` and all its descendants that are alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class SaltPeer:
    """A salt-master and ``minions`` salt-minions below ``root`` (see the module docstring)."""

    def __init__(self, venv: Path, root: Path, minions: int) -> None:
        self.venv, self.root, self.count = venv, root, minions
        self.ids = [f"m{i}" for i in range(1, minions + 1)]
        self.master: subprocess.Popen[bytes] | None = None
        self.minions: dict[str, subprocess.Popen[bytes]] = {}
        self._helper: subprocess.Popen[str] | None = None
        self.srv = root / "srv"

    # -- configuration ---------------------------------------------------------------------
    def configure(self) -> None:
        """Write the master's and every minion's configuration and the state file."""
        pub, ret = free_port(), free_port()
        r = self.root
        self.srv.mkdir(parents=True, exist_ok=True)
        (self.srv / "bench.sls").write_text(STATE.replace("@ROOT@", str(r)))
        (r / "master-etc").mkdir(parents=True, exist_ok=True)
        (r / "master-etc" / "master").write_text(
            f"root_dir: {r}/master-root\nconf_file: {r}/master-etc/master\n"
            f"interface: 127.0.0.1\npublish_port: {pub}\nret_port: {ret}\n"
            f"auto_accept: true\nuser: root\nworker_threads: 2\n"
            f"file_roots:\n  base:\n    - {self.srv}\nlog_level_logfile: info\n"
        )
        for mid in self.ids:
            etc = r / f"{mid}-etc"
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "minion").write_text(
                f"root_dir: {r}/{mid}-root\nid: {mid}\nmaster: 127.0.0.1\n"
                f"master_port: {ret}\npublish_port: {pub}\nuser: root\nlog_level_logfile: info\n"
            )

    def write_payload(self, data: bytes) -> None:
        """The file the next ``state.apply`` copies to every minion."""
        (self.srv / "payload.bin").write_bytes(data)

    # -- processes -------------------------------------------------------------------------
    def _daemon(self, name: str, etc: str) -> subprocess.Popen[bytes]:
        cmd = [str(self.venv / "bin" / name), "-c", str(self.root / etc), "-l", "warning"]
        log = (self.root / f"{etc}.log").open("ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.root)
        log.close()
        return proc

    def start(self, timeout_s: float = 180.0) -> float:
        """Start the master and every minion; wait until all answer ``test.ping``. Returns
        the seconds from starting the minions until all answered."""
        self.master = self._daemon("salt-master", "master-etc")
        time.sleep(2.0)  # the LocalClient needs the master's publisher; pings retry anyway
        t0 = time.monotonic()
        for mid in self.ids:
            self.minions[mid] = self._daemon("salt-minion", f"{mid}-etc")
        helper = [str(self.venv / "bin" / "python"), "-c", HELPER]
        helper.append(str(self.root / "master-etc" / "master"))
        with (self.root / "helper.log").open("ab") as log:
            self._helper = subprocess.Popen(helper, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True, cwd=self.root)  # fmt: skip
        deadline = t0 + timeout_s
        while True:
            answered = self.request("ping", timeout_s=5)["ret"]  # an error: none answered
            if len(answered) >= self.count:
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise SaltError(f"only {sorted(answered)} answered test.ping in {timeout_s} s")
            self._check_alive()

    def _check_alive(self) -> None:
        for name, proc in [("salt-master", self.master), *self.minions.items()]:
            if proc is not None and proc.poll() is not None:
                raise SaltError(f"{name} exited ({proc.returncode}); see {self.root}")

    def request(self, op: str, timeout_s: float) -> dict[str, Any]:
        """Ask the warm ``LocalClient`` helper (``ping`` or ``apply``); its answer."""
        helper = self._helper
        assert helper is not None and helper.stdin is not None and helper.stdout is not None
        helper.stdin.write(json.dumps({"op": op, "timeout": timeout_s}) + "\n")
        helper.stdin.flush()
        while not (line := helper.stdout.readline()).startswith(ANSWER):
            if not line:
                raise SaltError(f"the LocalClient helper ended; see {self.root / 'helper.log'}")
        answer: dict[str, Any] = json.loads(line.removeprefix(ANSWER))
        return answer

    def apply_cli(self, timeout_s: float = 120.0) -> tuple[float, dict[str, Any]]:
        """``salt '*' state.apply bench`` as a user types it; wall seconds and its output."""
        cmd = [str(self.venv / "bin" / "salt"), "-c", str(self.root / "master-etc"), "*"]
        cmd += ["state.apply", "bench", "--out=json", "--static", f"--timeout={int(timeout_s)}"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root,
                              timeout=timeout_s + 30)  # fmt: skip
        wall = time.perf_counter() - t0
        try:
            out: dict[str, Any] = json.loads(done.stdout)
        except ValueError:
            raise SaltError(f"salt state.apply printed no JSON: {done.stderr[-1000:]}") from None
        return wall, out

    def daemon_pids(self) -> tuple[int, list[int]]:
        """The master's PID and each minion's main PID."""
        assert self.master is not None
        return self.master.pid, [p.pid for p in self.minions.values()]

    def stop(self) -> list[str]:
        """SIGTERM to the helper, every minion and the master; SIGKILL to whatever still
        runs below the root after 20 s. Returns what had to be killed."""
        procs = [p for p in (self._helper, *self.minions.values(), self.master) if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        leftovers = processes_below(self.root)
        for left in leftovers:
            try:
                left.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(leftovers, timeout=5)
        self.master, self.minions, self._helper = None, {}, None
        return [f"{p.pid}" for p in leftovers]


def verify_apply(ret: dict[str, Any], ids: list[str], sha256: str) -> list[str]:
    """Problems with one ``state.apply`` answer: a minion missing, a state failed, or the
    command's output not showing the fresh file's SHA-256."""
    problems = []
    for mid in ids:
        states = ret.get(mid)
        if not isinstance(states, dict):
            problems.append(f"{mid}: {str(states)[:200]}")
            continue
        failed = [k for k, v in states.items() if not (isinstance(v, dict) and v.get("result"))]
        changes = [v["changes"] for v in states.values()
                   if isinstance(v, dict) and isinstance(v.get("changes"), dict)]  # fmt: skip
        stdout = " ".join(str(c.get("stdout", "")) for c in changes)
        if failed:
            problems.append(f"{mid}: failed states {failed}")
        elif sha256 not in stdout:
            problems.append(f"{mid}: command output lacks the new file's SHA-256")
    return problems
