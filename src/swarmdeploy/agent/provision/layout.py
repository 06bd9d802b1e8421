"""What a provisioned device holds: paths, modes and contents, as pure data (no I/O).

The layout (``docs/operator-guide.md``, ADR 0008):

============================================== ====== =========================================
``/etc/swarmdeploy/agent.env``                 0600   manager URL, trust anchor, tags
``/etc/swarmdeploy/token.env``                 0600   the one-time token (and id) of one device
``/etc/swarmdeploy/ca.pem``                    0644   the manager's deployment CA (trust anchor)
``/etc/swarmdeploy/api-ca.pem``                0644   with ``--tls-ca``: the https API's CA
``/etc/systemd/system/swarmdeploy-agent.service`` 0644 the unit (watchdog, hardening)
``/var/lib/swarmdeploy-agent``                 0700   the data dir (keys, state, spool, tasks)
============================================== ====== =========================================

The agent runs as root, and no agent user is created (ADR 0008): the sandbox keeps deployed
commands apart from the agent by real uid (they run as uid 65534, the agent's keys are
root's, ADR 0004), and device grants, group grants and sealed install trees need root. Under
an unprivileged agent user a sandbox escapee would be that user, holding the device's keys.
The unit's hardening protects the rest of the system from the agent instead.

The token lives in a file of its own so that one image can carry everything but the token,
and each device gets its token from a small per-device overlay (:mod:`.image`). systemd reads
both environment files (root's, 0600) before it starts the agent; the agent ignores a
spent token on later starts, so the file may stay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

UNIT_NAME = "swarmdeploy-agent.service"
ETC_DIR = PurePosixPath("/etc/swarmdeploy")
AGENT_ENV = ETC_DIR / "agent.env"
TOKEN_ENV = ETC_DIR / "token.env"
TRUST_ANCHOR = ETC_DIR / "ca.pem"
TLS_CA = ETC_DIR / "api-ca.pem"
UNIT_PATH = PurePosixPath("/etc/systemd/system") / UNIT_NAME
#: ``systemctl enable`` of a unit with ``WantedBy=multi-user.target`` makes this link.
WANTS_LINK = PurePosixPath("/etc/systemd/system/multi-user.target.wants") / UNIT_NAME
DATA_DIR = PurePosixPath("/var/lib/swarmdeploy-agent")
#: Where the .deb puts the agent (ADR 0009); the default command of an image.
PACKAGED_EXEC = "/opt/swarmdeploy/bin/swarmdeploy"
#: Characters an environment-file value may hold without quoting (systemd and POSIX sh).
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_@%+=:,./~-]*$")


class LayoutError(ValueError):
    """A value cannot be written into the layout (the message names it)."""


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file (or, with ``link_to``, one symbolic link) to write below a root.

    ``path`` is absolute as seen on the device; ``secret`` files are written with their
    mode from the start (never world-readable for a moment)."""

    path: PurePosixPath
    mode: int
    content: bytes = b""
    secret: bool = False
    link_to: PurePosixPath | None = None


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What ``agent install`` and ``agent provision`` are told about the agent."""

    manager_url: str
    trust_anchor_pem: bytes
    tags: tuple[str, ...] = ()
    exec_command: str = PACKAGED_EXEC
    tls_ca_pem: bytes | None = None


def env_line(name: str, value: str) -> str:
    """``NAME=value`` for an environment file; LayoutError for a value that would need
    quoting (spaces, quotes, ``$``, newlines): none of the agent's values may hold one."""
    if not _PLAIN_VALUE.match(value):
        raise LayoutError(f"{name}: {value!r} holds characters an environment file cannot keep")
    return f"{name}={value}\n"


def agent_env(config: AgentConfig) -> FileSpec:
    """``/etc/swarmdeploy/agent.env``: what every device of a fleet shares."""
    text = "# swarmdeploy agent settings (swarmdeploy agent --help lists every variable)\n"
    text += env_line("SWARMDEPLOY_AGENT_MANAGER", config.manager_url)
    text += env_line("SWARMDEPLOY_AGENT_TRUST_ANCHOR", str(TRUST_ANCHOR))
    if config.tags:
        text += env_line("SWARMDEPLOY_AGENT_TAGS", ",".join(config.tags))
    if config.tls_ca_pem is not None:
        text += env_line("SWARMDEPLOY_AGENT_TLS_CA", str(TLS_CA))
    return FileSpec(AGENT_ENV, 0o600, text.encode(), secret=True)


