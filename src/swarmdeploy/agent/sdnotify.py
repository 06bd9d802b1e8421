"""systemd readiness and watchdog notifications (``sd_notify``), without libsystemd.

With ``NOTIFY_SOCKET`` set (by systemd for ``Type=notify`` units) messages such as
``READY=1``, ``WATCHDOG=1`` and ``STATUS=...`` go to that unix datagram socket; a leading
``@`` names a socket in the abstract namespace. Without it every call is a no-op returning
False. Failures are logged, never raised: a missing or busy systemd must not stop the agent.
The unit file is ``deploy/systemd/swarmdeploy-agent.service``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

logger = logging.getLogger(__name__)


def _address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None  # systemd only uses absolute paths and abstract names


class Notifier:
    """Sends sd_notify messages; create with :meth:`from_env`."""

    def __init__(self, address: str | None) -> None:
        self._address = address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """A notifier for ``NOTIFY_SOCKET`` of ``environ`` (default: the process environment)."""
        raw = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        address = _address(raw) if raw else None
        if raw and address is None:
            logger.warning("ignoring NOTIFY_SOCKET %r: not a path or abstract name", raw)
        return cls(address)

    @property
    def enabled(self) -> bool:
        """Whether a notification socket is configured."""
        return self._address is not None

    def notify(self, message: str) -> bool:
        """Send ``message`` (``KEY=VALUE`` lines); True if it was sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # never stall the event loop on a full queue
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            logger.warning("sd_notify %r failed: %s", message.split("\n", 1)[0], exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd that start-up is complete (``READY=1``), with an optional status."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def watchdog(self) -> bool:
        """Keep the watchdog from firing (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """Set the free-form status shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def stopping(self) -> bool:
        """Tell systemd that the agent is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def close(self) -> None:
        """Close the socket (later calls reopen it)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval_s(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout systemd set (``WATCHDOG_USEC``) in seconds, or None.

    None as well when ``WATCHDOG_PID`` names another process. Ping at half this interval.
    """
    env = os.environ if environ is None else environ
    pid = env.get("WATCHDOG_PID")
    if pid is not None and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
