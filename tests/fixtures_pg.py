"""A real PostgreSQL server for the test session (and for ``bench``), on 127.0.0.1.

``start_pg_server()`` / ``PgServer.stop()`` are plain functions so that benchmarks reuse them.
The server is a throw-away cluster in a temporary directory: ``initdb -A trust --no-sync`` and
``pg_ctl start`` with durability off (``fsync``, ``synchronous_commit``, ``full_page_writes``).
``pg_ctl`` daemonizes the postmaster, so it is not a child of the test process (the
``no_leaked_processes`` fixture does not see it); ``pg_ctl -m fast stop`` ends it.

Fixtures:

* ``pg_server`` (session): the running :class:`PgServer`.
* ``pg_url`` (session): URL of a database created once for the session.
* ``pg_database_url`` (function): URL of a fresh, empty database for one test.

Without PostgreSQL binaries the fixtures skip the test, except when the ``CI`` environment
variable is set: then they fail, because CI must not silently skip the PostgreSQL backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmdeploy.localfleet import free_port

PG_ROOT = Path("/usr/lib/postgresql")
_OS_USER = "postgres"
_START_TIMEOUT_S = 60


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine."""


def find_pg_bin(root: Path = PG_ROOT) -> Path:
    """The ``bin`` directory of the newest PostgreSQL under ``root`` (``/usr/lib/postgresql``)."""
    versions = []
    if root.is_dir():
        for child in root.iterdir():
            bin_dir = child / "bin"
            if child.name.isdigit() and (bin_dir / "initdb").exists():
                versions.append((int(child.name), bin_dir))
    if not versions:
        raise PgUnavailable(
            f"no PostgreSQL server binaries under {PG_ROOT} (apt install postgresql)"
        )
    return max(versions)[1]


@dataclasses.dataclass
class PgServer:
    """A running throw-away PostgreSQL cluster."""

    bin_dir: Path
    base_dir: Path
    port: int
    run_as_postgres: bool
    _names: Iterator[int] = dataclasses.field(default_factory=itertools.count)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    def url(self, database: str = "postgres") -> str:
        """``postgresql://`` URL of ``database`` on this server (trust auth, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """Create an empty database with a fresh name; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def _run(self, tool: str, *args: str, as_owner: bool = False) -> None:
        command = [str(self.bin_dir / tool), *args]
        if as_owner and self.run_as_postgres:
            command = ["runuser", "-u", _OS_USER, "--", *command]
        with (self.base_dir / "tools.log").open("ab") as out:
            subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=_START_TIMEOUT_S,
            )

    def start(self) -> None:
        """``pg_ctl start`` (waits until the server accepts connections)."""
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base_dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        log_file = str(self.base_dir / "postgres.log")
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", log_file, "-w",
            "-t", str(_START_TIMEOUT_S), "-o", options, "start", as_owner=True,
        )  # fmt: skip

    def halt(self) -> None:
        """``pg_ctl -m fast stop``, keeping the data directory (``start()`` again works)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop", as_owner=True)

    def stop(self) -> None:
        """Stop the server if it runs and delete its directory."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.halt()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_pg_server() -> PgServer:
    """initdb + pg_ctl start a cluster on a free loopback port; raises :class:`PgUnavailable`
    without binaries and ``subprocess.CalledProcessError`` if the server does not start."""
    bin_dir = find_pg_bin()
    as_postgres = os.geteuid() == 0
    base_dir = Path(tempfile.mkdtemp(prefix="swarmdeploy-pg-"))
    if as_postgres:
        entry = pwd.getpwnam(_OS_USER)
        os.chown(base_dir, entry.pw_uid, entry.pw_gid)
    server = PgServer(bin_dir, base_dir, free_port(), as_postgres)
    try:
        server._run(
            "initdb", "-D", str(server.data_dir), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8", "--locale=C.UTF-8", as_owner=True,
        )  # fmt: skip
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when the ``CI`` environment variable is set."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session (stopped at the end)."""
    try:
        server = start_pg_server()
    except PgUnavailable as exc:
        unavailable(str(exc))
        raise  # not reached: unavailable() raises
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """URL of a database created once for the session (shared by the tests that use it)."""
    return pg_server.create_database("session")


@pytest.fixture
def pg_database_url(pg_server: PgServer) -> str:
    """URL of a fresh, empty database for one test."""
    return pg_server.create_database()
