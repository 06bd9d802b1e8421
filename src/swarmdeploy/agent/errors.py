"""Errors raised by the device agent, split by what the caller should do.

``AgentError``                      base; ``code`` is stable and may go on the wire
 ├── ``AgentFatalError``             the agent cannot run: log the message and exit non-zero
 │    ├── ``HardeningError``         start-up environment unsafe (missing binary, data dir mode)
 │    └── ``StateError``             persisted state unusable; an operator must look at it
 │         ├── ``StateCorruptError`` file unreadable or not valid state
 │         └── ``StateSchemaError``  written by a newer agent (unknown schema version)
 ├── ``TaskError``                   this task fails; report it to the manager and carry on
 │    ├── ``ArchiveError``           unsafe or malformed archive, or over a limit
 │    ├── ``PackError``              a build artifact is missing or not packable
 │    └── ``LaunchError``            a command could not be started at all
 ├── ``TransientError``              try again later (disk I/O of the log spool)
 │    └── ``SpoolError``
 └── ``LifecycleError``              a call that the object's current state forbids (a bug)

Resource checks do not raise: they return a decline with a reason (see
:mod:`swarmdeploy.agent.resources`). sd_notify failures never raise (the agent must not die
because systemd is absent).
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error raised by :mod:`swarmdeploy.agent`."""

    code = "agent_error"


class AgentFatalError(AgentError):
    """The agent cannot (or must not) keep running; the entry point exits with the message."""

    code = "agent_fatal"


class HardeningError(AgentFatalError):
    """The start-up environment is unsafe or incomplete (seed 000: check before running)."""

    code = "unsafe_environment"


class StateError(AgentFatalError):
    """The persisted agent state cannot be used."""

    code = "state_error"


class StateCorruptError(StateError):
    """The state file exists but is not valid agent state."""

    code = "state_corrupt"


class StateSchemaError(StateError):
    """The state file was written with a schema version this agent does not know."""

    code = "state_schema_unknown"


class TaskError(AgentError):
    """One task cannot proceed; the agent reports it and stays up."""

    code = "task_error"


class ArchiveError(TaskError):
    """An archive is malformed, unsafe (escaping paths, links, devices) or over a limit."""

    code = "unsafe_archive"


class PackError(TaskError):
    """A build artifact cannot be packed (missing, absolute, escaping the build directory)."""

    code = "artifact_error"


class LaunchError(TaskError):
    """A command could not be started (missing working directory, exec failure)."""

    code = "launch_failed"


class TransientError(AgentError):
    """A temporary failure; the same call may succeed later."""

    code = "transient"


class SpoolError(TransientError):
    """The on-disk log spool could not be read or written."""

    code = "spool_io"


class LifecycleError(AgentError):
    """A method was called in a state that does not allow it (a programming error)."""

    code = "illegal_call"
