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
    heartbeat_ivl_s: float | None,
    heartbeat_timeout_s: float,
    max_message_bytes: int,
    ipv6: bool,
) -> None:
    """Options every link socket gets: no linger, a message size limit enforced by libzmq
    itself and, on the agent's sockets (``heartbeat_ivl_s`` set), ZMTP heartbeats.

    Only agents ping (docs/protocol.md §6.1): an agent notices a dead or silent manager after
    ``heartbeat_timeout_s``, and its pings carry that as TTL, so the manager's libzmq closes
    an agent's silent connection too. The manager's sockets send no pings of their own: each
    one is a timer in libzmq's I/O thread, which every message of that connection cancels
    and re-arms by a linear search (``docs/performance.md``, idle cost).
    """
    sock.linger = 0
    if heartbeat_ivl_s is not None:
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(heartbeat_ivl_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(heartbeat_timeout_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, int(heartbeat_timeout_s * 1000))
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + 1024)  # + ROUTER framing
    if ipv6:
        sock.setsockopt(zmq.IPV6, 1)
