"""The signed selector admits late devices by their tags and refuses the others (issue 14,
docs/adr/0010)."""

from __future__ import annotations

import pytest

from swarmdeploy.crypto.rejections import WrongTarget
from swarmdeploy.crypto.signing import Revocations, Target, verify_installed
from tests.crypto import signing_rig as rig
from tests.crypto.signing_rig import manifest, new_operator, verify


@pytest.fixture(scope="module")
def alice() -> rig.Operator:
    return new_operator()


def _late(tags: set[str]) -> Target:
    """A device that did not exist when the manifest was signed."""
    return Target("cam-late", frozenset(tags))


def test_late_device_admitted_by_its_tags(alice: rig.Operator) -> None:
    data = manifest(target_ids=[], target_tags=["camera"], app="detector")
    verified = verify(data, alice.sign(data), alice.certificate, target=_late({"camera"}))
    assert verified.facts.app == "detector"


@pytest.mark.parametrize(
    "tags",
    [{"gateway"}, {"camera"}, {"camera", "outdoor", "lab"}],
    ids=["no-tag", "lacks-all-of", "negated"],
)
def test_device_outside_the_signed_selector_refused(alice: rig.Operator, tags: set[str]) -> None:
    data = manifest(
        target_ids=[], target_tags=["camera"], target_all=["outdoor"], target_not=["lab"]
    )
    with pytest.raises(WrongTarget):
        verify(data, alice.sign(data), alice.certificate, target=_late(tags))


def test_all_of_and_negation_admit_a_matching_device(alice: rig.Operator) -> None:
    data = manifest(
        target_ids=[], target_tags=["camera"], target_all=["outdoor"], target_not=["lab"]
    )
    verify(data, alice.sign(data), alice.certificate, target=_late({"camera", "outdoor"}))


def test_negated_id_refused_even_when_tags_match(alice: rig.Operator) -> None:
    data = manifest(target_ids=[], target_tags=["camera"], target_not_ids=["cam-late"])
    with pytest.raises(WrongTarget):
        verify(data, alice.sign(data), alice.certificate, target=_late({"camera"}))


def test_installed_release_refused_after_tags_stop_matching(alice: rig.Operator) -> None:
    data = manifest(target_ids=[], target_tags=["camera"])
    with pytest.raises(WrongTarget):
        verify_installed(
            data,
            alice.sign(data),
            alice.certificate,
            anchors=rig.anchors(),
            revoked=Revocations(),
            target=_late({"gateway"}),
            installed_sequence=10,
        )
