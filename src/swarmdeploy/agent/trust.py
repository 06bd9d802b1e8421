"""Trust on the device: anchors, revocations, sequence numbers, and the verification of
signed tasks on receipt and before every start (CRD-72/75/76/78, ADR 0004,
``docs/security.md``).

* :func:`load_anchor_file` reads ``--trust-anchor FILE`` with
  :func:`swarmdeploy.crypto.anchors.parse_anchor_file` (PEM CA certificates found by a strict
  DER walk, ``ed25519:<base64>`` keys, ``sha256:<hex>`` pins).
* :func:`adopt_manager_ca` checks the CA the manager presents at registration (and, at every
  later start, the one registration stored) against those anchors: a pin resolves to the key
  only if it matches, anything else is :class:`~swarmdeploy.crypto.rejections.AnchorMismatch`.
* :class:`Verifier` holds what verification needs at run time -- anchors, the accepted
  revocation list, the highest accepted sequence per task kind, the clock -- and turns every
  failed check into :class:`~swarmdeploy.agent.errors.TaskRefused` carrying the check's code.

PyNaCl (through :mod:`swarmdeploy.crypto`) is imported only when something is verified: an
idle agent without anchors never loads it.

Modes: with anchors, only signed tasks are accepted. Without anchors the agent refuses every
task (``no_anchor``) unless started with ``--insecure-lab``; then unsigned tasks are accepted
(with a warning) and signed ones are verified against the anchors plus the CA learned at
registration (trust on first use). The mode is reported in ``hello`` and ``health``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import ConfigError, TaskRefused
from swarmdeploy.agent.fsutil import atomic_write
from swarmdeploy.agent.sequences import forget_revoked, note_accepted
from swarmdeploy.agent.state import AgentState, Deployment, Registration, TrustState
from swarmdeploy.crypto.rejections import VerificationError
from swarmdeploy.protocol.errors import MessageError
from swarmdeploy.protocol.manifest import TaskManifest, decode_manifest
from swarmdeploy.protocol.messages import Task

if TYPE_CHECKING:
    from swarmdeploy.crypto.anchors import AnchorKey, AnchorSet
    from swarmdeploy.crypto.signing import Revocations, Target

logger = logging.getLogger(__name__)

NO_ANCHOR_REASON = (
    "no trust anchor: start the agent with --trust-anchor, or --insecure-lab for a lab"
)
REVOCATIONS_FILE = "revocations"
MODE_VERIFIED = "verified"
MODE_INSECURE_LAB = "insecure_lab"
MODE_NO_ANCHOR = "no_anchor"


def load_anchor_file(path: Path | None) -> AnchorSet:
    """The anchors of ``--trust-anchor FILE`` (none: an empty set). :class:`ConfigError`
    names the file and the problem when it is unreadable, malformed or empty."""
    from swarmdeploy.crypto.anchors import AnchorSet, parse_anchor_file

    if path is None:
        return AnchorSet()
    try:
        anchors = parse_anchor_file(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--trust-anchor {path}: {exc}") from None
    except VerificationError as exc:
        raise ConfigError(f"--trust-anchor {path}: {exc.code}: {exc.message}") from None
    if not anchors:
        raise ConfigError(f"--trust-anchor {path} holds no certificate, key or sha256: pin")
    return anchors


def pem_der(pem: str) -> bytes:
    """The DER of the first PEM certificate in ``pem`` (empty if there is none)."""
    from swarmdeploy.crypto.anchors import pem_certificates

    try:
        found, _ = pem_certificates(pem)
    except VerificationError:
        return b""
    return found[0] if found else b""


def adopt_manager_ca(anchors: AnchorSet, ca_public_key: bytes, ca_pem: str) -> AnchorSet:
    """The anchors to use with a manager presenting this CA (key and PEM certificate).

    Raises :class:`~swarmdeploy.crypto.rejections.AnchorMismatch` when anchors were
    provisioned and the CA is none of them and matches no pin; an empty anchor set adopts
    nothing (the caller decides what an agent without anchors may do).
    """
    if not anchors:
        return anchors
    return anchors.adopt(ca_public_key, pem_der(ca_pem))


def registered_ca(data_dir: Path, registration: Registration) -> tuple[bytes, str]:
    """The CA key and PEM the manager presented at registration (``b""``/``""`` if unknown)."""
    try:
        key = base64.b64decode(registration.ca_public_key, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    try:
        pem = (data_dir / "ca.pem").read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        pem = ""
    return (key, pem) if len(key) == 32 else (b"", "")


def lab_anchor(ca_public_key: bytes, ca_pem: str) -> AnchorKey | None:
    """Insecure lab mode: the CA learned at registration, trusted on first use."""
    from swarmdeploy.crypto.anchors import AnchorKey, parse_ca_certificate

    if not ca_public_key:
        return None
    try:
        anchor = parse_ca_certificate(pem_der(ca_pem))
    except VerificationError:
        return AnchorKey(ca_public_key)
    return anchor if anchor.public_key == ca_public_key else AnchorKey(ca_public_key)


def make_verifier(
    settings: AgentSettings, anchors: AnchorSet, registration: Registration
) -> Verifier:
    """The verifier of a registered agent (entry point): the anchors of ``--trust-anchor``
    with the manager's CA adopted as at registration (:class:`ConfigError` if it does not
    match them any more), the registration CA as lab anchor, and a warning when the agent
    will decline every task or accept unsigned ones."""
    ca_key, ca_pem = registered_ca(settings.data_dir, registration)
    if ca_key:
        try:
            anchors = adopt_manager_ca(anchors, ca_key, ca_pem)
        except VerificationError as exc:
            raise ConfigError(
                f"--trust-anchor {settings.trust_anchor}: the CA of the manager this agent is"
                f" registered with does not match ({exc.code}: {exc.message})"
            ) from None
    verifier = Verifier(
        anchors, insecure_lab=settings.insecure_lab, lab_ca=lab_anchor(ca_key, ca_pem)
    )
    if verifier.mode == MODE_NO_ANCHOR:
        logger.warning("%s; every task will be declined", NO_ANCHOR_REASON)
    elif verifier.mode == MODE_INSECURE_LAB:
        logger.warning("insecure lab mode: unsigned tasks are accepted (never use it in the field)")
    return verifier


@dataclass(frozen=True, slots=True)
class Accepted:
    """A task whose manifest passed verification on receipt: what to install, its sequence
    (0: unsigned, insecure lab mode) and who signed it."""

    manifest: TaskManifest
    sequence: int
    signer: str
    key_id: str = ""
    serial: int = 0


class _Kind(msgspec.Struct):
    kind: str = "deploy"
    app: str = ""


def _peek_kind(manifest: bytes) -> str:
    """The manifest's sequence counter (its kind, and its app if it names one: rollback and
    replay are refused per app, docs/adr/0010), read before verification only to pick the
    counter; the verified facts come from the same bytes."""
    try:
        peek = msgspec.json.decode(manifest, type=_Kind)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return "deploy"
    return peek.kind if not peek.app else f"{peek.kind}:{peek.app}"


def _decode(manifest: bytes) -> TaskManifest:
    try:
        return decode_manifest(manifest)
    except MessageError as exc:
        raise TaskRefused("malformed", str(exc)) from None


def wall_clock_ms() -> int:
    """The local clock in epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Verifier:
    """Verification of signed tasks on this device (see the module docstring).

    Create it at the entry point; the daemon calls :meth:`attach` with the persisted state.
    ``anchors`` must already hold the manager's CA adopted at registration when pins were
    given (:func:`adopt_manager_ca`); ``lab_ca`` is the registration CA trusted in insecure
    lab mode only.
    """

    def __init__(
        self,
        anchors: AnchorSet | None,
        *,
        insecure_lab: bool = False,
        lab_ca: AnchorKey | None = None,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.anchors = anchors or None
        self.insecure_lab = insecure_lab
        verifying = self.anchors
        if insecure_lab and lab_ca is not None:
            from swarmdeploy.crypto.anchors import AnchorSet

            base = verifying or AnchorSet()
            if base.key_for(lab_ca.fingerprint) is None:
                verifying = AnchorSet((*base.keys, lab_ca), base.pins)
        self._verifying = verifying
        self._clock = clock
        self._state: AgentState | None = None
        self._save: Callable[[], None] = lambda: None
        self._revoked: Revocations | None = None
        self._revocations_path: Path | None = None
        self._server_time: tuple[int, float] | None = None

    # --- set-up and status -----------------------------------------------------------

    def attach(self, state: AgentState, save: Callable[[], None], data_dir: Path) -> None:
        """Daemon start: use ``state`` (persisted with ``save``) and load the accepted
        revocation list from ``DIR/revocations``; :class:`ConfigError` if that file does
        not verify or is older than the last one accepted."""
        self._state, self._save = state, save
        self._revocations_path = data_dir / REVOCATIONS_FILE
        try:
            data = self._revocations_path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ConfigError(f"cannot read {self._revocations_path}: {exc}") from None
        try:
            self._accept_revocations(data, state.trust.revocation_number)
        except VerificationError as exc:
            raise ConfigError(f"{self._revocations_path}: {exc.code}: {exc.message}") from None

    @property
    def trust(self) -> TrustState:
        """The persisted trust state (after :meth:`attach`)."""
        assert self._state is not None, "Verifier.attach() was not called"
        return self._state.trust

    @property
    def mode(self) -> str:
        """``verified`` (anchors), ``insecure_lab`` or ``no_anchor`` (refuses every task)."""
        if self.insecure_lab:
            return MODE_INSECURE_LAB
        return MODE_VERIFIED if self.anchors else MODE_NO_ANCHOR

    def decline_reason(self) -> str | None:
        """Why an announced task must be declined before anything else (no anchor)."""
        return NO_ANCHOR_REASON if self.mode == MODE_NO_ANCHOR else None

    def status(self) -> dict[str, Any]:
        """What ``hello``/``health`` report under ``security`` (see ``docs/security.md``)."""
        trust = self.trust
        keys = self.anchors.keys if self.anchors else ()
        return {
            "mode": self.mode,
            "anchors": sorted(k.fingerprint for k in keys),
            "unresolved_pins": len(self.anchors.pins) if self.anchors else 0,
            "revocation_list": trust.revocation_number,
            "sequence": dict(sorted(trust.last_sequence.items())),
        }

    # --- time and identity -------------------------------------------------------------

    def observe_server_time(self, server_time_ms: int) -> None:
        """The manager's authenticated time (``welcome``; 0: not sent): from now on a lower
        bound of "now", advanced by the monotonic clock. The latest one counts, so a manager
        clock that was wrong and is corrected stops affecting the agent at the next welcome."""
        if server_time_ms > 0:
            self._server_time = (server_time_ms, time.monotonic())

    def now_ms(self) -> int:
        """max(local clock, manager time): a device without a real-time clock neither
        refuses everything nor accepts expired manifests for ever."""
        now = self._clock()
        if self._server_time is not None:
            server_ms, seen = self._server_time
            now = max(now, server_ms + int((time.monotonic() - seen) * 1000))
        return now

    def target(self) -> Target:
        """This target's id and current tags (selector matching)."""
        from swarmdeploy.crypto.signing import Target

        assert self._state is not None
        return Target(self._state.agent_id, frozenset(self._state.tags))

    def _installed_target(self, dep: Deployment) -> Target:
        """This target as an installed release sees it: its tags now and when the release
        was installed -- a device whose tags change keeps its release (docs/adr/0010), and
        a manifest that never addressed it is still refused."""
        from swarmdeploy.crypto.signing import Target

        assert self._state is not None
        tags = frozenset(self._state.tags) | frozenset(dep.admitted_tags)
        return Target(self._state.agent_id, tags)

    def _revocations(self) -> Revocations:
        from swarmdeploy.crypto.signing import Revocations

        return self._revoked or Revocations()

    def revocations(self) -> Revocations:
        """The revocations of the accepted list (none: empty)."""
        return self._revocations()

    @property
    def verifying_anchors(self) -> AnchorSet | None:
        """The anchors signatures are verified against (in insecure lab mode including the
        CA learned at registration); None: nothing can be verified."""
        return self._verifying

    # --- receipt -----------------------------------------------------------------------

    def verify_received(self, task_id: str, message: Task) -> Accepted:
        """Verify a received ``task`` before anything of it is installed; return what to
        install. Raises :class:`TaskRefused` with the failed check's code."""
        if not message.signature and not message.certificate:
            return self._unsigned(task_id, message)
        if not self._verifying:
            raise TaskRefused("no_trust_anchor", NO_ANCHOR_REASON)
        from swarmdeploy.crypto.signing import verify_task

        kind = _peek_kind(message.manifest)
        last = self.trust.last_sequence.get(kind, 0)
        if self.trust.last_task.get(kind) == task_id:
            last -= 1  # this very task was accepted before a restart: same sequence again
        try:
            verified = verify_task(
                message.manifest,
                message.signature,
                message.certificate,
                anchors=self._verifying,
                revoked=self._revocations(),
                target=self.target(),
                task_id=task_id,
                now_ms=self.now_ms(),
                last_sequence=last,
            )
        except VerificationError as exc:
            raise TaskRefused(exc.code, exc.message) from None
        manifest = _decode(message.manifest)
        signer = verified.signer
        return Accepted(
            manifest, verified.facts.sequence, signer.name, signer.key_id, signer.serial
        )

    def _unsigned(self, task_id: str, message: Task) -> Accepted:
        if not self.insecure_lab:
            if not self.anchors:
                raise TaskRefused("no_trust_anchor", NO_ANCHOR_REASON)
            raise TaskRefused("unsigned", "the manifest is not signed (trust anchors are set)")
        manifest = _decode(message.manifest)
        if manifest.task_id != task_id:
            raise TaskRefused("wrong_task", f"the manifest is for task {manifest.task_id!r}")
        logger.warning("task %s: unsigned manifest accepted (insecure lab mode)", task_id)
        return Accepted(manifest, 0, "")

    def record(self, task_id: str, accepted: Accepted) -> None:
        """Persist ``accepted``'s sequence as the newest of its kind (before installing, so
        a replay during the install is refused too). Unsigned tasks record nothing."""
        if accepted.sequence == 0:
            return
        note_accepted(
            self.trust,
            kind=accepted.manifest.sequence_key,
            task_id=task_id,
            sequence=accepted.sequence,
            key_id=accepted.key_id,
            serial=accepted.serial,
        )
        self._save()

    # --- before every start ------------------------------------------------------------

    def verify_installed(self, dep: Deployment, message: Task) -> TaskManifest:
        """Verify the stored ``task`` of the installed deployment before starting any of its
        commands; return its manifest. Raises :class:`TaskRefused` (``unsigned`` when an
        unsigned deployment is to start outside insecure lab mode)."""
        if dep.sequence == 0:
            if not self.insecure_lab:
                raise TaskRefused("unsigned", "the installed deployment is not signed")
            manifest = _decode(message.manifest)
        elif not self._verifying:
            raise TaskRefused("no_trust_anchor", NO_ANCHOR_REASON)
        else:
            from swarmdeploy.crypto.signing import verify_installed

            try:
                verified = verify_installed(
                    message.manifest,
                    message.signature,
                    message.certificate,
                    anchors=self._verifying,
                    revoked=self._revocations(),
                    target=self._installed_target(dep),
                    installed_sequence=dep.sequence,
                )
            except VerificationError as exc:
                raise TaskRefused(exc.code, exc.message) from None
            manifest = _decode(verified.manifest)
        if manifest.task_id != dep.task_id:
            raise TaskRefused("wrong_task", f"the stored manifest is for {manifest.task_id!r}")
        return manifest

    # --- revocation --------------------------------------------------------------------

    def apply_revocation_list(self, data: bytes) -> int:
        """Accept a CA-signed revocation list (from the manager, later): verify it against
        the anchors, refuse one older than the last accepted (``rollback``), keep it in
        ``DIR/revocations`` and use it from now on. Returns its number; raises
        :class:`~swarmdeploy.crypto.rejections.VerificationError`."""
        assert self._revocations_path is not None, "Verifier.attach() was not called"
        number = self._accept_revocations(data, self.trust.revocation_number)
        atomic_write(self._revocations_path, data, 0o600)
        self.trust.revocation_number = number
        revoked = self._revocations()
        for kind in forget_revoked(self.trust, serials=revoked.serials, key_ids=revoked.key_ids):
            logger.warning(
                "%s sequence lowered to %d: the key that signed higher ones is revoked",
                kind, self.trust.last_sequence.get(kind, 0),
            )  # fmt: skip
        self._save()
        logger.info("revocation list %d accepted", number)
        return number

    def _accept_revocations(self, data: bytes, last_number: int) -> int:
        from swarmdeploy.crypto.operator import verify_revocation_list
        from swarmdeploy.crypto.rejections import UnknownSigner
        from swarmdeploy.crypto.signing import Revocations

        if not self._verifying:
            raise UnknownSigner("no trust anchor to verify a revocation list with")
        crl = verify_revocation_list(data, self._verifying, last_number=last_number)
        self._revoked = Revocations.from_list(crl)
        return crl.number
