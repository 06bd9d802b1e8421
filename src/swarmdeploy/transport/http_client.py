"""A small HTTP/1.1 client on asyncio streams, direct or through a proxy (ADR 0013).

The agent must stay lean (ADR 0006): no requests/httpx in the device process. One request per
connection (``Connection: close``); bodies with ``Content-Length`` only, which is all the
manager's link endpoint sends. Proxies:

* ``socks5h://host:port`` -- SOCKS5 (RFC 1928) with the *name* sent to the proxy (ATYP 3):
  the agent never resolves the manager's name itself (Tor, ``.onion``);
* ``http://host:port`` -- an HTTP ``CONNECT`` tunnel.

The manager is spoken to in plain ``http://``: every body is sealed end to end (ADR 0013),
and the agent process keeps OpenSSL out of its memory (ADR 0006).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import struct
from urllib.parse import urlsplit

from swarmdeploy.transport.errors import TransportConfigError

_MAX_HEAD = 16 * 1024


class HttpFailure(OSError):
    """The request did not get a response (connection, proxy or framing problem)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to connect: scheme, host, port and the path prefix of a URL."""

    scheme: str
    host: str
    port: int
    path: str = ""

    @classmethod
    def parse(cls, url: str, *, schemes: tuple[str, ...], what: str) -> Endpoint:
        """Parse ``url``; ``TransportConfigError`` naming ``what`` when it is not usable."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TransportConfigError(f"{what} {url!r} is not a valid URL: {exc}") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise TransportConfigError(
                f"{what} {url!r} must be a {' or '.join(s + '://' for s in schemes)} URL"
                " with a host"
            )
        default = {"http": 80, "socks5h": 1080}[parts.scheme]
        return cls(parts.scheme, parts.hostname, port or default, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        """``host:port`` as a Host header or CONNECT target."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status, lower-case headers and body of one response."""

    status: int
    headers: dict[str, str]
    body: bytes


async def _socks5(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dest: Endpoint
) -> None:
    writer.write(b"\x05\x01\x00")  # version 5, one method: no authentication
    if await reader.readexactly(2) != b"\x05\x00":
        raise HttpFailure("the SOCKS5 proxy refused the no-authentication method")
    try:
        ip = ipaddress.ip_address(dest.host)
        addr = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    except ValueError:
        name = dest.host.encode("idna")
        if len(name) > 255:
            raise HttpFailure("host name too long for SOCKS5") from None
        addr = b"\x03" + bytes([len(name)]) + name  # the proxy resolves it (socks5h)
    writer.write(b"\x05\x01\x00" + addr + struct.pack("!H", dest.port))
    head = await reader.readexactly(4)
    if head[1] != 0:
        raise HttpFailure(f"the SOCKS5 proxy could not connect (reply {head[1]})")
    skip = {1: 4, 4: 16}.get(head[3])
    if skip is None:
        skip = (await reader.readexactly(1))[0]
    await reader.readexactly(skip + 2)


async def _connect_tunnel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dest: Endpoint
) -> None:
    writer.write(
        f"CONNECT {dest.authority} HTTP/1.1\r\nHost: {dest.authority}\r\n\r\n".encode("ascii")
    )
    status, _ = await _read_head(reader)
    if status != 200:
        raise HttpFailure(f"the HTTP proxy refused CONNECT (status {status})")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise HttpFailure("response head too large") from None
    if len(head) > _MAX_HEAD:
        raise HttpFailure("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpFailure(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


class HttpClient:
    """POSTs to one manager, directly or through ``proxy`` (see the module docstring)."""

    def __init__(
        self,
        manager_url: str,
        *,
        proxy: str | None = None,
        max_body_bytes: int,
    ) -> None:
        self.manager = Endpoint.parse(manager_url, schemes=("http",), what="--manager")
        self.proxy = (
            None
            if proxy is None
            else Endpoint.parse(proxy, schemes=("socks5h", "http"), what="--proxy")
        )
        self._max_body = max_body_bytes

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        hop = self.proxy or self.manager
        reader, writer = await asyncio.open_connection(hop.host, hop.port, limit=_MAX_HEAD)
        try:
            if self.proxy is not None and self.proxy.scheme == "socks5h":
                await _socks5(reader, writer, self.manager)
            elif self.proxy is not None:
                await _connect_tunnel(reader, writer, self.manager)
        except BaseException:
            writer.transport.abort()
            raise
        return reader, writer

    async def post(self, path: str, body: bytes, timeout_s: float) -> HttpResponse:
        """POST ``body`` to ``path`` (below the manager URL's path); ``HttpFailure`` (an
        ``OSError``) when no complete response arrives within ``timeout_s``."""
        return await self.request("POST", path, body, timeout_s)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        timeout_s: float,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """One request (``body`` None: none sent) with extra ``headers``; see :meth:`post`."""
        fields = {"Content-Type": content_type, **(headers or {})}
        for name, value in fields.items():
            if not (name + value).isascii() or any(c in name + value for c in "\r\n"):
                raise HttpFailure(f"header {name[:40]!r} must be one line of ASCII")
        extra = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        try:
            async with asyncio.timeout(timeout_s):
                return await self._request(method, path, body, extra)
        except TimeoutError:
            raise HttpFailure(f"no response within {timeout_s:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HttpFailure(f"connection failed: {exc}") from None

    async def _request(
        self, method: str, path: str, body: bytes | None, fields: str
    ) -> HttpResponse:
        reader, writer = await self._open()
        try:
            head = (
                f"{method} {self.manager.path}{path} HTTP/1.1\r\nHost: {self.manager.authority}\r\n"
            )
            if body is not None:
                head += f"Content-Length: {len(body)}\r\n"
            head += fields
            head += (
                "Accept: application/json, application/octet-stream\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + (body or b""))
            await writer.drain()
            status, headers = await _read_head(reader)
            length = headers.get("content-length", "")
            if not length.isdigit() or int(length) > self._max_body:
                raise HttpFailure(f"unusable Content-Length {length[:20]!r}")
            data = await reader.readexactly(int(length))
            return HttpResponse(status, headers, data)
        finally:
            writer.transport.abort()
