"""Typed client of the manager's public REST API and ``/events``.

The one way the operator CLI (:mod:`swarmdeploy.cli`) and the web GUI (:mod:`swarmdeploy.gui`)
reach the manager: the CLI over the network (:class:`ManagerClient`), the GUI in process
through the same ASGI application (:class:`AsyncManagerClient` on an ``httpx.ASGITransport``),
so every permission is enforced in one place, the API, and every GUI feature is an API feature.
"""

from swarmdeploy.client.rest import ApiError, AsyncManagerClient, ManagerClient

__all__ = ["ApiError", "AsyncManagerClient", "ManagerClient"]
