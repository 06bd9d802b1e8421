"""Unit tests of ``python -m bench salt``'s Salt side that need no Salt: the configuration it
writes and how it judges a ``state.apply`` answer (the run itself is by hand: it installs
Salt from the package index)."""

from __future__ import annotations

import pathlib

from bench.salt_peer import SaltPeer, verify_apply

SHA = "ab" * 32


def _ok(sha256: str) -> dict[str, object]:
    return {
        "file_|-payload_|-/x/payload.bin_|-managed": {"result": True, "changes": {"diff": "New"}},
        "cmd_|-checksum_|-sha256sum /x_|-run": {
            "result": True,
            "changes": {"retcode": 0, "stdout": f"{sha256}  /x/payload.bin"},
        },
    }


def test_every_minion_with_the_fresh_digest_passes() -> None:
    assert verify_apply({"m1": _ok(SHA), "m2": _ok(SHA)}, ["m1", "m2"], SHA) == []


def test_missing_minion_failed_state_and_stale_file_are_each_named() -> None:
    failed = _ok(SHA)
    failed["cmd_|-checksum_|-sha256sum /x_|-run"] = {"result": False, "changes": {}}
    ret = {"m1": failed, "m2": _ok("cd" * 32), "m4": "Minion did not return"}

    problems = verify_apply(ret, ["m1", "m2", "m3", "m4"], SHA)

    assert problems[0].startswith("m1: failed states")
    assert problems[1] == "m2: command output lacks the new file's SHA-256"
    assert problems[2].startswith("m3: ")
    assert problems[3] == "m4: Minion did not return"


def test_configuration_is_loopback_with_a_root_dir_per_daemon(tmp_path: pathlib.Path) -> None:
    peer = SaltPeer(tmp_path / "venv", tmp_path / "salt", minions=2)
    peer.configure()

    master = (tmp_path / "salt" / "master-etc" / "master").read_text()
    minion = (tmp_path / "salt" / "m2-etc" / "minion").read_text()
    assert "interface: 127.0.0.1" in master and "auto_accept: true" in master
    assert f"root_dir: {tmp_path}/salt/m2-root" in minion and "id: m2" in minion
    assert "master: 127.0.0.1" in minion
    state = (tmp_path / "salt" / "srv" / "bench.sls").read_text()
    assert f"{tmp_path}/salt/deployed/" in state and "sha256sum" in state
