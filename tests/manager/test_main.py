"""``swarmdeploy manager``: options from argv and environment, and the real process."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import stat
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from swarmdeploy.localfleet import free_port
from swarmdeploy.manager.main import env_name, freeze_startup_heap, main, parse_options
from swarmdeploy.manager.settings import SettingsError


def test_the_startup_heap_is_hidden_from_the_collector() -> None:
    built = [["start-up", n] for n in range(1000)]  # lives as long as the process would
    before = gc.get_freeze_count()
    freeze_startup_heap()
    try:
        assert gc.get_freeze_count() >= before + len(built)
        assert all(gc.is_tracked(x) for x in built[:3])  # frozen, not untracked
    finally:
        gc.unfreeze()


def test_env_name_follows_option() -> None:
    assert env_name("http-port") == "SWARMDEPLOY_HTTP_PORT"
    assert env_name("data-dir") == "SWARMDEPLOY_DATA_DIR"


def test_command_line_beats_environment(tmp_path: Path) -> None:
    env = {"SWARMDEPLOY_HTTP_PORT": "9000", "SWARMDEPLOY_DATABASE": "memory://",
           "SWARMDEPLOY_DATA_DIR": str(tmp_path), "SWARMDEPLOY_ADMIN_KEY": "k" * 20}  # fmt: skip
    values = parse_options(["--http-port", "9100"], env)
    assert values["http_port"] == 9100
    assert values["database"] == "memory://"
    assert values["data_dir"] == tmp_path
    assert values["admin_key"] == "k" * 20


def test_registration_limits_settable_for_an_enrolment_window() -> None:
    argv = ["--registration-global-rate", "6000", "--registration-burst", "50"]
    values = parse_options(argv, {"SWARMDEPLOY_REGISTRATION_RATE": "120"})
    assert values["registration_global_rate_per_min"] == 6000.0
    assert values["registration_burst"] == 50
    assert values["registration_rate_per_min"] == 120.0


def test_role_map_and_defaults_from_environment() -> None:
    values = parse_options([], {"SWARMDEPLOY_OIDC_ROLE_MAP": "ops=operator"})
    assert values["oidc_role_map"] == {"ops": "operator"}
    assert values["data_dir"] == Path("swarmdeploy-data")


def test_unconvertible_environment_value_is_reported() -> None:
    with pytest.raises(SettingsError, match="http_port"):
        parse_options([], {"SWARMDEPLOY_HTTP_PORT": "eighty"})


def test_invalid_configuration_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "--http-port", "0"]) == 2
    assert "http_port" in capsys.readouterr().err


def _free_ports(count: int) -> list[int]:
    return [free_port() for _ in range(count)]


def _command() -> list[str]:
    script = Path(sys.executable).parent / "swarmdeploy"
    return [str(script)] if script.exists() else [sys.executable, "-m", "swarmdeploy"]


async def _read_admin_key(stdout: asyncio.StreamReader) -> str:
    lines: list[str] = []
    async with asyncio.timeout(30):
        while True:
            line = (await stdout.readline()).decode()
            assert line, f"manager exited before printing the key: {lines}"
            lines.append(line)
            if line.startswith("    ") and line.strip():
                return line.strip()


async def _wait_healthy(base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as client, asyncio.timeout(30):
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


async def test_real_manager_process_prints_key_serves_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    http_port, pub_port, sub_port = _free_ports(3)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMDEPLOY_")}
    args = ["manager", "--data-dir", str(data), "--http-port", str(http_port),
            "--zmq-pub-port", str(pub_port), "--zmq-sub-port", str(sub_port)]  # fmt: skip
    with (tmp_path / "stderr.log").open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            *_command(), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
        )
        try:
            assert proc.stdout is not None
            key = await _read_admin_key(proc.stdout)
            base = f"http://127.0.0.1:{http_port}"
            await _wait_healthy(base)
            assert (data / "admin.key").read_text().strip() == key
            assert stat.S_IMODE((data / "admin.key").stat().st_mode) == 0o600
            x509.load_pem_x509_certificate((data / "ca.pem").read_bytes())
            async with httpx.AsyncClient(base_url=base) as client:
                r = await client.get("/targets", headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 200
                assert (await client.get("/targets")).status_code == 401
                info = (await client.get("/rpc/server_info")).json()
                assert (info["zeromq"]["pubPort"], info["zeromq"]["subPort"]) == (
                    pub_port,
                    sub_port,
                )
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert (data / "swarmdeploy.db").exists()
