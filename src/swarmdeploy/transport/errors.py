"""Errors raised by :mod:`swarmdeploy.transport`.

``TransportError``
 ├── ``TransportConfigError``  invalid keys, ports or ids in a link configuration (give up)
 ├── ``TransportStateError``   a call the object's lifecycle does not allow (a programming error)
 │    └── ``TransportClosed``  the transport was closed (stop the loop that uses it)
 ├── ``BindError``             the manager could not bind or re-bind its sockets (retry later)
 └── ``PayloadRefused``        the manager refused a ranged payload download (give up the task)

Sending never raises for a missing or slow peer: ``send`` returns ``False`` and the protocol's
acknowledgements and reconciliation (``docs/protocol.md`` §6) recover the message. Invalid
messages raise :class:`~swarmdeploy.protocol.errors.MessageError` from the protocol layer.
"""

from __future__ import annotations


class TransportError(Exception):
    """Base of every error raised by :mod:`swarmdeploy.transport`."""


class TransportConfigError(TransportError):
    """A link configuration is invalid (bad key, id, port or interval)."""


class TransportStateError(TransportError):
    """The call is not allowed in the transport's current lifecycle state."""


class TransportClosed(TransportStateError):
    """The transport is closed; nothing more can be sent or received."""


class BindError(TransportError):
    """The manager could not bind (or re-bind after a revocation) one of its sockets."""


class PayloadRefused(TransportError):
    """The manager refused a payload download for good (``code`` names why, e.g.
    ``not_authorized``); retrying will not help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
