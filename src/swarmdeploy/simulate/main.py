"""``swarmdeploy simulate``: load-test a manager with many simulated agents in one process.

``swarmdeploy simulate --agents N --manager URL --token-set NAME --trust-anchor FILE
[--api-key KEY | --tokens-file FILE] [--install-time S] [--failure-rate F] [--tags a,b]
[--id-prefix P] [--duration S] [--health-interval S] [--plain]``

Each simulated agent has real CurveZMQ keys, registers with a one-time token of the token set
``NAME`` (created with the admin ``--api-key``, or an existing set's tokens read from
``--tokens-file``), speaks the real protocol over the real agent transport, verifies every
signed manifest against ``--trust-anchor`` (the manager's ``ca.pem``), pulls and hashes every
chunk and reports its states; installs take ``--install-time`` seconds and the share
``--failure-rate`` of them ends ``install_failed`` with a reason. Nothing is unpacked or run.
A live display shows the progress until Ctrl-C, SIGTERM or ``--duration``; then every agent
says ``bye`` and the process exits 0 (1 when an agent met a problem, e.g. a refused signature;
2 for bad options).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from swarmdeploy.agent.errors import ConfigError
from swarmdeploy.agent.trust import load_anchor_file
from swarmdeploy.simulate.display import Display, make_display, plain_line, snapshot
from swarmdeploy.simulate.fleet import SimFleet, create_token_set, read_tokens, trusted_anchors
from swarmdeploy.simulate.state import SimError, SimSettings

log = logging.getLogger(__name__)

#: Most agents one simulator process runs (one asyncio loop; run several for more).
MAX_AGENTS = 20_000


@dataclass(frozen=True, slots=True)
class SimulateOptions:
    """The validated command line."""

    agents: int
    manager_url: str
    token_set: str
    trust_anchor: Path
    api_key: str | None
    tokens_file: Path | None
    install_s: float
    failure_rate: float
    tags: tuple[str, ...]
    id_prefix: str
    duration_s: float
    health_s: float
    register_timeout_s: float
    plain: bool
    transport: str = "zmq"


def _positive_int(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_AGENTS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_AGENTS}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1e7:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0.0 and 1.0")
    return value


def _url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// or https:// URL")
    return text.rstrip("/")


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tags:
        raise argparse.ArgumentTypeError("give at least one tag")
    return tags


def parser() -> argparse.ArgumentParser:
    """The argument parser (its help is the module docstring)."""
    p = argparse.ArgumentParser(
        prog="swarmdeploy simulate",
        description="Load-test a manager with N simulated agents in this process.",
    )
    p.add_argument("--agents", type=_positive_int, required=True, help="how many agents")
    p.add_argument("--manager", type=_url, required=True, help="the manager's URL")
    p.add_argument("--token-set", required=True, help="token set the agents register with")
    p.add_argument("--trust-anchor", type=Path, required=True,
                   help="the manager's ca.pem (tasks are verified against it)")  # fmt: skip
    p.add_argument("--api-key", default=os.environ.get("SWARMDEPLOY_API_KEY"),
                   help="admin key: creates the token set (SWARMDEPLOY_API_KEY)")  # fmt: skip
    p.add_argument("--tokens-file", type=Path,
                   help="tokens of an existing set, one per line")  # fmt: skip
    p.add_argument("--install-time", type=_seconds, default=0.0, help="seconds per install")
    p.add_argument("--failure-rate", type=_rate, default=0.0,
                   help="share of installs that fail (0.0 .. 1.0)")  # fmt: skip
    p.add_argument("--tags", type=_tags, default=("simulated",), help="a,b (simulated)")
    p.add_argument("--id-prefix", help="target id prefix (sim-<token set>-)")
    p.add_argument("--duration", type=_seconds, default=0.0, help="stop after S s (0: Ctrl-C)")
    p.add_argument("--health-interval", type=_seconds, default=30.0, help="0: no health")
    p.add_argument("--register-timeout", type=_seconds, default=300.0)
    p.add_argument("--plain", action="store_true", help="plain lines, no live table")
    p.add_argument("--transport", choices=("zmq", "http"), default="zmq",
                   help="the agents' link: CurveZMQ, or sealed HTTP long-polls")  # fmt: skip
    return p


def parse(argv: list[str]) -> SimulateOptions:
    """Validate ``argv`` (``SystemExit(2)`` with a message naming the problem)."""
    p = parser()
    a = p.parse_args(argv)
    if a.tokens_file is None and not a.api_key:
        p.error("give --api-key (an admin key, to create the token set) or --tokens-file")
    if a.transport == "http" and not a.manager.startswith("http://"):
        p.error("--transport http speaks plain http:// to the manager (its bodies are sealed)")
    return SimulateOptions(
        agents=a.agents, manager_url=a.manager, token_set=a.token_set,
        trust_anchor=a.trust_anchor, api_key=a.api_key, tokens_file=a.tokens_file,
        install_s=a.install_time, failure_rate=a.failure_rate, tags=a.tags,
        id_prefix=a.id_prefix if a.id_prefix is not None else f"sim-{a.token_set}-",
        duration_s=a.duration, health_s=a.health_interval,
        register_timeout_s=a.register_timeout, plain=a.plain, transport=a.transport,
    )  # fmt: skip


async def _tokens(opts: SimulateOptions, http: httpx.AsyncClient) -> list[str]:
    if opts.tokens_file is not None:
        return read_tokens(opts.tokens_file, opts.agents)
    assert opts.api_key
    http.headers["Authorization"] = f"Bearer {opts.api_key}"
    return await create_token_set(http, opts.token_set, opts.agents)


async def run(opts: SimulateOptions, stop: asyncio.Event) -> int:
    """Run the simulated fleet until ``stop`` is set or ``--duration`` passed; returns the
    exit status. :class:`SimError` or :class:`ConfigError` when it cannot start."""
    anchors = load_anchor_file(opts.trust_anchor)
    async with httpx.AsyncClient(base_url=opts.manager_url, timeout=60.0) as http:
        anchors = await trusted_anchors(http, anchors)
        tokens = await _tokens(opts, http)
        http.headers.pop("Authorization", None)  # registrations carry only their token
        settings = SimSettings(
            opts.manager_url, anchors, tags=opts.tags, health_s=opts.health_s,
            install_s=opts.install_s, failure_rate=opts.failure_rate,
            transport=opts.transport,
        )  # fmt: skip
        fleet = SimFleet(settings, opts.agents, opts.id_prefix)
        started = time.monotonic()
        host = urlsplit(opts.manager_url).hostname or "127.0.0.1"
        try:
            with make_display(opts.plain) as display:
                register = asyncio.create_task(
                    fleet.register(http, tokens, opts.register_timeout_s)
                )
                try:
                    await _serve(opts, fleet, register, stop, started, host, display)
                finally:
                    register.cancel()
                    with contextlib.suppress(asyncio.CancelledError, SimError):
                        await register
                last = snapshot(fleet.agents, fleet.progress, fleet.registered, started)
        finally:
            await fleet.close()
    print(f"simulator stopped: {plain_line(last)}", flush=True)
    for problem in fleet.progress.failures[:10]:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if fleet.progress.failures else 0


async def _serve(
    opts: SimulateOptions,
    fleet: SimFleet,
    register: asyncio.Task[None],
    stop: asyncio.Event,
    started: float,
    host: str,
    display: Display,
) -> None:
    """Redraw every second; connect the fleet once registered; until stopped."""
    connected = False
    while not stop.is_set():
        if opts.duration_s and time.monotonic() - started >= opts.duration_s:
            return
        if register.done() and not connected:
            register.result()  # raises the registration's SimError
            await fleet.start(host)
            connected = True
        display.update(snapshot(fleet.agents, fleet.progress, fleet.registered, started))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await stop.wait()


def main(argv: list[str]) -> int:
    """Entry point of ``swarmdeploy simulate``; returns the exit status."""
    opts = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run(opts, stop)

    try:
        return asyncio.run(go())
    except (SimError, ConfigError) as exc:
        print(f"swarmdeploy simulate: {exc}", file=sys.stderr)
        return 1
