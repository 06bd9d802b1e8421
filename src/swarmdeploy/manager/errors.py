"""Errors raised by the manager's services; the REST layer maps each to a status code.

``ManagerError``                     (``code`` is stable on the wire, ``status`` is HTTP)
 ├── ``BadRequest``           400   the request cannot be understood (malformed JSON/YAML)
 ├── ``Unauthorized``         401   missing, unknown, expired or spent credentials
 ├── ``Forbidden``            403   valid credentials, insufficient role
 ├── ``NotFoundError``        404   the named resource does not exist
 ├── ``ConflictError``        409   the resource exists already / is busy (e.g. running task)
 ├── ``TooLarge``             413   a body (e.g. a YAML descriptor) over a size or shape limit
 ├── ``UnsupportedMedia``     415   a body in a format the endpoint does not read
 ├── ``InvalidInput``         422   well-formed but invalid input; ``path`` names the field
 ├── ``RateLimited``          429   too many attempts; ``retry_after_s`` says when to retry
 └── ``Unavailable``          503   a dependency (database, queue, JWKS) is down or full; retry
"""

from __future__ import annotations


class ManagerError(Exception):
    """Base of every error the manager reports to API clients."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


class BadRequest(ManagerError):
    """The request body or parameters cannot be decoded."""

    status = 400
    code = "bad_request"


class Unauthorized(ManagerError):
    """Credentials are missing or not valid."""

    status = 401
    code = "unauthorized"


class Forbidden(ManagerError):
    """The caller is authenticated but its role does not allow the operation."""

    status = 403
    code = "forbidden"


class NotFoundError(ManagerError):
    """The named resource does not exist."""

    status = 404
    code = "not_found"


class ConflictError(ManagerError):
    """The resource exists already or is in a state that forbids the operation."""

    status = 409
    code = "conflict"


class TooLarge(ManagerError):
    """The body is larger (or has more elements) than the endpoint accepts."""

    status = 413
    code = "body_too_large"


class UnsupportedMedia(ManagerError):
    """The body's Content-Type is not one the endpoint reads."""

    status = 415
    code = "unsupported_media_type"


class InvalidInput(ManagerError):
    """Well-formed input that fails validation; ``path`` locates the field (``$.a.b``)."""

    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, path: str | None = "$", code: str | None = None) -> None:
        super().__init__(message, path=path)
        if code is not None:
            self.code = code


class RateLimited(ManagerError):
    """Too many attempts from one client (or overall); retry after ``retry_after_s``."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(ManagerError):
    """A dependency is unavailable or a queue is full; the request may be retried."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
