"""Fixtures shared by the security tests.

* ``api``: a manager on real SQLite in ``tmp_path`` with an admin client (the same as the
  manager tests' fixture of that name, built with their ``running_api``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.manager.conftest import Api, make_settings, running_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """A manager on real SQLite in ``tmp_path`` with an admin client."""
    async with running_api(make_settings(tmp_path)) as running:
        yield running
