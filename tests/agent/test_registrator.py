"""Registration against a real HTTP endpoint on 127.0.0.1 (seed 003 §4.3)."""

from __future__ import annotations

import base64
import socket
import stat
from pathlib import Path

import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import RegistrationError, StateCorruptError
from swarmdeploy.agent.identity import CURVE_KEY_FILE, IDENTITY_KEY_FILE, load_identity
from swarmdeploy.agent.registrator import ensure_registered, generate_id
from swarmdeploy.agent.state import load_state
from swarmdeploy.crypto.anchors import AnchorSet, key_fingerprint, parse_anchor_file
from swarmdeploy.crypto.curve import generate_keypair
from tests.agent.registration_server import (
    Script,
    new_ca,
    registration_answer,
    registration_server,
)

TOKEN = "abcd-efgh-ijkl"
MANAGER_KEY = generate_keypair().public


def settings(tmp_path: Path, url: str, **kw: object) -> AgentSettings:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700, exist_ok=True)
    values: dict[str, object] = {"manager_url": url, "token": TOKEN, "target_id": "dev-1"}
    values.update(kw)
    return AgentSettings(data_dir=data_dir, **values)  # type: ignore[arg-type]


def ok_script(target: str = "dev-1") -> Script:
    return Script([(201, {}, registration_answer(target, MANAGER_KEY, new_ca(), (7001, 7000)))])


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_start_registers_and_persists_identity_and_server_info(tmp_path: Path) -> None:
    script = ok_script()
    with registration_server(script) as url:
        s = settings(tmp_path, url, tags=("lab", "arm"), location=(48.1, 11.5), name="Pi")
        state, identity = ensure_registered(s, AnchorSet())
    (request,) = script.requests
    assert request.path == "/rpc/targets" and request.headers["X-Auth-Token"] == TOKEN
    assert request.body["id"] == "dev-1" and request.body["tags"] == ["lab", "arm"]
    assert request.body["location"] == {"lat": 48.1, "lon": 11.5} and request.body["name"] == "Pi"
    assert request.body["publicKey"] == identity.curve.public
    assert len(base64.b64decode(request.body["identityKey"])) == 32
    reg = state.registration
    assert reg is not None and (reg.sub_port, reg.pub_port) == (7001, 7000)
    assert reg.server_public_key == MANAGER_KEY and reg.manager_url == url
    for name in (CURVE_KEY_FILE, IDENTITY_KEY_FILE, "state.json", "ca.pem", "agent.pem"):
        assert mode(s.data_dir / name) == 0o600, name
    assert "BEGIN CERTIFICATE" in (s.data_dir / "ca.pem").read_text()
    assert load_state(s.state_path) == state


def test_later_start_needs_no_token_and_ignores_a_spent_one(tmp_path: Path) -> None:
    script = ok_script()
    with registration_server(script) as url:
        first, identity = ensure_registered(settings(tmp_path, url), AnchorSet())
        again, same = ensure_registered(settings(tmp_path, url, token=None), AnchorSet())
        spent, _ = ensure_registered(settings(tmp_path, url), AnchorSet())
    assert len(script.requests) == 1
    assert again == first == spent and same == identity


def test_changed_id_after_registration_is_refused(tmp_path: Path) -> None:
    with registration_server(ok_script()) as url:
        ensure_registered(settings(tmp_path, url), AnchorSet())
        with pytest.raises(RegistrationError, match="differs from the registered id 'dev-1'"):
            ensure_registered(settings(tmp_path, url, target_id="dev-2"), AnchorSet())


@pytest.mark.parametrize(
    ("status", "text"),
    [(401, "token refused"), (409, "already registered"), (422, r"refused \(422\)")],
)
def test_refused_registration_names_the_problem(tmp_path: Path, status: int, text: str) -> None:
    script = Script([(status, {}, {"error": "the manager's words", "code": "x"})])
    with registration_server(script) as url, pytest.raises(RegistrationError, match=text) as err:
        ensure_registered(settings(tmp_path, url), AnchorSet())
    assert err.value.exit_status == 2
    assert status == 409 or "the manager's words" in str(err.value)
    assert load_state(settings(tmp_path, url).state_path).registration is None  # type: ignore[union-attr]