def token_env(token: str, target_id: str | None = None) -> FileSpec:
    """``/etc/swarmdeploy/token.env``: one device's one-time token (and optional id)."""
    text = "# one-time registration token of this device (ignored once spent)\n"
    text += env_line("SWARMDEPLOY_AGENT_TOKEN", token)
    if target_id:
        text += env_line("SWARMDEPLOY_AGENT_ID", target_id)
    return FileSpec(TOKEN_ENV, 0o600, text.encode(), secret=True)


def trust_anchor(pem: bytes) -> FileSpec:
    """``/etc/swarmdeploy/ca.pem``: a public certificate."""
    return FileSpec(TRUST_ANCHOR, 0o644, pem)


def public_files(config: AgentConfig) -> list[FileSpec]:
    """The certificates a device trusts: the deployment CA and, for an https:// manager
    given ``--tls-ca``, the API's CA (``docs/tls.md``)."""
    specs = [trust_anchor(config.trust_anchor_pem)]
    if config.tls_ca_pem is not None:
        specs.append(FileSpec(TLS_CA, 0o644, config.tls_ca_pem))
    return specs


def wants_link() -> FileSpec:
    """The link ``systemctl enable`` would make (an image cannot run systemctl)."""
    return FileSpec(WANTS_LINK, 0o777, link_to=UNIT_PATH)


def check_exec(command: str) -> str:
    """``--exec``: an absolute program path, optionally followed by plain arguments."""
    words = command.split()
    if not words or not words[0].startswith("/"):
        raise LayoutError(f"--exec {command!r} must start with an absolute program path")
    for word in words:
        if not _PLAIN_VALUE.match(word) or "%" in word:
            raise LayoutError(f"--exec: {word!r} holds characters a unit file cannot keep")
    return " ".join(words)


def agent_unit(exec_command: str) -> FileSpec:
    """The agent's systemd unit, running ``exec_command agent``."""
    text = UNIT_TEMPLATE.replace("@EXEC@", check_exec(exec_command))
    return FileSpec(UNIT_PATH, 0o644, text.encode())


UNIT_TEMPLATE = """\
# swarmdeploy device agent. Written by `swarmdeploy agent install` or `swarmdeploy agent
# provision` (docs/operator-guide.md); the settings are in /etc/swarmdeploy/agent.env and the
# one-time token in /etc/swarmdeploy/token.env.
[Unit]
Description=swarmdeploy device agent (over-the-air deployment)
Wants=network-online.target
After=network-online.target
# A device agent must come back after every failure: never stop restarting it.
StartLimitIntervalSec=0

[Service]
# The agent sends READY=1 once it has loaded its state, killed leftovers of a previous run and
# restarted the current deployment; then WATCHDOG=1 every WatchdogSec/2 from its main loop. A
# hung agent is killed by the watchdog and restarted (Restart=on-failure covers it).
Type=notify
NotifyAccess=main
WatchdogSec=30
ExecStart=@EXEC@ agent --data-dir /var/lib/swarmdeploy-agent
EnvironmentFile=-/etc/swarmdeploy/agent.env
EnvironmentFile=-/etc/swarmdeploy/token.env
# Root, deliberately (ADR 0008): deployed commands run as uid 65534 in the sandbox, apart from
# the agent's keys, which only root can read; device and group grants need root as well.
# /var/lib/swarmdeploy-agent, mode 0700 (what the agent checks).
StateDirectory=swarmdeploy-agent
StateDirectoryMode=0700
UMask=0077
LimitCORE=0
# Exit 0 is a requested stop; 2 (settings) and 3 (manager unreachable) are failures and are
# retried, so a device whose manager or token comes later registers on its own.
Restart=on-failure
RestartSec=5

# Stopping: SIGTERM goes to the agent only, which stops every deployed process group itself
# (SIGTERM, grace period, SIGKILL) and exits. Whatever is still in the unit's control group
# after that -- or after TimeoutStopSec, or when the agent crashed -- gets SIGKILL from
# systemd. "control-group" would TERM the deployed processes behind the agent's back;
# "process" would leave them running as orphans.
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec=30

# Hardening that does not get in the way of the agent's job: the data dir stays writable
# (StateDirectory), /usr, /boot and /etc are read-only (ProtectSystem=full), and the agent may
# still create the user, mount and network namespaces of its bubblewrap sandbox and manage
# the process groups of deployed commands.
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=full
ProtectHome=read-only
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
# Deliberately not set: RestrictNamespaces (the bubblewrap sandbox needs user, mount and net
# namespaces), MemoryDenyWriteExecute (breaks JIT runtimes in deployed code), PrivateDevices
# (robots and drones use serial ports, GPIO and cameras), PrivateNetwork/IPAddressDeny
# (deployed software talks to the network), ProtectSystem=strict (deployed software may
# write outside the data dir when the device owner grants it, --allow-path DIR:rw).

[Install]
WantedBy=multi-user.target
"""
