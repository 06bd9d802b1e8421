"""The Deployment Manager's side of the agent link (docs/protocol.md): sessions, two-stage
delivery, chunk serving, uploads, requests, logs. :class:`LinkServer` is the entry point."""

from swarmdeploy.manager.link.config import LinkSettings
from swarmdeploy.manager.link.server import LinkServer, LinkState, LinkStateError

__all__ = ["LinkServer", "LinkSettings", "LinkState", "LinkStateError"]
