"""The REST API over TLS with a real manager process (``--tls-cert/--tls-key``): an agent
registers over https only when the manager's certificate is the one it was given
(``--tls-ca``), and only when the manager's deployment CA matches its trust anchor; behind
a reverse proxy the registration rate limit follows ``X-Forwarded-For`` from trusted
proxies only. Certificates are generated here (``cryptography``), everything on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmdeploy.agent.config import AgentSettings
from swarmdeploy.agent.errors import RegistrationError
from swarmdeploy.agent.registrator import ensure_registered
from swarmdeploy.agent.trust import load_anchor_file
from swarmdeploy.crypto.anchors import AnchorSet
from swarmdeploy.localfleet import free_port
from tests.agent.registration_server import new_ca

_NOW = dt.datetime.now(dt.UTC)


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def tls_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Name]:
    """A TLS CA (ECDSA P-256); returns its PEM file, key and name."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - dt.timedelta(minutes=5))
        .not_valid_after(_NOW + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(_pem(cert))
    return path, key, cert.subject


def server_cert(directory: Path, ca_key: ec.EllipticCurvePrivateKey, issuer: x509.Name) -> None:
    """``server.pem`` and ``server.key`` for 127.0.0.1, issued by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - dt.timedelta(minutes=5))
        .not_valid_after(_NOW + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "server.pem").write_bytes(_pem(cert))
    (directory / "server.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class TlsManager:
    url: str
    ca: Path
    data_dir: Path
    admin_key: str

    def client(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        verify = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=10)

    def tokens(self, total: int) -> list[str]:
        with self.client() as api:
            name = f"tls-{secrets.token_hex(4)}"
            answer = api.post("/token_sets", params={"name": name, "total": total})
            answer.raise_for_status()
            return list(answer.json()["tokens"])


def _wait_healthy(manager: TlsManager, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"manager exited: {log.read_text()[-2000:]}")
        try:
            with manager.client() as api:
                if api.get("/health").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"manager not healthy over https: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def manager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsManager]:
    root = tmp_path_factory.mktemp("tls")
    ca, ca_key, issuer = tls_ca(root, "tls-ca")
    server_cert(root, ca_key, issuer)
    port = free_port()
    admin = secrets.token_urlsafe(24)
    data_dir = root / "manager"
    cmd = [sys.executable, "-m", "swarmdeploy", "manager", "--data-dir", str(data_dir)]
    cmd += ["--http-port", str(port), "--zmq-pub-port", str(free_port())]
    cmd += ["--zmq-sub-port", str(free_port()), "--tls-cert", str(root / "server.pem")]
    cmd += ["--tls-key", str(root / "server.key"), "--forwarded-allow-ips", "127.0.0.1"]
    log = root / "manager.log"
    env = {**os.environ, "SWARMDEPLOY_ADMIN_KEY": admin}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out, cwd=root)
    handle = TlsManager(f"https://127.0.0.1:{port}", ca, data_dir, admin)
    try:
        _wait_healthy(handle, proc, log)
        yield handle
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """The module's manager outlives single tests on purpose (the suite-wide check would
    count it as leaked); it is stopped by its fixture."""
    yield


def _settings(tmp_path: Path, manager: TlsManager, token: str, **kw: object) -> AgentSettings:
    data_dir = tmp_path / "agent"
    data_dir.mkdir(mode=0o700, parents=True)
    return AgentSettings(
        data_dir=data_dir,
        manager_url=manager.url,
        token=token,
        target_id=f"tls-{secrets.token_hex(3)}",
        **kw,  # type: ignore[arg-type]
    )


def test_registration_over_https_with_the_pinned_ca(tmp_path: Path, manager: TlsManager) -> None:
    (token,) = manager.tokens(1)
    settings = _settings(tmp_path, manager, token, tls_ca=manager.ca)
    state, _ = ensure_registered(settings, AnchorSet())
    assert state.registration is not None and state.registration.manager_url == manager.url


def test_registration_refused_with_a_wrong_tls_ca(tmp_path: Path, manager: TlsManager) -> None:
    (token,) = manager.tokens(1)
    other, _, _ = tls_ca(tmp_path, "other-ca")
    settings = _settings(tmp_path, manager, token, tls_ca=other)
    with pytest.raises(RegistrationError, match="not trusted") as info:
        ensure_registered(settings, AnchorSet())
    assert info.value.exit_status == 2  # an operator must fix it; retrying will not help


def test_registration_needs_the_managers_deployment_ca(tmp_path: Path, manager: TlsManager) -> None:
    good, bad = manager.tokens(2)
    impostor = tmp_path / "impostor.pem"
    impostor.write_bytes(new_ca().cert_pem())
    wrong = _settings(tmp_path, manager, bad, tls_ca=manager.ca, trust_anchor=impostor)
    with pytest.raises(RegistrationError, match="anchor_mismatch"):
        ensure_registered(wrong, load_anchor_file(impostor))
    right_anchor = manager.data_dir / "ca.pem"
    right = _settings(tmp_path / "2", manager, good, tls_ca=manager.ca, trust_anchor=right_anchor)
    state, _ = ensure_registered(right, load_anchor_file(right_anchor))
    assert state.registration is not None


def test_rate_limit_follows_forwarded_for_from_a_trusted_proxy(manager: TlsManager) -> None:
    def attempts(addresses: list[str]) -> list[int]:
        with manager.client() as api:
            return [
                api.post(
                    "/rpc/targets",
                    headers={"X-Auth-Token": "zzzz-zzzz-zzzz", "X-Forwarded-For": address},
                    json={},
                ).status_code
                for address in addresses
            ]

    spread = attempts([f"198.51.100.{i}" for i in range(15)])
    assert 429 not in spread  # one attempt per client address: none is limited
    same = attempts(["203.0.113.7"] * 15)
    assert 429 in same
