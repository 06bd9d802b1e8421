"""Who sees terminal output (issue 9): the operator who ran the command, and admins.

Terminal lines (task ``terminal``) may hold anything a shell prints on a device. Their stage
is ``terminal:<signing key id>`` -- the key that signed the command (the agent copies it
from the verified statement; the manager's audit line uses the key it signed with) -- so
the owner of each line is the owner of that key (``operator_keys.owner``; keys never change
owner). Admins see every line, an operator the lines of its own keys, a viewer none; lines
without a known key (stage ``terminal``: unsigned lab commands, refusals) only admins.

``GET /logs`` turns this into :attr:`~swarmdeploy.storage.records.LogQuery.terminal_stages`;
``/events`` subscriptions carry a :class:`LogAudience` and the log service tags terminal
events with their owner (:meth:`LogAccess.owner_of_stage`).
"""

from __future__ import annotations

import dataclasses

from swarmdeploy.manager.services.auth import Principal
from swarmdeploy.manager.services.task_signing import key_owner
from swarmdeploy.storage.base import Storage
from swarmdeploy.storage.records import TERMINAL_TASK

TERMINAL_STAGE = "terminal"
_PREFIX = TERMINAL_STAGE + ":"
#: Key owners remembered (an owner never changes, so the cache is never stale).
_MAX_CACHED = 10_000


def terminal_stage(key_id: str) -> str:
    """The log stage of terminal lines of commands signed with ``key_id``."""
    return f"{_PREFIX}{key_id}" if key_id else TERMINAL_STAGE


@dataclasses.dataclass(frozen=True, slots=True)
class LogAudience:
    """Which terminal lines a subscriber sees: all (admins), those owned by ``owner``
    (operators), or none (viewers: ``owner`` None and not ``everything``)."""

    everything: bool = False
    owner: str | None = None

    def sees_terminal(self, owner: str | None) -> bool:
        """Whether a terminal line owned by ``owner`` (None: unknown) is visible."""
        return self.everything or (owner is not None and owner == self.owner)


class LogAccess:
    """Resolves who may see which terminal lines (see the module docstring)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._owners: dict[str, str] = {}

    @staticmethod
    def audience(principal: Principal) -> LogAudience:
        """The audience of ``principal``'s event subscriptions."""
        if principal.allows("admin"):
            return LogAudience(everything=True)
        if principal.allows("operator"):
            return LogAudience(owner=key_owner(principal))
        return LogAudience()

    async def terminal_stages(self, principal: Principal) -> tuple[str, ...] | None:
        """The terminal stages ``principal`` may read (None: all, admins)."""
        if principal.allows("admin"):
            return None
        if not principal.allows("operator"):
            return ()
        keys = await self._storage.list_operator_keys(owner=key_owner(principal))
        return tuple(terminal_stage(k.id) for k in keys)

    async def owner_of_stage(self, task: str, stage: str) -> str | None:
        """The owner of a terminal line with ``stage`` (None: not a terminal line of a
        known key)."""
        if task != TERMINAL_TASK or not stage.startswith(_PREFIX):
            return None
        key_id = stage.removeprefix(_PREFIX)
        owner = self._owners.get(key_id)
        if owner is None:
            record = await self._storage.get_operator_key(key_id)
            if record is None:
                return None
            if len(self._owners) >= _MAX_CACHED:
                self._owners.clear()
            owner = self._owners[key_id] = record.owner
        return owner
