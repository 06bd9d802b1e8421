"""Alembic migrations of the manager database, run by ``Storage.open()``."""
