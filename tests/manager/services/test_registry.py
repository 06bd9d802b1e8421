"""Target registry: listeners, online flag, revocation even when a listener fails."""

from __future__ import annotations

import logging

import pytest

from swarmdeploy.manager.dispatch import LogRequest
from swarmdeploy.manager.errors import NotFoundError
from swarmdeploy.manager.services.registry import (
    confinement_summary,
    security_summary,
    signer_revoked,
)
from swarmdeploy.storage.records import TargetRecord
from tests.manager.services.conftest import World


class FailingListener:
    async def target_registered(self, target: TargetRecord) -> None:
        raise RuntimeError("transport down")

    async def target_revoked(self, target: TargetRecord) -> None:
        raise RuntimeError("transport down")


class Recorder:
    def __init__(self) -> None:
        self.revoked: list[str] = []

    async def target_registered(self, target: TargetRecord) -> None:
        return None

    async def target_revoked(self, target: TargetRecord) -> None:
        self.revoked.append(target.id)


async def test_failing_listener_is_logged_and_others_still_told(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.add_targets(["a"])
    recorder = Recorder()
    world.registry.add_listener(FailingListener())
    world.registry.add_listener(recorder)
    with caplog.at_level(logging.ERROR):
        await world.registry.delete("a")
    assert recorder.revoked == ["a"]
    assert "revocation of a" in caplog.text
    with pytest.raises(NotFoundError):
        await world.registry.get("a")


async def test_delete_discards_queued_requests(world: World) -> None:
    await world.add_targets(["a"])
    await world.dispatcher.submit("a", LogRequest(0))
    await world.registry.delete("a")
    assert world.dispatcher.pending("a") == []


async def test_online_means_heard_within_timeout(world: World) -> None:
    await world.add_targets(["a"])
    assert not world.registry.view(await world.registry.get("a")).online
    await world.storage.touch_target("a", seen_at=world.clock.now)
    assert world.registry.view(await world.registry.get("a")).online
    world.clock.now += 60_001
    assert not world.registry.view(await world.registry.get("a")).online


async def test_update_publishes_target_updated(world: World) -> None:
    await world.add_targets(["a"])
    sub = world.events.subscribe(["targetUpdated"])
    await world.registry.update("a", {"tags": ["new"]})
    event = await sub.get()
    assert event.message()["payload"]["tags"] == ["new"]


CA_FP = "sha256:" + "ab" * 32


def _health(**security: object) -> dict[str, object]:
    return {"uptime_s": 1, "__extra__": {"security": security}}


def test_security_summary_without_report_is_unknown() -> None:
    assert security_summary(None, CA_FP) == {
        "mode": "unknown",
        "trustsThisManager": None,
        "revocationList": 0,
        "terminal": "unknown",
        "onRevoked": "unknown",
    }
    assert security_summary({"uptime_s": 1}, CA_FP)["mode"] == "unknown"


def test_security_summary_tells_whether_the_agent_trusts_this_manager() -> None:
    trusting = _health(
        mode="verified", anchors=[CA_FP], revocation_list=3, terminal="off", on_revoked="stop"
    )
    assert security_summary(trusting, CA_FP) == {
        "mode": "verified",
        "trustsThisManager": True,
        "revocationList": 3,
        "terminal": "off",
        "onRevoked": "stop",
    }
    other = _health(mode="verified", anchors=["sha256:" + "cd" * 32])
    assert security_summary(other, CA_FP)["trustsThisManager"] is False
    assert security_summary(other, "")["trustsThisManager"] is None  # CA unknown here


def test_security_summary_ignores_malformed_fields() -> None:
    odd = _health(mode=7, anchors="not a list", revocation_list="x", terminal=["root"])
    assert security_summary(odd, CA_FP) == {
        "mode": "unknown",
        "trustsThisManager": None,
        "revocationList": 0,
        "terminal": "unknown",
        "onRevoked": "unknown",
    }
    assert signer_revoked(_health(signer_revoked="t1")) == []
    assert signer_revoked(_health(signer_revoked=["t1", 5])) == ["t1"]


def test_confinement_summary_shows_what_the_agent_enforces() -> None:
    assert confinement_summary(None) == {
        "sandbox": "unknown",
        "seccomp": None,
        "limitMechanism": None,
        "limits": {},
    }
    limits = {"mechanism": "rlimit", "cgroup": False, "processes": 256, "memoryBytes": 9}
    report = _health(sandbox="bwrap", confinement={"seccomp": True, "limits": limits})
    assert confinement_summary(report) == {
        "sandbox": "bwrap",
        "seccomp": True,
        "limitMechanism": "rlimit",
        "limits": {"processes": 256, "memoryBytes": 9},
    }
    odd = _health(sandbox=3, confinement={"seccomp": "yes", "limits": {"processes": True}})
    assert confinement_summary(odd)["limits"] == {} and confinement_summary(odd)["seccomp"] is None
