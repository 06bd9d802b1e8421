"""A seccomp filter for sandboxed commands, as the classic BPF program bubblewrap loads with
``--seccomp FD`` (issue 9, ADR 0007).

The program is built here in pure Python (``struct``-packed ``struct sock_filter``): no
libseccomp binding is needed on the device. It checks the architecture first -- a system
call made through another ABI (i386 ``int 0x80`` on x86_64, x32, aarch32 on aarch64) kills
the process, since its numbers would mean other calls -- and then refuses, with ``EPERM``:

* ``unshare`` and ``clone`` with ``CLONE_NEWUSER``: no new user namespace, in which an
  unprivileged process would get every capability over its own mounts and namespaces --
  the entry to much of the kernel's attack surface (measured: without the filter ``unshare
  -U -r`` makes uid 65534 "root" inside the sandbox); ``setns``;
* ``clone3``, whose flags sit in memory a filter cannot read (``ENOSYS``: the C library
  falls back to ``clone``, which is checked);
* kernel keyrings (``keyctl``, ``add_key``, ``request_key``), debugging other processes of
  the same uid -- other tasks run as uid 65534 too -- (``ptrace``, ``process_vm_readv``,
  ``process_vm_writev``), mounting (``mount``, ``umount2``, ``pivot_root`` and the new mount
  API), ``bpf``, ``perf_event_open``, ``userfaultfd``, ``io_uring_*``, file handles
  (``open_by_handle_at``, ``name_to_handle_at``), kernel modules and ``kexec``, ``reboot``,
  ``swapon``/``swapoff``, ``syslog``, ``acct``, ``quotactl``, ``lookup_dcookie`` and on
  x86_64 ``iopl``/``ioperm``/``uselib``.

Most of these already fail without capabilities; the filter removes them from the kernel
surface a package can reach at all. Everything else is allowed. Only x86_64 and aarch64
(64-bit user space) have tables here; elsewhere :func:`filter_program` returns None and the
agent reports ``seccomp: false``.
"""

from __future__ import annotations

import errno
import platform
import struct

__all__ = ["CLONE_NEWUSER", "DENIED", "filter_program", "native_arch"]

CLONE_NEWUSER = 0x10000000

# <linux/filter.h>, <linux/seccomp.h>, <linux/audit.h>
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # args[0], low 32 bits (both architectures are little-endian)
_X32_BIT = 0x40000000

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

#: System call numbers (``asm/unistd_64.h``, ``asm-generic/unistd.h``).
_NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "unshare": 272, "clone": 56, "clone3": 435, "setns": 308,
        "keyctl": 250, "add_key": 248, "request_key": 249,
        "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "mount": 165, "umount2": 166, "pivot_root": 155, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_by_handle_at": 304, "name_to_handle_at": 303,
        "init_module": 175, "finit_module": 313, "delete_module": 176,
        "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "swapon": 167,
        "swapoff": 168, "syslog": 103, "acct": 163, "quotactl": 179, "lookup_dcookie": 212,
        "iopl": 172, "ioperm": 173, "uselib": 134,
    },
    "aarch64": {
        "unshare": 97, "clone": 220, "clone3": 435, "setns": 268,
        "keyctl": 219, "add_key": 217, "request_key": 218,
        "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "mount": 40, "umount2": 39, "pivot_root": 41, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
        "open_by_handle_at": 265, "name_to_handle_at": 264,
        "init_module": 105, "finit_module": 273, "delete_module": 106,
        "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "swapon": 224,
        "swapoff": 225, "syslog": 116, "acct": 89, "quotactl": 60, "lookup_dcookie": 18,
    },
}  # fmt: skip
#: Calls refused whatever their arguments (``EPERM``).
DENIED = tuple(sorted(set(_NUMBERS["x86_64"]) - {"unshare", "clone", "clone3"}))


def native_arch() -> str | None:
    """The architecture whose table applies to this agent's processes, or None: the kernel's
    (``uname -m``) when the interpreter is 64-bit too (a 32-bit user space on a 64-bit
    kernel makes its calls through the compat ABI, which has other numbers)."""
    machine = platform.machine()
    if machine in _NUMBERS and struct.calcsize("P") == 8:
        return machine
    return None


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def _ret(value: int) -> bytes:
    return _insn(_RET_K, value)


def filter_program(arch: str | None = None) -> bytes | None:
    """The filter for ``arch`` (default :func:`native_arch`) as the bytes of a ``struct
    sock_filter`` array, or None when there is no table for it."""
    arch = native_arch() if arch is None else arch
    if arch not in _NUMBERS:
        return None
    numbers = _NUMBERS[arch]
    denied = [numbers[name] for name in DENIED if name in numbers]
    eperm, enosys = _RET_ERRNO | errno.EPERM, _RET_ERRNO | errno.ENOSYS
    # Layout: header, one JEQ per denied call (jump to the shared EPERM), the clone checks,
    # ALLOW, then the shared returns. Jumps are relative to the next instruction.
    prog = [
        _insn(_LD_W_ABS, _OFFSET_ARCH),
        _insn(_JEQ_K, _AUDIT_ARCH[arch], jt=1),
        _ret(_RET_KILL_PROCESS),
        _insn(_LD_W_ABS, _OFFSET_NR),
    ]
    if arch == "x86_64":
        prog += [_insn(_JGE_K, _X32_BIT, jf=1), _ret(_RET_KILL_PROCESS)]
    tail = 6  # the clone checks (5) and ALLOW follow the JEQs, then EPERM
    for i, number in enumerate(denied):
        prog.append(_insn(_JEQ_K, number, jt=len(denied) - 1 - i + tail))
    prog += [
        _insn(_JEQ_K, numbers["clone3"], jt=6),  # -> ENOSYS
        _insn(_JEQ_K, numbers["unshare"], jt=1),
        _insn(_JEQ_K, numbers["clone"], jf=2),
        _insn(_LD_W_ABS, _OFFSET_ARG0_LOW),
        _insn(_JSET_K, CLONE_NEWUSER, jt=1),
        _ret(_RET_ALLOW),
        _ret(eperm),
        _ret(enosys),
    ]
    return b"".join(prog)
