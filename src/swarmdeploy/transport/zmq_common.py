"""Socket settings shared by the manager and agent sides of the ZeroMQ link (ADR 0002)."""

from __future__ import annotations

from typing import Any

import zmq

#: ZAP domain of the manager's sockets; the ZAP handler refuses any other.
ZAP_DOMAIN = "swarmdeploy"


def endpoint(host: str, port: int) -> str:
    """A ``tcp://`` endpoint; port 0 asks the kernel for a free port (bind only)."""
    where = f"[{host}]" if ":" in host else host
    return f"tcp://{where}:{port if port else '*'}"


def apply_common(
    sock: zmq.Socket[Any],
    *,
    heartbeat_ivl_s: float,
    heartbeat_timeout_s: float,
    max_message_bytes: int,
    ipv6: bool,
) -> None:
    """Options every link socket gets: no linger, ZMTP heartbeats (dead TCP connections are
    noticed, docs/protocol.md §6.1), a message size limit enforced by libzmq itself."""
    sock.linger = 0
    sock.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_ivl_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(heartbeat_timeout_s * 1000))
    sock.setsockopt(zmq.HEARTBEAT_TTL, int(heartbeat_timeout_s * 1000))
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + 1024)  # + ROUTER framing
    if ipv6:
        sock.setsockopt(zmq.IPV6, 1)
