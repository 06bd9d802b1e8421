"""``swarmdeploy agent install|uninstall`` on a temporary root (never the real system)."""

from __future__ import annotations

import pathlib
import stat
import subprocess

import pytest

from swarmdeploy.agent.main import main as agent_main
from swarmdeploy.agent.provision.install import (
    InstallRequest,
    foreground_command,
    install,
    uninstall,
)
from swarmdeploy.agent.provision.layout import AgentConfig
from tests.provision.helpers import RecordingSystem, anchor_file, output, read_env_file

TOKEN = "0123-4567-89ab"
EXPECTED = {
    "etc/swarmdeploy/agent.env": 0o600,
    "etc/swarmdeploy/token.env": 0o600,
    "etc/swarmdeploy/ca.pem": 0o644,
    "etc/systemd/system/swarmdeploy-agent.service": 0o644,
}


def _files(root: pathlib.Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode)
        for p in root.rglob("*")
        if not p.is_dir()
    }


def _install_args(root: pathlib.Path, anchor: pathlib.Path, *more: str) -> list[str]:
    return ["install", "--manager", "http://127.0.0.1:8080", "--token", TOKEN,
            "--trust-anchor", str(anchor), "--tags", "lab,pi", "--root", str(root),
            "--exec", "/opt/swarmdeploy/bin/swarmdeploy", *more]  # fmt: skip


