"""Run a manager and agents as real local processes on loopback (demo, end-to-end tests, bench).

Every process gets its own data directory below one root; ports are picked once so a
restarted manager comes back on the same addresses. :meth:`LocalFleet.close` stops every
process it started and kills any process still running from a directory below the root (the
deployed commands of a SIGKILLed agent, for instance), so nothing outlives the fleet.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psutil

from swarmdeploy.client import ApiError, ManagerClient

T = TypeVar("T")

#: The PATH agents of a local fleet run with (and hand to deployed commands).
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class FleetError(Exception):
    """A fleet process failed to start or a condition was not met in time."""


class _PortTaken(FleetError):
    """The manager could not listen: a port picked for it was taken meanwhile."""


#: Ports :func:`free_port` picks from start here (above the well-known and registered
#: services a test machine may run).
PORT_FLOOR = 10000

#: Ports this process handed out already (each is given once).
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    """The first port of the kernel's ephemeral range (``ip_local_port_range``)."""
    try:
        text = pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and that this process has not handed
    out before. It is picked below the kernel's ephemeral range: outgoing connections (of
    this process or any other) take their local ports from that range, and one of them could
    take a port picked there before the server that is meant to listen on it has started."""
    top = _ephemeral_floor()
    pick = secrets.SystemRandom()
    if top - PORT_FLOOR >= 1000:
        for _ in range(500):
            port = pick.randrange(PORT_FLOOR, top)
            if port in _handed_out:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port
    while True:  # no room below the ephemeral range: let the kernel pick
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(
    check: Callable[[], T | None], *, timeout_s: float, what: str, interval_s: float = 0.05
) -> T:
    """Poll ``check`` until it returns something truthy; raise :class:`FleetError` on timeout."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while True:
        try:
            value = check()
        except ApiError as exc:  # a manager restarting is "not yet", not a failure
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            hint = f" (last error: {last_error})" if last_error else ""
            raise FleetError(f"timed out after {timeout_s:.0f} s waiting for {what}{hint}")
        time.sleep(interval_s)


def processes_below(root: pathlib.Path) -> list[psutil.Process]:
    """Live processes whose working directory is ``root`` or below it."""
    found = []
    prefix = str(root.resolve())
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info.get("cwd")
        if cwd and (cwd == prefix or cwd.startswith(prefix + os.sep)):
            if proc.info.get("status") != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def running_below(root: pathlib.Path, word: str) -> dict[int, str]:
    """``{pid: command line}`` of live processes below ``root`` whose command line contains
    ``word``; a process that ends while it is looked at is left out (not an error)."""
    found = {}
    for proc in processes_below(root):
        try:
            line = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        if word in line:
            found[proc.pid] = line
    return found


def _tail(path: pathlib.Path, start: int, lines: int = 15) -> str:
    """The last ``lines`` lines a log file got after byte ``start`` (for an error message)."""
    try:
        with path.open("rb") as file:
            file.seek(start)
            text = file.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read it: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)


