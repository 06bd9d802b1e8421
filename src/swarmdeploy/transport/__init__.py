"""Agent <-> manager links: ``zmq`` (CurveZMQ, default) and ``memory`` (tests).

Agent and manager code programs against :class:`~swarmdeploy.transport.base.AgentTransport`
and :class:`~swarmdeploy.transport.base.ManagerTransport` (``docs/protocol.md``).
"""
