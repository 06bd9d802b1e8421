"""The manager shows an agent in insecure lab mode on its target (issue 5).

The agent reports ``insecure_lab`` as an optional field of ``health``; these tests send the
real wire bytes through the link's decoder and ``health_doc`` and read the target document
the API serves, so dropping the field anywhere on the way fails them.
"""

from __future__ import annotations

from typing import Any

from swarmdeploy.manager.api.models import TargetPublic
from swarmdeploy.manager.link.handlers import health_doc
from swarmdeploy.manager.services.registry import TargetView, target_json
from swarmdeploy.protocol import messages as m
from swarmdeploy.storage.records import TargetRecord


def _document(extra: dict[str, Any]) -> dict[str, Any]:
    received = m.decode(m.encode(m.Health(at_ms=1, extra=extra)))
    assert isinstance(received, m.Health)
    record = TargetRecord(
        id="t1",
        curve_key="k" * 40,
        identity_key="i",
        created_at=1,
        updated_at=1,
        health=health_doc(received, 2),
    )
    return target_json(TargetView(record=record, online=True))


def test_agent_reporting_insecure_lab_is_shown_on_target() -> None:
    doc = _document({"insecure_lab": True, "security": {"mode": "insecure_lab"}})
    assert doc["insecureLab"] is True
    assert TargetPublic.model_validate(doc).insecure_lab is True


def test_agent_with_trust_anchor_is_not_shown_insecure() -> None:
    doc = _document({"insecure_lab": False})
    assert doc["insecureLab"] is False
    assert TargetPublic.model_validate(doc).insecure_lab is False


def test_target_without_health_report_is_not_shown_insecure() -> None:
    record = TargetRecord(id="t2", curve_key="k" * 40, identity_key="i", created_at=1, updated_at=1)
    assert target_json(TargetView(record=record, online=False))["insecureLab"] is False
