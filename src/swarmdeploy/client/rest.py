"""REST clients for the manager API: :class:`ManagerClient` (synchronous, the CLI's) and
:class:`AsyncManagerClient` (asynchronous, the GUI's). Both send the same requests and map
error answers the same way (:func:`_error_from`, :func:`_decoded`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import ssl
from pathlib import Path
from typing import IO, Any

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
        ca_cert: Path | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        #: TLS context of ``https://`` requests and ``wss://`` events (``None``: the system's).
        self.ssl_context = tls_context(ca_cert)
        self._http = httpx.Client(
            transport=transport,
            verify=self.ssl_context or True,
            **_client_options(base_url, api_key, timeout_s),
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
        try:
            resp = self._http.request(
                method, path, **_request_options(params, json, content, headers)
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self._http.base_url, exc) from None
        return _decoded(resp)

    def retry_task(self, task_id: str, targets: list[str] | None = None) -> Any:
        """``POST /tasks/{id}/retry``: announce the task again to ``targets`` (None: every
        target that ended in a failure state); returns the task document. Raises
        :class:`ApiError` (404 unknown task or target, 409 not retryable)."""
        body = None if targets is None else {"targets": targets}
        return self.request("POST", f"/tasks/{task_id}/retry", json=body)

    def post_files(
        self, path: str, files: dict[str, tuple[str | None, IO[bytes] | str, str]]
    ) -> Any:
        """POST ``multipart/form-data`` (httpx streams file objects from disk); returns the
        decoded JSON answer. Raises :class:`ApiError`."""
        try:
            resp = self._http.post(path, files=files)
        except httpx.HTTPError as exc:
            raise _unreachable(self._http.base_url, exc) from None
        return _decoded(resp)

    def download(self, path: str, dest: Path) -> int:
        """Stream the body of ``GET path`` into ``dest`` (written next to it, then renamed:
        no partial file is left behind); returns the number of bytes. Raises
        :class:`ApiError`, or ``OSError`` for the local file."""
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with self._http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_from(resp)
                size = 0
                with tmp.open("wb") as out:
                    for chunk in resp.iter_bytes():
                        out.write(chunk)
                        size += len(chunk)
            os.replace(tmp, dest)
            return size
        except httpx.HTTPError as exc:
            raise _unreachable(self._http.base_url, exc) from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


class AsyncManagerClient:
    """The asynchronous twin of :class:`ManagerClient`'s ``request`` for callers on an event
    loop (the GUI). ``transport`` may be ``httpx.ASGITransport(app)``: requests then run through
    the manager's own middleware, authentication and routers without a network hop."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            transport=transport, **_client_options(base_url, api_key, timeout_s)
        )

    async def aclose(self) -> None:
        """Close the underlying connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncManagerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        files: dict[str, tuple[str | None, bytes, str]] | None = None,
    ) -> Any:
        """Send a request and return the decoded JSON body (``None`` for an empty body);
        ``files`` sends ``multipart/form-data`` parts ``name -> (filename, bytes, type)``.

        Raises :class:`ApiError` for error statuses and unreachable managers.
        """
        try:
            resp = await self._http.request(
                method, path, files=files, **_request_options(params, json, content, headers)
            )
        except httpx.HTTPError as exc:
            raise _unreachable(self._http.base_url, exc) from None
        return _decoded(resp)

    async def raw(self, method: str, path: str) -> RawAnswer:
        """The body of a success as bytes; :class:`ApiError` otherwise."""
        try:
            resp = await self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise _unreachable(self._http.base_url, exc) from None
        if resp.status_code >= 400:
            raise _error_from(resp)
        media_type = resp.headers.get("content-type", "application/octet-stream")
        return RawAnswer(resp.content, media_type.split(";")[0])


def tls_context(ca_cert: Path | None) -> ssl.SSLContext | None:
    """An SSL context that trusts only the PEM certificates in ``ca_cert`` (a private CA, an
    intermediate, or the manager's own, e.g. self-signed, certificate; host names are still
    checked), or ``None`` for the
    system store. Raises :class:`ApiError` when the file cannot be read or holds no
    certificate."""
    if ca_cert is None:
        return None
    try:
        context = ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ApiError(0, f"cannot use --ca-cert {ca_cert}: {reason}") from None
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # pinning the leaf works too
    return context


@dataclasses.dataclass(frozen=True)
class RawAnswer:
    """A success answer's bytes and media type (for images and other non-JSON bodies)."""

    content: bytes
    media_type: str


def _client_options(base_url: str, api_key: str | None, timeout_s: float) -> dict[str, Any]:
    """What both clients are built with: base URL, bearer header, timeout."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout_s}


def _request_options(
    params: dict[str, Any] | None,
    json: Any,
    content: bytes | None,
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    """The request arguments both clients send (``None`` query parameters left out)."""
    clean = {k: v for k, v in (params or {}).items() if v is not None}
    return {"params": clean, "json": json, "content": content, "headers": headers}


def _unreachable(base_url: httpx.URL, exc: httpx.HTTPError) -> ApiError:
    return ApiError(0, f"cannot reach the manager at {base_url}: {exc}")


def _decoded(resp: httpx.Response) -> Any:
    """The JSON (or text) body of a success; :class:`ApiError` for an error status."""
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
