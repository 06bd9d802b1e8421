"""Registration against a real HTTP endpoint on 127.0.0.1 (seed 003 §4.3)."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import (
    AgentFatalError,
    ConfigError,
    RegistrationError,
    StateCorruptError,
)
from swarmdeploy.agent.identity import CURVE_KEY_FILE, IDENTITY_KEY_FILE, load_identity
from swarmdeploy.agent.registrator import ensure_registered, generate_id, register_in_child
from swarmdeploy.agent.state import load_state
from swarmdeploy.crypto.anchors import AnchorSet, key_fingerprint, parse_anchor_file
from swarmdeploy.crypto.curve import generate_keypair
from tests.agent.registration_server import (
    Script,
    new_ca,
    registration_answer,
    registration_server,
)
from tests.agent.registration_server import _handler as registration_handler
from tests.security.test_tls import server_cert, tls_ca

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
    script = ok_script()
    with registration_server(script) as url:
        with pytest.raises(RegistrationError, match="does not match --trust-anchor") as info:
            ensure_registered(settings(tmp_path, url), pinned)
    assert "anchor_mismatch" in str(info.value) and info.value.exit_status == 2
    assert load_state(tmp_path / "agent" / "state.json").registration is None  # type: ignore[union-attr]
    assert script.info_requests == 1 and script.requests == []  # the token was never sent


def test_fingerprint_pin_of_the_managers_ca_registers(tmp_path: Path) -> None:
    ca = new_ca()
    script = Script([(201, {}, registration_answer("dev-1", MANAGER_KEY, ca, (7001, 7000)))])
    pins = parse_anchor_file(f"# the manager's CA\n{key_fingerprint(ca.public_key_raw)}\n")
    with registration_server(script) as url:
        state, _ = ensure_registered(settings(tmp_path, url), pins)
    assert state.registration is not None
    assert script.info_requests == 1 and len(script.requests) == 1  # checked, then registered


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


# --- registration in a forked child (what the entry point uses) -------------------------
# The agent forks before it starts any thread; tests that fork the test runner (which may
# run threads, e.g. the registration server's) accept Python 3.12's warning about that.

_CHILD_PROBE = """
import json, sys
from pathlib import Path
from swarmdeploy.agent.main import keep_lean
keep_lean()  # first, as the entry point does
from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.registrator import register_in_child
from swarmdeploy.crypto.anchors import AnchorSet
settings = AgentSettings(
    data_dir=Path(sys.argv[1]), manager_url=sys.argv[2], token="abcd-efgh-ijkl", target_id="dev-1"
)
done = [register_in_child(settings, AnchorSet()), register_in_child(settings, AnchorSet())]
heavy = ("urllib.request", "http.client", "email.parser", "ssl", "_ssl")
print(json.dumps([done, [m for m in heavy if sys.modules.get(m)]]))
"""


def test_registration_in_a_child_keeps_http_modules_out_of_the_agent(tmp_path: Path) -> None:
    script = ok_script()
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700)
    with registration_server(script) as url:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD_PROBE, str(data_dir), url],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
    done, loaded = json.loads(out.stdout)
    assert done == [True, False]  # registered once; the second call found the registration
    assert loaded == [] and len(script.requests) == 1
    state = load_state(data_dir / "state.json")
    assert state is not None and state.registration is not None and state.agent_id == "dev-1"


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.parametrize(("status", "exit_status"), [(401, 2), (503, 3)])
def test_child_registration_errors_are_raised_in_the_parent(
    tmp_path: Path, status: int, exit_status: int
) -> None:
    script = Script([(status, {}, {"error": "the manager's words"})])
    with registration_server(script) as url, pytest.raises(RegistrationError) as err:
        register_in_child(settings(tmp_path, url), AnchorSet())
    assert err.value.exit_status == exit_status and err.value.retryable == (exit_status == 3)
    assert "the manager's words" in str(err.value)


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_child_config_error_keeps_its_class(tmp_path: Path) -> None:
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate")
    with pytest.raises(ConfigError, match="--tls-ca") as err:
        register_in_child(settings(tmp_path, "https://127.0.0.1:9", tls_ca=bad_ca), AnchorSet())
    assert err.value.exit_status == 2


def test_missing_token_is_refused_without_a_child(tmp_path: Path) -> None:
    s = settings(tmp_path, "http://127.0.0.1:9", token=None, target_id=None)
    with pytest.raises(RegistrationError, match="not registered yet"):
        register_in_child(s, AnchorSet())
    state = load_state(s.state_path)  # the id is fixed before the first attempt, as before
    assert state is not None and state.registration is None


class _BrokenAnchors:
    """Anchors whose check fails with an unexpected error (a bug, not a refusal)."""

    def __bool__(self) -> bool:
        return True

    def adopt(self, key: bytes, der: bytes) -> AnchorSet:
        raise RuntimeError("unexpected")


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_unexpected_child_failure_is_fatal_with_its_status(tmp_path: Path) -> None:
    with registration_server(ok_script()) as url, pytest.raises(AgentFatalError) as err:
        register_in_child(settings(tmp_path, url), _BrokenAnchors())  # type: ignore[arg-type]
    assert type(err.value) is AgentFatalError and "exit status 70" in str(err.value)


@contextlib.contextmanager
def tls_registration_server(script: Script, directory: Path) -> Iterator[tuple[str, Path]]:
    """The registration endpoint over TLS (a certificate for 127.0.0.1 from a test CA);
    yields the ``https://`` URL and the CA file."""
    ca_file, ca_key, issuer = tls_ca(directory, "test-tls-ca")
    server_cert(directory, ca_key, issuer)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    server = ThreadingHTTPServer(("127.0.0.1", 0), registration_handler(script))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_child_registers_over_https_while_the_agent_blocks_openssl(tmp_path: Path) -> None:
    script = ok_script()
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700)
    probe = _CHILD_PROBE.replace("target_id=", "tls_ca=Path(sys.argv[3]), target_id=")
    with tls_registration_server(script, tmp_path) as (url, ca_file):
        out = subprocess.run(
            [sys.executable, "-c", probe, str(data_dir), url, str(ca_file)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert out.returncode == 0, out.stderr
    done, loaded = json.loads(out.stdout)
    assert done == [True, False] and loaded == [] and len(script.requests) == 1
