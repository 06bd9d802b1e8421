"""CurveZMQ transport (the default): see ``docs/adr/0002-zeromq-socket-layout.md`` and
``docs/adr/0015-one-connection-per-agent.md``.

``ZmqManagerTransport`` binds a ROUTER (``zmq_sub_port``) and a PUB (``zmq_pub_port``, hints
for agents older than ADR 0015) behind a ZAP allow-list; ``ZmqAgentTransport`` connects one
DEALER out to the ROUTER, which carries its hints too.
"""

from __future__ import annotations

from swarmdeploy.transport.zap import ZapHandler
from swarmdeploy.transport.zmq_agent import ZmqAgentTransport
from swarmdeploy.transport.zmq_common import ZAP_DOMAIN
from swarmdeploy.transport.zmq_manager import ZmqManagerTransport

__all__ = ["ZAP_DOMAIN", "ZapHandler", "ZmqAgentTransport", "ZmqManagerTransport"]