def test_rate_limited_registration_waits_retry_after_and_retries(tmp_path: Path) -> None:
    limited = (429, {"Retry-After": "3"}, {"error": "slow down"})
    script = Script([limited, limited, *ok_script().answers])
    waits: list[float] = []
    with registration_server(script) as url:
        state, _ = ensure_registered(settings(tmp_path, url), AnchorSet(), sleep=waits.append)
    assert waits == [3.0, 3.0] and state.registration is not None


def test_rate_limit_that_outlasts_the_retries_is_retryable(tmp_path: Path) -> None:
    script = Script([(429, {"Retry-After": "1"}, {"error": "slow down"})])
    with registration_server(script) as url, pytest.raises(RegistrationError) as err:
        ensure_registered(settings(tmp_path, url), AnchorSet(), sleep=lambda _: None)
    assert err.value.exit_status == 3 and "rate limited" in str(err.value)


def test_unreachable_manager_is_a_retryable_error(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(RegistrationError, match="cannot reach the manager") as err:
        ensure_registered(settings(tmp_path, f"http://127.0.0.1:{port}"), AnchorSet())
    assert err.value.exit_status == 3


def test_missing_token_on_first_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RegistrationError, match="not registered yet"):
        ensure_registered(settings(tmp_path, "http://127.0.0.1:9", token=None), AnchorSet())


def test_generated_id_is_kept_across_failed_attempts(tmp_path: Path) -> None:
    script = Script([(401, {}, {"error": "no"})])
    with registration_server(script) as url:
        for _ in range(2):
            with pytest.raises(RegistrationError):
                ensure_registered(settings(tmp_path, url, target_id=None), AnchorSet())
    first, second = (r.body["id"] for r in script.requests)
    assert first == second and first.startswith(generate_id()[:-7])
    assert generate_id("my host!").startswith("my-host-")


def test_pinned_ca_must_match_the_managers_ca(tmp_path: Path) -> None:
    pinned = parse_anchor_file(new_ca().cert_pem().decode())
    with registration_server(ok_script()) as url:
        with pytest.raises(RegistrationError, match="does not match --trust-anchor") as info:
            ensure_registered(settings(tmp_path, url), pinned)
    assert "anchor_mismatch" in str(info.value) and info.value.exit_status == 2
    assert load_state(tmp_path / "agent" / "state.json").registration is None  # type: ignore[union-attr]


def test_fingerprint_pin_of_the_managers_ca_registers(tmp_path: Path) -> None:
    ca = new_ca()
    script = Script([(201, {}, registration_answer("dev-1", MANAGER_KEY, ca, (7001, 7000)))])
    pins = parse_anchor_file(f"# the manager's CA\n{key_fingerprint(ca.public_key_raw)}\n")
    with registration_server(script) as url:
        state, _ = ensure_registered(settings(tmp_path, url), pins)
    assert state.registration is not None


def test_fingerprint_pin_of_another_ca_refuses_to_register(tmp_path: Path) -> None:
    pins = parse_anchor_file(key_fingerprint(new_ca().public_key_raw))
    with registration_server(ok_script()) as url:
        with pytest.raises(RegistrationError, match="anchor_mismatch"):
            ensure_registered(settings(tmp_path, url), pins)


def test_registered_agent_without_key_files_must_register_again(tmp_path: Path) -> None:
    with registration_server(ok_script()) as url:
        s = settings(tmp_path, url)
        ensure_registered(s, AnchorSet())
    (s.data_dir / CURVE_KEY_FILE).unlink()
    with pytest.raises(StateCorruptError, match="registered again"):
        load_identity(s.data_dir, create=False)
