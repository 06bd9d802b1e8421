"""A small synchronous REST client for the manager API (the CLI's only way to the manager)."""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 30.0


class ApiError(Exception):
    """The manager answered with an error (``status`` is the HTTP status, 0 if unreachable)."""

    def __init__(self, status: int, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.path = path

    def __str__(self) -> str:
        where = f" (at {self.path})" if self.path and self.path not in self.message else ""
        prefix = f"HTTP {self.status}: " if self.status else ""
        return f"{prefix}{self.message}{where}"


class ManagerClient:
    """Talks to one manager at ``base_url`` with an optional bearer ``api_key``."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
        )

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> ManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body (``None`` for an empty body).

        Raises :class:`ApiError` for error statuses and unreachable managers.
        """
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(
                method, path, params=clean, json=json, content=content, headers=headers
            )
        except httpx.HTTPError as exc:
            raise ApiError(0, f"cannot reach the manager at {self._http.base_url}: {exc}") from None
        if resp.status_code >= 400:
            raise _error_from(resp)
        if not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text


def _error_from(resp: httpx.Response) -> ApiError:
    try:
        body = resp.json()
    except ValueError:
        return ApiError(resp.status_code, resp.text.strip() or resp.reason_phrase)
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("message") or body)
        path = body.get("path")
        return ApiError(resp.status_code, message, str(path) if path else None)
    return ApiError(resp.status_code, str(body))
