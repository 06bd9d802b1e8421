"""The manager's HTTP link alone, in its own process, for ``python -m bench http_poll``.

``python -m bench.http_link_server KEYS.json PORT_FILE``: serves ``/agent/v1/link`` with
uvicorn on a free loopback port (written to PORT_FILE), admits the agent keys of KEYS.json,
consumes every message and answers each ``heartbeat`` with a ``welcome`` (the benchmark's
round trip). Runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import uvicorn

from swarmdeploy.crypto.curve import CurveKeyPair
from swarmdeploy.protocol.messages import Heartbeat, Welcome
from swarmdeploy.transport.http_manager import HttpLinkConfig, HttpManagerTransport


async def serve(doc: dict[str, Any], port_file: Path) -> None:
    """Serve until SIGTERM (see the module docstring); ``doc`` is the keys file's JSON."""
    manager = CurveKeyPair(doc["manager"]["public"], doc["manager"]["secret"])
    link = HttpManagerTransport(HttpLinkConfig(keys=manager))
    for target_id, key in doc["agents"].items():
        await link.allow(target_id, key)
    await link.start()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/agent/"):
            scope = {**scope, "path": scope["path"][len("/agent") :]}
        await link.asgi(scope, receive, send)

    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None,
                            backlog=4096, timeout_graceful_shutdown=1)  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    port = str(server.servers[0].sockets[0].getsockname()[1])
    await asyncio.to_thread(port_file.write_text, port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)

    async def echo() -> None:
        while True:
            got = await link.recv()
            if got is not None and isinstance(got[1], Heartbeat):
                await link.send(got[0], Welcome(server_time_ms=got[1].sent_at_ms))

    echoer = asyncio.create_task(echo())
    await stop.wait()
    echoer.cancel()
    await link.close()
    server.should_exit = True
    await task


if __name__ == "__main__":
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))
