"""``deploy.health`` of the task descriptor: checks that gate a new release (docs/protocol.md
§4.3 "Health-gated installs")."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

import msgspec

from swarmdeploy.protocol.descriptor_common import Strict, check_commands
from swarmdeploy.protocol.errors import DescriptorError

#: Bounds of ``deploy.health`` (seconds, counts): sane limits, not feature limits.
MAX_HEALTH_SECONDS = 24 * 3600
MAX_HEALTH_ATTEMPTS = 100
_HealthSeconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_HEALTH_SECONDS)]
_HEALTH_HOSTS = frozenset({"127.0.0.1", "localhost"})


class Health(Strict):
    """Checks that gate a new release (docs/protocol.md §4.3 "Health-gated installs"): after
    the run commands start and ``initialDelay`` seconds, every ``interval`` seconds one
    attempt runs ``command`` (must exit 0; sandboxed like the run commands) and asks ``http``
    (a URL on the device: 127.0.0.1 or localhost; must answer 2xx); ``upFor``: the run
    commands must also have stayed up that many seconds. The release is ``healthy`` at the
    first attempt that passes; after ``attempts`` failed attempts, or ``deadline`` seconds
    after the start, the previous release of the app is restored (``rolled_back``)."""

    command: str | None = None
    http: str | None = None
    up_for: Annotated[float, msgspec.Meta(gt=0, le=MAX_HEALTH_SECONDS)] | None = None
    initial_delay: _HealthSeconds = 0.0
    interval: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 5.0
    attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_HEALTH_ATTEMPTS)] = 3
    deadline: Annotated[float, msgspec.Meta(ge=1, le=MAX_HEALTH_SECONDS)] = 300.0


def check_health(health: Health | None, has_run: bool) -> None:
    """Check ``deploy.health`` (``has_run``: the deploy has run commands). Raises
    :class:`DescriptorError` naming the field."""
    if health is None:
        return
    where = "$.deploy.health"
    if not has_run:
        raise DescriptorError("health checks need run.commands (they check what runs)", where)
    if health.command is None and health.http is None and health.up_for is None:
        raise DescriptorError("deploy.health needs command, http or upFor", where)
    if health.command is not None:
        if not health.command.strip():
            raise DescriptorError("the health command is empty", f"{where}.command")
        check_commands([health.command], f"{where}.command")
    if health.http is not None:
        check_health_url(health.http, f"{where}.http")
    if health.deadline < health.initial_delay + (health.up_for or 0):
        raise DescriptorError(
            "deadline must leave room for initialDelay and upFor", f"{where}.deadline"
        )


def check_health_url(url: str, where: str) -> None:
    """A health URL: ``http://`` on 127.0.0.1 or localhost (the device itself), no
    credentials. Raises :class:`DescriptorError`."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise DescriptorError("the URL has an invalid port", where) from None
    if parts.scheme != "http" or parts.hostname not in _HEALTH_HOSTS:
        raise DescriptorError(
            "must be an http:// URL on 127.0.0.1 or localhost (a service on the device)", where
        )
    if parts.username is not None or parts.password is not None or port == 0:
        raise DescriptorError("the URL must not carry credentials or port 0", where)
    if len(url) > 2048 or any(ord(c) < 33 for c in url):
        raise DescriptorError("the URL is too long or contains spaces/control characters", where)
