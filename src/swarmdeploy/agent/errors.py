"""Errors raised by the device agent, split by what the caller should do.

``AgentError``                      base; ``code`` is stable and may go on the wire
 ├── ``AgentFatalError``             the agent cannot run: log the message, exit ``exit_status``
 │    ├── ``HardeningError``         start-up environment unsafe (missing binary, data dir mode)
 │    ├── ``ConfigError``            an invalid option or environment variable
 │    ├── ``RegistrationError``      registration refused (token, id) or impossible (status 3:
 │    │                              the manager is unreachable or keeps refusing; retry later)
 │    └── ``StateError``             persisted state unusable; an operator must look at it
 │         ├── ``StateCorruptError`` file unreadable or not valid state
 │         └── ``StateSchemaError``  written by a newer agent (unknown schema version)
 ├── ``TaskError``                   this task fails; report it to the manager and carry on
 │    ├── ``ArchiveError``           unsafe or malformed archive, or over a limit
 │    ├── ``PackError``              a build artifact is missing or not packable
 │    ├── ``TransferError``          the payload cannot be fetched, verified or uploaded
 │    ├── ``LaunchError``            a command could not be started at all
 │    └── ``TaskRefused``            a signed task or its installed files failed verification
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
    """The agent cannot (or must not) keep running; the entry point exits with the message.

    ``exit_status`` is the process exit status: 2 when an operator must change something
    (options, token, id, permissions), 3 when trying again later may help.
    """

    code = "agent_fatal"
    exit_status = 2


class ConfigError(AgentFatalError):
    """An option or ``SWARMDEPLOY_AGENT_*`` variable is invalid or unsupported."""

    code = "invalid_config"


class RegistrationError(AgentFatalError):
    """Registration with the manager was refused or could not be completed.

    ``retryable`` (exit status 3): the manager was unreachable, failing or rate limiting;
    otherwise (exit status 2) the token, the id or the answer was wrong.
    """

    code = "registration_failed"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.exit_status = 3 if retryable else 2


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


class TransferError(TaskError):
    """A payload could not be fetched or uploaded, or did not match its digest or signature."""

    code = "transfer_failed"


class LaunchError(TaskError):
    """A command could not be started (missing working directory, exec failure)."""

    code = "launch_failed"


class TaskRefused(TaskError):
    """A task, or the installed files of a deployment, failed a security check
    (``docs/security.md``): nothing of it is installed or started.

    ``code`` is the check's stable code (``bad_signature``, ``rollback``, ``unsigned``,
    ``tampered_install``, ...); ``str()`` is ``"refused: <code>: <message>"``, the reason
    the agent reports.
    """

    code = "refused"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"refused: {code}: {message}")
        self.code = code
        self.message = message


class TransientError(AgentError):
    """A temporary failure; the same call may succeed later."""

    code = "transient"


class SpoolError(TransientError):
    """The on-disk log spool could not be read or written."""

    code = "spool_io"


class LifecycleError(AgentError):
    """A method was called in a state that does not allow it (a programming error)."""

    code = "illegal_call"
