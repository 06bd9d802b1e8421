"""Device registration with a one-time token (seed 003 §4.3 steps 5-7).

Order of operations, each step for a reason:

1. rate limit per client address, and globally per wrong token (``services.ratelimit``;
   before anything else, so that failed and malformed attempts count too); refusals and
   wrong tokens are counted and logged as one summary line a minute (:meth:`report`), not
   one line per attempt;
2. token form check and keyed hash (a malformed token is a 401 like an unknown one);
3. the certificate over the identity key is issued *before* the database commit, so that a
   signing failure cannot leave a registered target without a certificate;
4. ``Storage.register_target`` spends the token and creates the target in one transaction
   (exactly one of two concurrent uses succeeds; an existing id does not spend the token);
5. only after the commit are listeners (CurveZMQ allow-list) told -- the original added the
   key before the commit (cpswarm-original.md §10.2 #9).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging

from swarmdeploy.crypto import tokens as crypto_tokens
from swarmdeploy.crypto.ca import CertificateAuthority
from swarmdeploy.crypto.errors import InvalidToken
from swarmdeploy.manager.clock import Clock
from swarmdeploy.manager.errors import ConflictError, RateLimited, Unauthorized
from swarmdeploy.manager.events import EventHub
from swarmdeploy.manager.services.metrics import Metrics
from swarmdeploy.manager.services.ratelimit import RegistrationLimiter
from swarmdeploy.manager.services.registry import TargetRegistry, target_json
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.errors import Conflict, TokenRejected
from swarmdeploy.storage.records import Location, TargetRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a device submits (already validated by the API layer)."""

    id: str
    curve_key: str
    identity_key: bytes
    name: str = ""
    tags: tuple[str, ...] = ()
    location: Location | None = None


@dataclasses.dataclass(slots=True)
class AttemptTally:
    """Refused and failed registration attempts since the last summary line."""

    rate_limited: int = 0
    wrong_tokens: int = 0
    addresses: set[str] = dataclasses.field(default_factory=set)

    def add(self, address: str, *, rate_limited: bool) -> None:
        """Count one refused (``rate_limited``) or failed attempt from ``address``."""
        if rate_limited:
            self.rate_limited += 1
        else:
            self.wrong_tokens += 1
        if len(self.addresses) < _MAX_TALLIED_ADDRESSES:
            self.addresses.add(address)


#: Distinct addresses counted per summary (beyond this the count says "at least").
_MAX_TALLIED_ADDRESSES = 10_000


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    """The outcome of a successful registration."""

    target: TargetRecord
    certificate_pem: str
    signature_b64: str


class RegistrationService:
    """Registers devices that present a valid token."""

    def __init__(
        self,
        storage: Storage,
        *,
        registry: TargetRegistry,
        ca: CertificateAuthority,
        secret: bytes,
        limiter: RegistrationLimiter,
        events: EventHub,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._storage = storage
        self._registry = registry
        self._ca = ca
        self._secret = secret
        self._limiter = limiter
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._tally = AttemptTally()

    def check_rate(self, address: str) -> None:
        """Count an attempt from ``address``; :class:`RateLimited` when over the limit."""
        wait_s = self._limiter.check(address)
        if wait_s:
            self._metrics.count_registration("rate_limited")
            self._tally.add(address, rate_limited=True)
            raise RateLimited("too many registration attempts; slow down", retry_after_s=wait_s)

    def report(self) -> None:
        """Log one summary line of the refused and failed attempts since the last call
        (nothing when there were none); called once a minute by a background job."""
        tally, self._tally = self._tally, AttemptTally()
        if tally.rate_limited or tally.wrong_tokens:
            many = "at least " if len(tally.addresses) >= _MAX_TALLIED_ADDRESSES else ""
            log.warning(
                "registration: %d attempt(s) rate-limited, %d wrong token(s) from %s%d "
                "address(es) in the last period%s", tally.rate_limited, tally.wrong_tokens,
                many, len(tally.addresses),
                " (under attack: addresses with recent failures are refused)"
                if self._limiter.under_attack else "",
            )  # fmt: skip

    def _failed(self, address: str) -> None:
        self._metrics.count_registration("rejected")
        self._limiter.failed(address)
        self._tally.add(address, rate_limited=False)

    async def register(
        self, token: str | None, device: DeviceInfo, *, address: str = "unknown"
    ) -> Registered:
        """Spend ``token`` and register ``device`` (asked from ``address``).

        Raises :class:`Unauthorized` (no, malformed, unknown, expired or spent token; counted
        as a failure of ``address``) or :class:`ConflictError` (the id exists; the token
        stays unspent).
        """
        try:
            token_hash = crypto_tokens.hash_token(self._secret, token or "")
        except InvalidToken:
            self._failed(address)
            raise Unauthorized("a valid registration token is required (X-Auth-Token)") from None
        now = self._clock()
        cert = self._ca.issue_device_certificate(
            device.id, device.identity_key, now=dt.datetime.fromtimestamp(now / 1000, dt.UTC)
        )
        record = TargetRecord(
            id=device.id,
            curve_key=device.curve_key,
            identity_key=base64.b64encode(device.identity_key).decode("ascii"),
            created_at=now,
            updated_at=now,
            name=device.name,
            tags=device.tags,
            location=device.location,
        )
        try:
            stored = await self._storage.register_target(token_hash, record, now=now)
        except TokenRejected:
            self._failed(address)
            raise Unauthorized("the registration token is unknown, expired or spent") from None
        except Conflict:
            self._metrics.count_registration("conflict")
            raise ConflictError(
                f"a target with id {device.id} (or with this CurveZMQ key) exists already"
            ) from None
        self._metrics.count_registration("ok")
        log.info("registered target %s (token set %s)", stored.id, stored.token_set)
        await self._registry.notify_registered(stored)
        self._events.publish(
            "targetAdded", target_json(self._registry.view(stored)), target=stored.id
        )
        signature = base64.b64encode(self._ca.sign(device.identity_key)).decode("ascii")
        return Registered(stored, cert.decode("ascii"), signature)
