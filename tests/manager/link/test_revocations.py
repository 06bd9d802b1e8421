"""A revoked operator key reaches connected agents at once: they are hinted, and the
``welcome`` answering their ``hello`` carries the CA-signed revocation list (issue 5)."""

from __future__ import annotations

from swarmdeploy.crypto.anchors import AnchorKey, AnchorSet
from swarmdeploy.crypto.operator import verify_revocation_list
from swarmdeploy.protocol import messages as m
from tests.manager.link.conftest import Rig, deploy_doc


async def test_revocation_hints_connected_agents_and_welcome_carries_the_list(rig: Rig) -> None:
    agent = await rig.agent("t1")
    task_id = await rig.create_task(deploy_doc(ids=["t1"]))
    await agent.take(m.Announce)
    view = (await rig.api.client.get(f"/tasks/{task_id}")).json()
    key_id = view["signedBy"]["keyId"]
    await agent.hello()
    assert not (await agent.take(m.Welcome)).revocations  # nothing revoked yet
    assert (await rig.api.client.delete(f"/operator_keys/{key_id}")).status_code == 200
    hint = await agent.take(m.Hint)
    assert hint.reason == "revocation"
    await agent.hello()
    welcome = await agent.take(m.Welcome)
    ca = rig.api.services.keys.ca
    anchors = AnchorSet((AnchorKey(public_key=ca.public_key_raw),))
    crl = verify_revocation_list(welcome.revocations, anchors, last_number=0)
    assert key_id in crl.key_ids
