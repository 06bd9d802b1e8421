"""The client's in-process tests run against the manager app fixture of tests/manager."""

from tests.manager.conftest import api  # noqa: F401  (a pytest fixture)
