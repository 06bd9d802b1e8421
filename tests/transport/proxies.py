"""Small proxies on 127.0.0.1 for the HTTP link tests: SOCKS5 (with names it alone resolves,
like Tor's ``.onion``) and HTTP CONNECT. Each records what it was asked for."""

from __future__ import annotations

import asyncio
import contextlib
import struct


class _Proxy:
    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0
        #: ``(host, port)`` of every tunnel asked for, as the client sent it.
        self.requested: list[tuple[str, int]] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            upstream = await self.handshake(reader, writer)
            if upstream is None:
                return
            up_reader, up_writer = upstream
            self._writers.add(up_writer)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.transport.abort()

    async def handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        raise NotImplementedError

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in self._writers:
            w.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        dst.transport.abort()


class Socks5Proxy(_Proxy):
    """SOCKS5 without authentication; resolves names only from ``names`` (name -> IP)."""

    def __init__(self, names: dict[str, str]) -> None:
        super().__init__()
        self.names = names
        #: Address types of the CONNECT requests (3: a name the proxy resolves).
        self.address_types: list[int] = []

    async def handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        version, count = await reader.readexactly(2)
        methods = await reader.readexactly(count)
        if version != 5 or 0 not in methods:
            writer.write(b"\x05\xff")
            return None
        writer.write(b"\x05\x00")
        _, cmd, _, atyp = await reader.readexactly(4)
        self.address_types.append(atyp)
        if atyp == 3:
            host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
        elif atyp == 1:
            host = ".".join(str(b) for b in await reader.readexactly(4))
        else:
            writer.write(b"\x05\x08\x00\x01" + bytes(6))  # address type not supported
            return None
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.requested.append((host, port))
        address = self.names.get(host, host if atyp == 1 else None)
        if cmd != 1 or address is None:
            writer.write(b"\x05\x04\x00\x01" + bytes(6))  # host unreachable
            return None
        upstream = await asyncio.open_connection(address, port)
        writer.write(b"\x05\x00\x00\x01" + bytes([127, 0, 0, 1]) + struct.pack("!H", port))
        return upstream


class ConnectProxy(_Proxy):
    """An HTTP proxy that only does ``CONNECT host:port`` (to loopback)."""

    async def handshake(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        method, target, _ = head.split("\r\n", 1)[0].split(" ", 2)
        host, _, port = target.rpartition(":")
        self.requested.append((host, int(port)))
        if method != "CONNECT" or host != "127.0.0.1":
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return None
        upstream = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        return upstream
