"""PostgreSQL server fixture (owned by the storage work; replaced by the real one)."""
