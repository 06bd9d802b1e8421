"""``swarmdeploy agent provision`` on a directory tree: one device, or a hundred overlays."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from swarmdeploy.agent.main import main as agent_main
from swarmdeploy.agent.provision.image import parse_token_file
from swarmdeploy.agent.provision.system import ProvisionError
from tests.provision.helpers import anchor_file, read_env_file

UNIT = "etc/systemd/system/swarmdeploy-agent.service"
WANTS = "etc/systemd/system/multi-user.target.wants/swarmdeploy-agent.service"


def _args(root: pathlib.Path, anchor: pathlib.Path, *more: str) -> list[str]:
    return ["provision", "--root", str(root), "--manager", "http://manager:8080",
            "--trust-anchor", str(anchor), "--tags", "field", *more]  # fmt: skip


def _tokens(n: int) -> list[str]:
    return [f"{i:04x}-0000-{i:04x}" for i in range(1, n + 1)]


def test_hundred_devices_get_one_image_and_one_token_overlay_each(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, overlays = tmp_path / "image", tmp_path / "overlays"
    tokens = _tokens(100)
    token_file = tmp_path / "tokens.txt"
    lines = [f"{t} robot-{i:03d}" if i % 2 else t for i, t in enumerate(tokens, 1)]
    token_file.write_text("# fleet of 100\n\n" + "\n".join(lines) + "\n")
    status = agent_main(_args(root, anchor_file(tmp_path), "--token-file", str(token_file),
                              "--overlays", str(overlays)))  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert not (root / "etc/swarmdeploy/token.env").exists()
    assert os.readlink(root / WANTS) == "/" + UNIT
    assert read_env_file(root / "etc/swarmdeploy/agent.env")["SWARMDEPLOY_AGENT_TAGS"] == "field"
    found = {}
    for overlay in sorted(overlays.iterdir()):
        files = [p for p in overlay.rglob("*") if p.is_file()]
        assert [str(p.relative_to(overlay)) for p in files] == ["etc/swarmdeploy/token.env"]
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        found[overlay.name] = read_env_file(files[0])
    assert len(found) == 100
    assert found["robot-001"] == {"SWARMDEPLOY_AGENT_TOKEN": tokens[0],
                                  "SWARMDEPLOY_AGENT_ID": "robot-001"}  # fmt: skip
    assert found["device-0002"] == {"SWARMDEPLOY_AGENT_TOKEN": tokens[1]}
    assert sorted(v["SWARMDEPLOY_AGENT_TOKEN"] for v in found.values()) == sorted(tokens)
    assert "warning: /opt/swarmdeploy/bin/swarmdeploy is not in the image" in (
        capsys.readouterr().out
    )


def test_one_device_token_goes_into_the_image(tmp_path: pathlib.Path) -> None:
    root = tmp_path / "image"
    args = _args(root, anchor_file(tmp_path), "--token", "abcd-ef01-2345", "--id", "pi-7")
    assert agent_main(args) == 0
    assert read_env_file(root / "etc/swarmdeploy/token.env") == {
        "SWARMDEPLOY_AGENT_TOKEN": "abcd-ef01-2345",
        "SWARMDEPLOY_AGENT_ID": "pi-7",
    }


def test_dry_run_writes_nothing(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n".join(_tokens(3)))
    args = _args(tmp_path / "image", anchor_file(tmp_path), "--token-file", str(token_file),
                 "--overlays", str(tmp_path / "ov"), "--dry-run")  # fmt: skip
    assert agent_main(args) == 0
    shown = capsys.readouterr().out
    assert "--- overlay device-0003:" in shown and f"--- /{WANTS} -> /{UNIT}" in shown
    assert not (tmp_path / "image").exists() and not (tmp_path / "ov").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--overlays", "{root}/ov"], "lies inside the image"),
        ([], "--token-file needs --overlays DIR"),
        (["--overlays", "{tmp}/ov", "--id", "x"], "--id goes with --token"),
    ],
)
def test_token_file_mistakes_are_refused(
    tmp_path: pathlib.Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    root = tmp_path / "image"
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n".join(_tokens(2)))
    extra = [e.format(root=root, tmp=tmp_path) for e in extra]
    args = _args(root, anchor_file(tmp_path), "--token-file", str(token_file), *extra)
    assert agent_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not root.exists()


def test_an_image_holding_a_token_is_not_turned_into_a_fleet_image(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, anchor = tmp_path / "image", anchor_file(tmp_path)
    assert agent_main(_args(root, anchor, "--token", "abcd-ef01-2345")) == 0
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n".join(_tokens(2)))
    args = _args(root, anchor, "--token-file", str(token_file), "--overlays", str(tmp_path / "o"))
    assert agent_main(args) == 2
    assert "already holds /etc/swarmdeploy/token.env" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        ("abcd-0000-0001 a b\n", "line 1: expected 'TOKEN [ID]'"),
        ("abcd-0000-0001\nabcd-0000-0001\n", "line 2: 'abcd-0000-0001' appears twice"),
        ("abcd-0000-0001 x\nabcd-0000-0002 x\n", "line 2: 'x' appears twice"),
        ("ab$d-0000-0001\n", "line 1: 'ab$d-0000-0001' is not a registration token"),
        ("abcd-0000-0001 -bad\n", "line 1: '-bad' is not a valid target id"),
    ],
)
def test_token_file_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ProvisionError, match=r"t\.txt") as caught:
        parse_token_file(text, "t.txt")
    assert message in str(caught.value)


def test_a_symbolic_link_in_the_image_cannot_lead_writes_out_of_it(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, outside = tmp_path / "image", tmp_path / "host-etc"
    outside.mkdir()
    root.mkdir()
    (root / "etc").symlink_to(outside)  # an absolute link, as a hostile image could hold
    args = _args(root, anchor_file(tmp_path), "--token", "abcd-ef01-2345")
    assert agent_main(args) == 2
    assert "leads out of" in capsys.readouterr().err
    assert list(outside.iterdir()) == []
