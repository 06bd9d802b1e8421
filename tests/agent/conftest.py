"""Fixtures shared by the agent tests.

* ``rig``: a :class:`~tests.agent.daemon_rig.Rig` on the in-memory transport in lab mode,
  not started; closed after the test (daemon stopped, fake manager closed). A test module
  that needs another rig defines its own fixture or builds one with ``make_rig``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.daemon_rig import Rig, make_rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with await make_rig(tmp_path) as rig:
        yield rig
