"""Errors raised by storage backends; foreign (SQLAlchemy, driver) errors are translated here.

``StorageError``
 ├── ``NotFound``            the record does not exist (give up)
 ├── ``Conflict``            a unique key is taken (give up or pick another key)
 ├── ``TokenRejected``       registration token unknown, expired or already used (give up)
 ├── ``StorageUnavailable``  database unreachable or busy (retry later)
 ├── ``KeyRejected``         the encryption key does not open the database (give up)
 └── ``SchemaError``         the schema cannot be brought to this version (give up)
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every storage error."""


class NotFound(StorageError):
    """The requested record does not exist."""


class Conflict(StorageError):
    """A record with the same unique key exists already."""


class TokenRejected(StorageError):
    """A registration token is unknown, expired or already spent."""


class StorageUnavailable(StorageError):
    """The database cannot be reached or is busy; the operation may be retried."""


class KeyRejected(StorageError):
    """The database is encrypted with another key, or is not encrypted as expected."""


class SchemaError(StorageError):
    """The database's schema cannot be migrated to this version (e.g. it is newer)."""
