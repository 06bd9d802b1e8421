"""The local fleet's port picking: ports clear of the ephemeral range, each handed out once,
and a manager whose first start finds its port taken is started again on new ports."""

from __future__ import annotations

import pathlib
import socket

from swarmdeploy import localfleet
from swarmdeploy.localfleet import LocalFleet, free_port


def test_free_ports_are_distinct_and_below_the_ephemeral_range() -> None:
    floor = localfleet._ephemeral_floor()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    if floor - localfleet.PORT_FLOOR >= 1000:
        assert all(localfleet.PORT_FLOOR <= port < floor for port in ports)


def test_a_first_start_on_a_taken_port_moves_to_new_ports(tmp_path: pathlib.Path) -> None:
    with socket.socket() as squatter, LocalFleet(tmp_path) as fleet:
        squatter.bind(("127.0.0.1", fleet.pub_port))  # the agent link's port
        squatter.listen()
        taken = fleet.pub_port
        fleet.start_manager(timeout_s=60)
        assert fleet.pub_port != taken
        assert fleet.api.request("GET", "/health")["status"] == "ok"
        assert "already in use" in (tmp_path / "manager.log").read_text()