def test_dry_run_shows_every_file_with_mode_and_writes_nothing(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    status = agent_main(_install_args(root, anchor_file(tmp_path), "--dry-run"))
    shown = capsys.readouterr().out
    assert status == 0 and not root.exists()
    for path, mode in EXPECTED.items():
        assert f"--- /{path} (mode {mode:04o}" in shown
    assert f"SWARMDEPLOY_AGENT_TOKEN={TOKEN}" in shown
    assert "--- /var/lib/swarmdeploy-agent (directory, mode 0700" in shown
    assert "systemctl enable swarmdeploy-agent.service" in shown


def test_install_writes_files_with_modes_and_tells_how_to_enable(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    anchor = anchor_file(tmp_path)
    assert agent_main(_install_args(root, anchor)) == 0
    assert _files(root) == EXPECTED
    data_dir = root / "var/lib/swarmdeploy-agent"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    env = read_env_file(root / "etc/swarmdeploy/agent.env")
    assert env == {
        "SWARMDEPLOY_AGENT_MANAGER": "http://127.0.0.1:8080",
        "SWARMDEPLOY_AGENT_TRUST_ANCHOR": "/etc/swarmdeploy/ca.pem",
        "SWARMDEPLOY_AGENT_TAGS": "lab,pi",
    }
    assert read_env_file(root / "etc/swarmdeploy/token.env") == {"SWARMDEPLOY_AGENT_TOKEN": TOKEN}
    assert (root / "etc/swarmdeploy/ca.pem").read_bytes() == anchor.read_bytes()
    said = capsys.readouterr().out
    assert f"systemctl --root {root} enable swarmdeploy-agent.service" in said


def test_uninstall_keeps_the_data_dir_unless_purge(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "root"
    assert agent_main(_install_args(root, anchor_file(tmp_path))) == 0
    (root / "var/lib/swarmdeploy-agent/state.json").write_text("{}")
    assert agent_main(["uninstall", "--root", str(root), "--dry-run"]) == 0
    assert len(_files(root)) == len(EXPECTED) + 1
    assert agent_main(["uninstall", "--root", str(root)]) == 0
    assert _files(root) == {"var/lib/swarmdeploy-agent/state.json": 0o644}
    assert not (root / "etc/swarmdeploy").exists()
    assert agent_main(["uninstall", "--root", str(root), "--purge"]) == 0
    assert _files(root) == {} and not (root / "var/lib/swarmdeploy-agent").exists()


def _request(root: pathlib.Path) -> InstallRequest:
    config = AgentConfig("http://m:8080", b"pem", (), "/opt/swarmdeploy/bin/swarmdeploy")
    return InstallRequest(root, config, TOKEN)


def test_live_install_under_systemd_enables_and_restarts_the_unit(
    tmp_path: pathlib.Path,
) -> None:
    system = RecordingSystem()
    assert install(_request(tmp_path), system, output(), live=True) == 0
    assert system.commands == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "swarmdeploy-agent.service"],
        ["systemctl", "restart", "swarmdeploy-agent.service"],
    ]


def test_live_install_without_systemd_prints_what_to_run(tmp_path: pathlib.Path) -> None:
    system = RecordingSystem(pid1_name="sh")
    out = output()
    assert install(_request(tmp_path), system, out, live=True) == 0
    assert system.commands == []
    said = out.getvalue()
    assert "PID 1 is sh" in said and "systemctl enable swarmdeploy-agent.service" in said
    assert "exec /opt/swarmdeploy/bin/swarmdeploy agent --data-dir" in said


def test_live_install_as_non_root_prints_what_to_run(tmp_path: pathlib.Path) -> None:
    system = RecordingSystem(root=False)
    out = output()
    assert install(_request(tmp_path), system, out, live=True) == 0
    assert system.commands == [] and "not root" in out.getvalue()


def test_live_uninstall_purge_disables_the_unit(tmp_path: pathlib.Path) -> None:
    system = RecordingSystem()
    assert install(_request(tmp_path), system, output(), live=True) == 0
    system.commands.clear()
    assert uninstall(tmp_path, system, output(), purge=True, dry_run=False, live=True) == 0
    assert system.commands == [
        ["systemctl", "disable", "--now", "swarmdeploy-agent.service"],
        ["systemctl", "daemon-reload"],
    ]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--manager", "ftp://x"], "--manager 'ftp://x' must be an http:// or https:// URL"),
        (["--tags", "ok,bad tag"], "--tags: 'bad tag' is not a valid tag"),
        (["--token", "12 34"], "--token: '12 34' is not a registration token"),
        (["--exec", "swarmdeploy"], "--exec 'swarmdeploy' must start with an absolute"),
        (["--id", "a b"], "--id 'a b' is not a valid target id"),
    ],
)
def test_bad_options_are_one_line_naming_the_option(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    change: list[str],
    message: str,
) -> None:
    root = tmp_path / "root"
    assert agent_main([*_install_args(root, anchor_file(tmp_path)), *change]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not root.exists()


def test_unusable_trust_anchor_is_refused(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    assert agent_main(_install_args(tmp_path / "root", empty)) == 2
    assert f"--trust-anchor {empty}" in capsys.readouterr().err
    assert agent_main(_install_args(tmp_path / "root", tmp_path / "missing.pem")) == 2
    assert "missing.pem" in capsys.readouterr().err


def test_tls_ca_of_an_https_manager_is_installed_and_named_in_the_settings(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, cert = tmp_path / "root", tmp_path / "api.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    args = _install_args(root, anchor_file(tmp_path), "--tls-ca", str(cert))
    assert agent_main(args) == 0
    assert (root / "etc/swarmdeploy/api-ca.pem").read_bytes() == cert.read_bytes()
    env = read_env_file(root / "etc/swarmdeploy/agent.env")
    assert env["SWARMDEPLOY_AGENT_TLS_CA"] == "/etc/swarmdeploy/api-ca.pem"
    assert agent_main(["uninstall", "--root", str(root)]) == 0
    assert not (root / "etc/swarmdeploy").exists()
    cert.write_text("not a certificate\n")
    assert agent_main(args) == 2
    assert f"--tls-ca {cert} holds no PEM certificate" in capsys.readouterr().err


def test_foreground_line_for_a_system_without_systemd_runs_with_both_env_files(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "root"
    assert agent_main(_install_args(root, anchor_file(tmp_path))) == 0
    program = tmp_path / "printenv.sh"  # prints the environment the agent would get
    program.write_text("#!/bin/sh\nenv\n")
    program.chmod(0o755)
    line = foreground_command(str(program))
    line = line.replace(" /etc/", f" {root}/etc/")
    done = subprocess.run(["sh", "-c", line.removeprefix("sh -c ").strip("'")],
                          capture_output=True, text=True, timeout=30, check=True,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    printed = dict(x.split("=", 1) for x in done.stdout.splitlines() if "=" in x)
    assert printed["SWARMDEPLOY_AGENT_TOKEN"] == TOKEN
    assert printed["SWARMDEPLOY_AGENT_MANAGER"] == "http://127.0.0.1:8080"
