"""The connectivity check of seed 000: before fetching, is there a network at all?

Seed 000's client checks, in order, "if a network connection is established, if name
resolution can be performed, if certain hosts on the Internet are reachable and if the
central server can be connected with" before it fetches work. Here, with
``--connectivity-hosts HOST:PORT,...`` configured:

1. *link*: some network interface other than loopback is up (from the same netlink dump as
   the health report);
2. *DNS*: every configured host name resolves -- skipped with ``--proxy``, where names are
   the proxy's to resolve (nothing may leak to local DNS);
3. *hosts*: a TCP connection opens to each configured ``HOST:PORT`` (with ``--proxy`` to the
   proxy instead, which is the only hop the agent itself reaches);
4. *manager*: the agent's link to the manager is connected.

Without ``--connectivity-hosts`` only the manager counts (the link state), as before. A fetch
is *deferred*, not failed, while the result is not ``ok``: the transfer pauses its chunk
requests (like a low disk) and goes on when a later check passes. The result travels in the
health report's ``connectivity`` field, so the manager shows it in the target document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

logger = logging.getLogger(__name__)


class ConnectivityResult(msgspec.Struct, frozen=True, kw_only=True):
    """One check's findings; ``ok`` (link, DNS and hosts) is what fetching waits for;
    ``manager`` is reported next to it (without the link nothing is fetched anyway)."""

    ok: bool
    link_up: bool
    dns: bool | None  # None: not checked (a proxy resolves the names)
    hosts: dict[str, bool]
    manager: bool
    checked_at_ms: int
    problem: str = ""


async def _reachable(host: str, port: int, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True


async def _resolves(host: str, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout_s):
            await loop.getaddrinfo(host, None)
    except (OSError, TimeoutError):
        return False
    return True


class ConnectivityCheck:
    """Runs the check (see the module docstring) and keeps the latest result."""

    def __init__(
        self,
        hosts: tuple[tuple[str, int], ...],
        *,
        proxy: tuple[str, int] | None,
        manager_connected: Callable[[], bool],
        link_up: Callable[[], bool] | None = None,
        resolve: Callable[[str, float], Awaitable[bool]] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self._hosts = hosts
        self._proxy = proxy
        self._manager_connected = manager_connected
        self._link_up = link_up or any_link_up
        self._resolve = resolve or _resolves
        self._timeout_s = timeout_s
        self.latest: ConnectivityResult | None = None

    @property
    def ok(self) -> bool:
        """Whether the latest check passed (``True`` before the first and without hosts)."""
        return not self._hosts or self.latest is None or self.latest.ok

    async def check(self) -> ConnectivityResult:
        """Run the check now; log a change of ``ok``; never raises for network problems."""
        manager = self._manager_connected()
        link = self._link_up() if self._hosts else True
        dns: bool | None = None
        hosts: dict[str, bool] = {}
        if self._hosts and link:
            if self._proxy is None:
                found = await asyncio.gather(
                    *(self._resolve(h, self._timeout_s) for h, _ in self._hosts)
                )
                dns = all(found)
            targets = [self._proxy] if self._proxy is not None else list(self._hosts)
            reached = await asyncio.gather(*(_reachable(h, p, self._timeout_s) for h, p in targets))
            hosts = {f"{h}:{p}": r for (h, p), r in zip(targets, reached, strict=True)}
        problem = _problem(link, dns, hosts)
        result = ConnectivityResult(
            ok=not problem, link_up=link, dns=dns, hosts=hosts, manager=manager,
            checked_at_ms=int(time.time() * 1000), problem=problem,
        )  # fmt: skip
        if self.latest is None or self.latest.ok != result.ok:
            if result.ok:
                logger.info("connectivity: ok")
            else:
                logger.warning("connectivity: %s; fetching deferred", problem)
        self.latest = result
        return result

    async def run(self, interval_s: float, retry_s: float = 5.0) -> None:
        """Check every ``interval_s`` (every ``retry_s`` while not ok); forever. Does
        nothing without configured hosts."""
        if not self._hosts:
            return
        while True:
            try:
                await self.check()
            except Exception:  # top of the loop: a failed check must not end it
                logger.exception("connectivity check failed")
            await asyncio.sleep(interval_s if self.ok else retry_s)

    def report(self) -> dict[str, object] | None:
        """The latest result as the health report's ``connectivity`` field (None: none)."""
        if not self._hosts or self.latest is None:
            return None
        doc = msgspec.to_builtins(self.latest)
        assert isinstance(doc, dict)
        return doc


def _problem(link: bool, dns: bool | None, hosts: dict[str, bool]) -> str:
    if not link:
        return "no network interface is up"
    if dns is False:
        return "name resolution fails"
    down = [name for name, up in hosts.items() if not up]
    if down:
        return "unreachable: " + ", ".join(down)
    return ""


def any_link_up() -> bool:
    """Whether a network interface other than loopback is up (netlink, as the health report)."""
    from swarmdeploy.agent.health import interfaces

    try:
        return any(i.up and i.name != "lo" for i in interfaces())
    except OSError:
        return True  # cannot tell: let the host checks decide


def proxy_address(url: str | None) -> tuple[str, int] | None:
    """``(host, port)`` of a ``--proxy`` URL (validated by the settings), or None."""
    if url is None:
        return None
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 1080


def parse_hosts(text: str) -> tuple[tuple[str, int], ...]:
    """``"a.example:443, 10.0.0.1:80"`` -> ``(("a.example", 443), ("10.0.0.1", 80))``;
    ``ValueError`` naming the bad entry."""
    found: list[tuple[str, int]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{item!r} is not HOST:PORT")
        found.append((host, int(port)))
    return tuple(dict.fromkeys(found))
