"""A small HTTP/1.1 client on asyncio streams, direct or through a proxy (ADR 0013).

The agent must stay lean (ADR 0006): no requests/httpx in the device process. Connections are
kept alive (HTTP/1.1) and reused for later requests -- also through a proxy, where the tunnel
is the connection: an idle agent opens no new connection per poll. A few idle connections are
kept (the long-poll and the sends run at once); a kept connection the server has closed in
the meantime (its keep-alive timeout) is noticed when the request gets no answer at all, and
the request goes out once more on a new connection. Bodies with ``Content-Length`` only,
which is all the manager's agent endpoints send. Proxies:

* ``socks5h://host:port`` -- SOCKS5 (RFC 1928) with the *name* sent to the proxy (ATYP 3):
  the agent never resolves the manager's name itself (Tor, ``.onion``);
* ``http://host:port`` -- an HTTP ``CONNECT`` tunnel.

The manager is spoken to in plain ``http://``: every body is sealed end to end (ADR 0013),
and the agent process keeps OpenSSL out of its memory (ADR 0006).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import struct
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from swarmdeploy.transport.errors import TransportConfigError

_MAX_HEAD = 16 * 1024
#: Idle connections kept for reuse (the long-poll holds one, sends and downloads another).
_POOL = 2
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HttpFailure(OSError):
    """The request did not get a response (connection, proxy or framing problem), or the
    manager is busy; ``retry_after_s`` is then the wait its ``Retry-After`` asked for."""

    def __init__(self, *args: object, retry_after_s: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after_s = retry_after_s


class _Stale(Exception):
    """A kept connection was closed by the server before this request got any answer."""


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


@dataclasses.dataclass(slots=True)
class HttpStream:
    """A response whose body is read piece by piece (:meth:`HttpClient.stream`)."""

    status: int
    headers: dict[str, str]
    remaining: int
    _reader: asyncio.StreamReader
    _read_timeout_s: float

    async def read(self, size: int) -> bytes:
        """Exactly ``size`` more body bytes (fewer only at the end of the body);
        ``HttpFailure`` when the connection breaks or stalls."""
        size = min(size, self.remaining)
        try:
            async with asyncio.timeout(self._read_timeout_s):
                data = await self._reader.readexactly(size)
        except TimeoutError:
            raise HttpFailure(f"the body stalled for {self._read_timeout_s:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HttpFailure(f"connection failed: {exc}") from None
        self.remaining -= len(data)
        return data


class HttpClient:
    """Requests to one manager, directly or through ``proxy`` (see the module docstring).

    ``keep_alive=False``: one connection per request (for a client used once, e.g. in
    ``asyncio.run``); otherwise call :meth:`close` when done."""

    def __init__(
        self,
        manager_url: str,
        *,
        proxy: str | None = None,
        max_body_bytes: int,
        keep_alive: bool = True,
    ) -> None:
        self.manager = Endpoint.parse(manager_url, schemes=("http",), what="--manager")
        self.proxy = (
            None
            if proxy is None
            else Endpoint.parse(proxy, schemes=("socks5h", "http"), what="--proxy")
        )
        self._max_body = max_body_bytes
        self._idle: list[_Conn] = []
        self._keep_alive = keep_alive
        #: Connections opened so far (tests and benchmarks read it).
        self.connections_opened = 0

    async def _open(self) -> _Conn:
        hop = self.proxy or self.manager
        reader, writer = await asyncio.open_connection(hop.host, hop.port, limit=_MAX_HEAD)
        self.connections_opened += 1
        try:
            if self.proxy is not None and self.proxy.scheme == "socks5h":
                await _socks5(reader, writer, self.manager)
            elif self.proxy is not None:
                await _connect_tunnel(reader, writer, self.manager)
        except BaseException:
            _drop(writer)
            raise
        return reader, writer

    def _take(self) -> _Conn | None:
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.transport.is_closing():
                _drop(writer)
                continue
            return reader, writer
        return None

    def _give_back(self, conn: _Conn) -> None:
        if self._keep_alive and len(self._idle) < _POOL and not conn[1].transport.is_closing():
            self._idle.append(conn)
        else:
            _drop(conn[1])

    def close(self) -> None:
        """Close the kept connections."""
        while self._idle:
            _drop(self._idle.pop()[1])

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
        head = self._head(method, path, body, {"Content-Type": content_type, **(headers or {})})
        try:
            async with asyncio.timeout(timeout_s):
                return await self._request(head + (body or b""))
        except TimeoutError:
            raise HttpFailure(f"no response within {timeout_s:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HttpFailure(f"connection failed: {exc}") from None

    def _head(self, method: str, path: str, body: bytes | None, fields: dict[str, str]) -> bytes:
        for name, value in fields.items():
            if not (name + value).isascii() or any(c in name + value for c in "\r\n"):
                raise HttpFailure(f"header {name[:40]!r} must be one line of ASCII")
        head = f"{method} {self.manager.path}{path} HTTP/1.1\r\nHost: {self.manager.authority}\r\n"
        if body is not None:
            head += f"Content-Length: {len(body)}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in fields.items())
        head += "Accept: application/json, application/octet-stream\r\n"
        head += "\r\n" if self._keep_alive else "Connection: close\r\n\r\n"
        return head.encode("ascii")

    async def _send(self, data: bytes) -> tuple[_Conn, int, dict[str, str]]:
        """Send on a kept connection (once more on a new one if it was stale) or a new one."""
        conn = self._take()
        if conn is not None:
            try:
                return conn, *await _send_on(conn, data, reused=True)
            except _Stale:
                _drop(conn[1])
            except BaseException:
                _drop(conn[1])
                raise
        conn = await self._open()
        try:
            return conn, *await _send_on(conn, data, reused=False)
        except BaseException:
            _drop(conn[1])
            raise

    async def _request(self, data: bytes) -> HttpResponse:
        conn, status, headers = await self._send(data)
        keep = False
        try:
            length = headers.get("content-length", "")
            if not length.isdigit() or int(length) > self._max_body:
                raise HttpFailure(f"unusable Content-Length {length[:20]!r}")
            body = await conn[0].readexactly(int(length))
            keep = headers.get("connection", "").lower() != "close"
            return HttpResponse(status, headers, body)
        finally:
            if keep:
                self._give_back(conn)
            else:
                _drop(conn[1])

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, headers: dict[str, str], timeout_s: float
    ) -> AsyncIterator[HttpStream]:
        """``GET path`` whose body the caller reads with :meth:`HttpStream.read` (each read
        may take ``timeout_s``); the connection is kept if the body was read to its end."""
        data = self._head("GET", path, None, headers)
        try:
            async with asyncio.timeout(timeout_s):
                conn, status, fields = await self._send(data)
        except TimeoutError:
            raise HttpFailure(f"no response within {timeout_s:.0f} s") from None
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HttpFailure(f"connection failed: {exc}") from None
        length = fields.get("content-length", "")
        if not length.isdigit():
            _drop(conn[1])
            raise HttpFailure(f"unusable Content-Length {length[:20]!r}")
        body = HttpStream(status, fields, int(length), conn[0], timeout_s)
        try:
            yield body
        finally:
            if body.remaining == 0 and fields.get("connection", "").lower() != "close":
                self._give_back(conn)
            else:
                _drop(conn[1])


def _drop(writer: asyncio.StreamWriter) -> None:
    """Close a connection at once (no lingering for unsent data)."""
    writer.transport.abort()
    writer.close()


async def _send_on(conn: _Conn, data: bytes, *, reused: bool) -> tuple[int, dict[str, str]]:
    reader, writer = conn
    try:
        writer.write(data)
        await writer.drain()
        return await _read_head(reader)
    except asyncio.IncompleteReadError as exc:
        if reused and not exc.partial:
            raise _Stale() from None
        raise
    except ConnectionError:
        if reused:
            raise _Stale() from None
        raise
