"""The agent's verifier: anchors at provisioning, modes, receipt and start checks, sequence
bookkeeping across restarts, the clock, and revocation lists (real CA and signatures)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import ConfigError, TaskRefused
from swarmdeploy.agent.state import AgentState, Deployment, Registration, load_state, save_state
from swarmdeploy.agent.trust import (
    NO_ANCHOR_REASON,
    REVOCATIONS_FILE,
    Verifier,
    adopt_manager_ca,
    lab_anchor,
    load_anchor_file,
    make_verifier,
    wall_clock_ms,
)
from swarmdeploy.crypto.anchors import AnchorSet, key_fingerprint, parse_anchor_file
from swarmdeploy.crypto.operator import RevocationList, ca_issuer, issue_revocation_list
from swarmdeploy.crypto.rejections import AnchorMismatch, Rollback
from swarmdeploy.protocol.messages import Task
from tests.agent.registration_server import new_ca
from tests.crypto import signing_rig as rig
from tests.crypto.signing_rig import NOW_MS, TARGET, TASK


def _verifier(tmp_path: Path, anchors: AnchorSet | None = None, **kw: object) -> Verifier:
    chosen = rig.anchors() if anchors is None else anchors
    verifier = Verifier(chosen, clock=lambda: NOW_MS, **kw)  # type: ignore[arg-type]
    state = AgentState(agent_id=TARGET, tags=["field"])
    path = tmp_path / "state.json"
    verifier.attach(state, lambda: save_state(path, state), tmp_path)
    return verifier


def _task(task_id: str = TASK, *, operator: rig.Operator | None = None, **fields: object) -> Task:
    op = operator or rig.new_operator()
    data = rig.manifest(task_id=task_id, **fields)
    return Task(task_id=task_id, manifest=data, signature=op.sign(data), certificate=op.certificate)


def test_anchor_file_problems_are_config_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "anchors"
    with pytest.raises(ConfigError, match="--trust-anchor"):
        load_anchor_file(path)
    path.write_text("# only a comment\n")
    with pytest.raises(ConfigError, match="holds no certificate"):
        load_anchor_file(path)
    path.write_text("sha256:not-hex\n")
    with pytest.raises(ConfigError, match="malformed"):
        load_anchor_file(path)
    path.write_text(rig.authority().cert_pem().decode())
    assert load_anchor_file(path).keys[0].public_key == rig.authority().public_key_raw
    assert not load_anchor_file(None)


def test_pin_resolves_to_the_presented_ca_and_refuses_another() -> None:
    ca = rig.authority()
    pins = parse_anchor_file(key_fingerprint(ca.public_key_raw))
    adopted = adopt_manager_ca(pins, ca.public_key_raw, ca.cert_pem().decode())
    assert adopted.key_for(key_fingerprint(ca.public_key_raw)) is not None
    other = new_ca()
    with pytest.raises(AnchorMismatch):
        adopt_manager_ca(pins, other.public_key_raw, other.cert_pem().decode())
    assert not adopt_manager_ca(AnchorSet(), other.public_key_raw, "")  # nothing to adopt


def test_modes_and_the_no_anchor_decline(tmp_path: Path) -> None:
    assert _verifier(tmp_path).mode == "verified"
    bare = _verifier(tmp_path, AnchorSet())
    assert bare.mode == "no_anchor" and bare.decline_reason() == NO_ANCHOR_REASON
    lab = _verifier(tmp_path, AnchorSet(), insecure_lab=True)
    assert lab.mode == "insecure_lab" and lab.decline_reason() is None
    with pytest.raises(TaskRefused) as info:
        bare.verify_received(TASK, _task())
    assert info.value.code == "no_trust_anchor"


def test_signed_task_is_accepted_recorded_and_its_replay_refused(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path)
    accepted = verifier.verify_received(TASK, _task(sequence=10))
    assert (accepted.sequence, accepted.signer, accepted.manifest.run) == (
        10,
        "alice",
        ["./robot --serve"],
    )
    verifier.record(TASK, accepted)
    saved = load_state(tmp_path / "state.json")
    assert saved is not None and saved.trust.last_sequence == {"deploy": 10}
    # The same task again after an agent restart (resume) is accepted ...
    assert verifier.verify_received(TASK, _task(sequence=10)).sequence == 10
    # ... a replay of it under another task id is not, nor an older one.
    for task_id, sequence in (("task-43", 10), ("task-44", 9)):
        with pytest.raises(TaskRefused) as info:
            verifier.verify_received(task_id, _task(task_id, sequence=sequence))
        assert info.value.code == "rollback"
    assert verifier.verify_received("task-45", _task("task-45", sequence=11)).sequence == 11


def test_unsigned_task_refused_with_anchors_accepted_in_lab_mode(tmp_path: Path) -> None:
    unsigned = Task(task_id=TASK, manifest=rig.manifest())
    with pytest.raises(TaskRefused) as info:
        _verifier(tmp_path).verify_received(TASK, unsigned)
    assert info.value.code == "unsigned" and str(info.value).startswith("refused: unsigned:")
    lab = _verifier(tmp_path, AnchorSet(), insecure_lab=True)
    accepted = lab.verify_received(TASK, unsigned)
    lab.record(TASK, accepted)
    assert accepted.sequence == 0 and lab.trust.last_sequence == {}


def test_lab_mode_verifies_signed_tasks_against_the_registration_ca(tmp_path: Path) -> None:
    ca = rig.authority()
    lab_ca = lab_anchor(ca.public_key_raw, ca.cert_pem().decode())
    lab = _verifier(tmp_path, AnchorSet(), insecure_lab=True, lab_ca=lab_ca)
    assert lab.verify_received(TASK, _task()).signer == "alice"
    stranger = rig.new_operator(ca=new_ca())
    with pytest.raises(TaskRefused) as info:
        lab.verify_received(TASK, _task(operator=stranger))
    assert info.value.code == "unknown_signer"


def test_manager_time_is_a_lower_bound_of_now(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path)
    verifier.observe_server_time(NOW_MS - 1000)
    assert verifier.now_ms() == NOW_MS
    verifier.observe_server_time(NOW_MS + 2 * rig.DAY_MS)  # past the manifest's expiry
    assert 0 <= verifier.now_ms() - (NOW_MS + 2 * rig.DAY_MS) < 1000  # advancing from there
    with pytest.raises(TaskRefused) as info:
        verifier.verify_received(TASK, _task())
    assert info.value.code == "manifest_expired"
    verifier.observe_server_time(NOW_MS - 5000)  # the manager's clock was corrected
    assert verifier.now_ms() == NOW_MS


def _crl(number: int, *, serials: frozenset[int] = frozenset()) -> bytes:
    ca = rig.authority()
    crl = RevocationList(
        issuer=ca_issuer(ca.public_key_raw), number=number, issued_at_ms=NOW_MS, serials=serials
    )
    return issue_revocation_list(crl, ca.sign)


def test_revocation_list_applies_persists_and_cannot_be_rolled_back(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path)
    operator = rig.new_operator(serial=99)
    assert verifier.apply_revocation_list(_crl(2, serials=frozenset({99}))) == 2
    with pytest.raises(TaskRefused) as info:
        verifier.verify_received(TASK, _task(operator=operator))
    assert info.value.code == "revoked_signer"
    with pytest.raises(Rollback):
        verifier.apply_revocation_list(_crl(1))
    assert (tmp_path / REVOCATIONS_FILE).read_bytes() == _crl(2, serials=frozenset({99}))
    # A new verifier (agent restart) loads the kept list.
    with pytest.raises(TaskRefused):
        _verifier(tmp_path).verify_received(TASK, _task(operator=operator))


def test_tampered_revocation_file_stops_the_agent_start(tmp_path: Path) -> None:
    (tmp_path / REVOCATIONS_FILE).write_bytes(_crl(3).replace(b'"body"', b'"bodY"'))
    with pytest.raises(ConfigError, match=REVOCATIONS_FILE):
        _verifier(tmp_path)


def test_unsigned_deployment_does_not_start_outside_lab_mode(tmp_path: Path) -> None:
    dep = Deployment(task_id=TASK, install_dir="/nowhere", sequence=0)
    message = Task(task_id=TASK, manifest=rig.manifest())
    with pytest.raises(TaskRefused) as info:
        _verifier(tmp_path).verify_installed(dep, message)
    assert info.value.code == "unsigned"
    lab = _verifier(tmp_path, AnchorSet(), insecure_lab=True)
    assert lab.verify_installed(dep, message).task_id == TASK


def test_status_names_mode_anchors_and_counters(tmp_path: Path) -> None:
    verifier = _verifier(tmp_path)
    verifier.record(TASK, verifier.verify_received(TASK, _task(sequence=12)))
    status = verifier.status()
    assert status["mode"] == "verified" and status["sequence"] == {"deploy": 12}
    assert status["anchors"] == [key_fingerprint(rig.authority().public_key_raw)]


def _task_now(sequence: int = 10) -> Task:
    """A task valid by the real clock (``make_verifier`` uses it)."""
    now = wall_clock_ms()
    op = rig.new_operator(not_before_ms=now - rig.DAY_MS, not_after_ms=now + rig.DAY_MS)
    return _task(
        operator=op, sequence=sequence, created_at_ms=now - 1000, expires_at_ms=now + rig.DAY_MS
    )


def _registered(tmp_path: Path, ca_pem: bytes, ca_key: bytes) -> Registration:
    (tmp_path / "ca.pem").write_bytes(ca_pem)
    return Registration(
        manager_url="http://m",
        server_public_key="k",
        pub_port=1,
        sub_port=2,
        registered_at_ms=0,
        ca_public_key=base64.b64encode(ca_key).decode(),
    )


def test_restart_resolves_a_pin_with_the_registered_ca_or_refuses(tmp_path: Path) -> None:
    ca = rig.authority()
    reg = _registered(tmp_path, ca.cert_pem(), ca.public_key_raw)
    pins = parse_anchor_file(key_fingerprint(ca.public_key_raw))
    settings = AgentSettings(data_dir=tmp_path, trust_anchor=tmp_path / "pins")
    verifier = make_verifier(settings, pins, reg)
    assert verifier.mode == "verified"
    verifier.attach(AgentState(agent_id=TARGET, tags=["field"]), lambda: None, tmp_path)
    assert verifier.verify_received(TASK, _task_now()).sequence == 10  # the pin resolved
    other = new_ca()
    swapped = _registered(tmp_path, other.cert_pem(), other.public_key_raw)
    with pytest.raises(ConfigError, match="anchor_mismatch"):
        make_verifier(settings, pins, swapped)


def test_lab_mode_without_anchors_trusts_the_registered_ca(tmp_path: Path) -> None:
    ca = rig.authority()
    reg = _registered(tmp_path, ca.cert_pem(), ca.public_key_raw)
    lab = make_verifier(AgentSettings(data_dir=tmp_path, insecure_lab=True), AnchorSet(), reg)
    lab.attach(AgentState(agent_id=TARGET, tags=["field"]), lambda: None, tmp_path)
    assert lab.mode == "insecure_lab" and lab.verify_received(TASK, _task_now()).signer == "alice"
    strict = make_verifier(AgentSettings(data_dir=tmp_path), AnchorSet(), reg)
    assert strict.mode == "no_anchor"  # the registration CA alone is never an anchor
