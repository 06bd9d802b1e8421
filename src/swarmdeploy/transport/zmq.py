"""CurveZMQ transport (the default): see ``docs/adr/0002-zeromq-socket-layout.md``.

``ZmqManagerTransport`` binds a ROUTER (``zmq_sub_port``) and a PUB (``zmq_pub_port``) behind
a ZAP allow-list; ``ZmqAgentTransport`` connects a DEALER and a SUB out to them.
"""

from __future__ import annotations

from swarmdeploy.transport.zap import ZapHandler
from swarmdeploy.transport.zmq_agent import ZmqAgentTransport
from swarmdeploy.transport.zmq_common import ZAP_DOMAIN
from swarmdeploy.transport.zmq_manager import ZmqManagerTransport

__all__ = ["ZAP_DOMAIN", "ZapHandler", "ZmqAgentTransport", "ZmqManagerTransport"]