def _admin_key() -> str:
    """A random admin key that does not start with ``-`` (it is passed as ``--api-key KEY``)."""
    while (key := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return key


class LocalFleet:
    """A manager plus agents, each a real ``swarmdeploy`` process, below ``root``."""

    def __init__(
        self,
        root: pathlib.Path,
        *,
        admin_key: str | None = None,
        manager_args: Sequence[str] = (),
        agent_args: Sequence[str] = (),
    ) -> None:
        self.root = root
        self.admin_key = admin_key or _admin_key()
        self.http_port, self.pub_port, self.sub_port = free_port(), free_port(), free_port()
        self.manager_dir = root / "manager"
        self.manager_args = list(manager_args)
        self.agent_args = list(agent_args)
        self.manager: subprocess.Popen[bytes] | None = None
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self._admin: ManagerClient | None = None
        self._started = False  # the manager ran once: its ports are known to agents

    @property
    def url(self) -> str:
        """Base URL of the manager's REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def api(self) -> ManagerClient:
        """A client authenticated with the bootstrap admin key."""
        if self._admin is None:
            self._admin = ManagerClient(self.url, self.admin_key)
        return self._admin

    # -- manager ---------------------------------------------------------------------------
    def start_manager(self, timeout_s: float = 30.0) -> None:
        """Start the manager (SQLite in its data dir) and wait until it is healthy.

        If its first start finds a port taken (another process bound it after it was
        picked), new ports are picked and it is started again, up to three times; a restart
        keeps its ports, since agents know them."""
        for attempt in range(3):
            try:
                self._start_manager(timeout_s)
            except _PortTaken:
                if self._started or attempt == 2:
                    raise
                self.http_port, self.pub_port, self.sub_port = free_port(), free_port(), free_port()
                if self._admin is not None:  # it points at the old address
                    self._admin.close()
                    self._admin = None
                continue
            self._started = True
            return

    def _start_manager(self, timeout_s: float) -> None:
        self.manager_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(self.manager_dir)]
        cmd += ["--http-port", str(self.http_port), "--zmq-pub-port", str(self.pub_port)]
        cmd += ["--zmq-sub-port", str(self.sub_port), *self.manager_args]
        env = {**os.environ, "SWARMDEPLOY_ADMIN_KEY": self.admin_key}
        log = (self.root / "manager.log").open("ab")
        log_start = log.tell()
        self.manager = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=self.root)
        log.close()
        manager = self.manager

        def healthy() -> bool:
            if manager.poll() is not None:
                tail = _tail(pathlib.Path(log.name), log_start)
                error = _PortTaken if "already in use" in tail else FleetError
                raise error(
                    f"manager exited ({manager.returncode}); see {log.name}; it ends:\n{tail}"
                )
            return bool(self.api.request("GET", "/health")["status"] == "ok")

        wait_for(healthy, timeout_s=timeout_s, what="the manager to become healthy")

    def stop_manager(self, sig: int = signal.SIGTERM) -> int:
        """Stop the manager (``SIGKILL`` simulates a crash); returns its exit status."""
        if self.manager is None:
            return 0
        status = _terminate(self.manager, sig, timeout_s=20)
        self.manager = None
        return status

    # -- agents ----------------------------------------------------------------------------
    def tokens(self, name: str, total: int) -> list[str]:
        """Create a token set and return its plaintext tokens."""
        doc = self.api.request("POST", "/token_sets", params={"name": name, "total": total})
        return list(doc["tokens"])

    def agent_dir(self, agent_id: str) -> pathlib.Path:
        """Data directory of an agent."""
        return self.root / "agents" / agent_id

    def start_agent(
        self,
        agent_id: str,
        *,
        token: str | None = None,
        tags: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        insecure_lab: bool = False,
        trust_anchor: bool = True,
    ) -> subprocess.Popen[bytes]:
        """Start (or restart) an agent process; ``token`` is needed on its first start.

        The agent trusts the manager's deployment CA (``--trust-anchor`` with the manager's
        ``ca.pem``), so it verifies every task as a provisioned device does; ``insecure_lab``
        starts it in insecure lab mode instead; ``trust_anchor=False`` starts it without an
        anchor (it then declines every task, as a device provisioned without one)."""
        data_dir = self.agent_dir(agent_id)
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        cmd = [sys.executable, "-m", "swarmdeploy", "agent", "--data-dir", str(data_dir)]
        cmd += ["--manager", self.url, "--id", agent_id, *self.agent_args, *extra_args]
        if insecure_lab:
            cmd += ["--insecure-lab"]
        elif trust_anchor:
            cmd += ["--trust-anchor", str(self.manager_dir / "ca.pem")]
        if token:
            cmd += ["--token", token]
        if tags:
            cmd += ["--tags", ",".join(tags)]
        log = (self.root / f"agent-{agent_id}.log").open("ab")
        # Deployed commands inherit PATH: give them the system's, as on a device, not this
        # process's (which may point into a home directory the sandbox user cannot enter).
        env = {**os.environ, "PATH": SYSTEM_PATH}
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=data_dir, env=env)
        log.close()
        self.agents[agent_id] = proc
        return proc

    def stop_agent(self, agent_id: str, sig: int = signal.SIGTERM) -> int:
        """Stop an agent (``SIGKILL`` simulates a power cut); returns its exit status."""
        proc = self.agents.pop(agent_id, None)
        return 0 if proc is None else _terminate(proc, sig, timeout_s=20)

    def manager_log(self) -> str:
        """Everything the manager printed so far (all its starts)."""
        path = self.root / "manager.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def agent_log(self, agent_id: str) -> str:
        """Everything the agent printed so far."""
        path = self.root / f"agent-{agent_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- observation -----------------------------------------------------------------------
    def target(self, target_id: str) -> dict[str, Any]:
        """The target document from the API."""
        doc: dict[str, Any] = self.api.request("GET", f"/targets/{target_id}")
        return doc

    def wait_online(self, target_ids: Sequence[str], timeout_s: float = 30.0) -> None:
        """Wait until every target is registered and online."""

        def online() -> bool:
            for target_id in target_ids:
                try:
                    if not self.target(target_id)["online"]:
                        return False
                except ApiError as exc:
                    if exc.status == 404:
                        return False
                    raise
            return True

        wait_for(online, timeout_s=timeout_s, what=f"targets {list(target_ids)} online")

    def task(self, task_id: str) -> dict[str, Any]:
        """The task document (with per-target states)."""
        doc: dict[str, Any] = self.api.request("GET", f"/tasks/{task_id}")
        return doc

    def states(self, task_id: str, role: str = "deploy") -> dict[str, str]:
        """``{target id: state}`` of a task."""
        return {t["id"]: t["state"] for t in self.task(task_id)["targets"] if t["role"] == role}

    def wait_states(
        self, task_id: str, expected: dict[str, str | set[str]], timeout_s: float = 60.0
    ) -> dict[str, str]:
        """Wait until each listed target is in its expected state (or one of a set)."""

        def reached() -> dict[str, str] | None:
            states = self.states(task_id)
            for target_id, want in expected.items():
                allowed = {want} if isinstance(want, str) else want
                if states.get(target_id) not in allowed:
                    return None
            return states

        try:
            return wait_for(reached, timeout_s=timeout_s, what=f"task {task_id} states {expected}")
        except FleetError as exc:
            last = {
                t["id"]: f"{t['state']} ({t.get('reason') or 'no reason'})"
                for t in self.task(task_id)["targets"]
            }
            raise FleetError(f"{exc}; last states {last}") from None

    def logs(self, **params: Any) -> list[dict[str, Any]]:
        """Every stored log line matching the filters (all pages)."""
        items: list[dict[str, Any]] = []
        page = 1
        while True:
            doc = self.api.request("GET", "/logs", params={**params, "page": page, "perPage": 1000})
            items.extend(doc["items"])
            if page * 1000 >= doc["total"]:
                return items
            page += 1

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop agents, then the manager, then kill anything still running below the root."""
        for agent_id in list(self.agents):
            self.stop_agent(agent_id)
        self.stop_manager()
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        leftovers = processes_below(self.root)
        for proc in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=5)

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
