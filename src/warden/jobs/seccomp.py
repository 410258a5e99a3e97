"""The job sandbox's seccomp filter: a denylist compiled by libseccomp (through ``pyseccomp``) to classic BPF.

The filter allows by default and answers ``EPERM`` to the system calls a training job never needs and an escape
usually does (the table ``DENIED`` says why each is there). ``clone3`` and ``openat2`` answer ``ENOSYS`` instead,
because their arguments live in memory that a filter cannot read: libc then falls back to ``clone`` and ``openat``,
whose arguments the filter does see. Modes with set-user-id or set-group-id bits are refused to every call that
sets a mode (``SET_ID_MODE_ARGUMENT``). Foreign architectures (i386 ``int 0x80``, x32) kill the process, so the
denylist cannot be sidestepped through another system-call table.

``compile_filter()`` returns the BPF program as bytes, ready for ``bwrap --seccomp FD``; bwrap loads it right
before it runs the job, after setting ``PR_SET_NO_NEW_PRIVS`` (which an unprivileged seccomp load requires).
"""

from __future__ import annotations

import errno
import os
import socket
from types import ModuleType

__all__ = [
    "CLONE_NAMESPACE_FLAGS",
    "DENIED",
    "NOT_IMPLEMENTED",
    "SET_ID_MODE_ARGUMENT",
    "SeccompUnavailable",
    "compile_filter",
    "describe",
]

# Namespace flags of clone(2)/unshare(2) (linux/sched.h). CLONE_NEWTIME (0x80) only exists for clone3 and unshare.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

# Refused outright with EPERM, grouped by the reason they are refused.
DENIED: dict[str, tuple[str, ...]] = {
    "debugging other processes or reading their memory": (
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "kcmp",
        "pidfd_getfd",  # takes another process's file descriptors, what ptrace is refused for
        "process_madvise",
    ),
    "changing the mount table or the root": (
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
    ),
    "entering or creating namespaces": ("unshare", "setns"),
    "changing user or group ids (the job keeps the unprivileged ids it was started with)": (
        "setuid",
        "setgid",
        "setreuid",
        "setregid",
        "setresuid",
        "setresgid",
        "setfsuid",
        "setfsgid",
        "setgroups",
    ),
    "kernel attack surface with no use in a job": (
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "io_uring_setup",  # io_uring runs socket/open operations that seccomp never sees
        "io_uring_enter",
        "io_uring_register",
        "open_by_handle_at",  # opens files by handle, around the mount namespace
        "name_to_handle_at",
        "lookup_dcookie",
        "uselib",
        "personality",  # READ_IMPLIES_EXEC and friends weaken exploit mitigations
    ),
    "kernel keyrings": ("keyctl", "add_key", "request_key"),
    "loading kernel code": (
        "init_module",
        "finit_module",
        "delete_module",
        "create_module",
        "kexec_load",
        "kexec_file_load",
    ),
    "machine-wide state": (
        "reboot",
        "swapon",
        "swapoff",
        "syslog",  # the kernel log leaks addresses and other tenants' activity
        "acct",
        "quotactl",
        "settimeofday",
        "clock_settime",
        "clock_adjtime",
        "adjtimex",
        "sethostname",
        "setdomainname",
        "iopl",
        "ioperm",
        "vhangup",
        "nfsservctl",
    ),
}


# System calls that set a file mode, and the position of their mode argument. A mode with the set-user-id or
# set-group-id bit is refused: the job's files land on the host through /output, and a set-id file there (owned
# by host root when Warden runs as root) would hand its owner's identity to whoever runs it on the host.
SET_ID_MODE_ARGUMENT: dict[str, int] = {
    "chmod": 1,
    "fchmod": 1,
    "fchmodat": 2,
    "fchmodat2": 2,
    "open": 2,
    "openat": 3,
    "creat": 1,
    "mknod": 1,
    "mknodat": 2,
    "mkdir": 1,
    "mkdirat": 2,
}
_SET_ID_BITS = (0o4000, 0o2000)  # S_ISUID, S_ISGID

# Answered ENOSYS, so that libc falls back to a call the filter can inspect: their arguments live in memory.
NOT_IMPLEMENTED: dict[str, str] = {
    "clone3": "its flags cannot be inspected, so glibc falls back to clone",
    "openat2": "its mode cannot be inspected; callers fall back to openat",
}


def describe() -> list[tuple[str, str]]:
    """Every rule as ``(system call, effect and reason)``, for the audit record and the documentation."""
    rules = [(name, f"EPERM: {reason}") for reason, names in DENIED.items() for name in names]
    rules.append(("socket", "EPERM unless the family is AF_UNIX: no network of any kind"))
    rules.append(("clone", "EPERM when a namespace flag is set: " + ", ".join(CLONE_NAMESPACE_FLAGS)))
    rules += [(name, f"ENOSYS: {why}") for name, why in NOT_IMPLEMENTED.items()]
    rules += [(name, "EPERM when the mode sets S_ISUID or S_ISGID: no set-id files reach the host") for name in
              SET_ID_MODE_ARGUMENT]  # fmt: skip
    rules.append(("(foreign architecture)", "kill the process: no detour through the i386 or x32 tables"))
    return rules


class SeccompUnavailable(RuntimeError):
    """pyseccomp or libseccomp.so.2 is missing; ``warden.jobs.sandbox`` reports it as ``SandboxUnavailable``."""


def _pyseccomp() -> ModuleType:
    """The binding, imported on first use: it raises at import time where libseccomp.so.2 is missing."""
    try:
        import pyseccomp  # type: ignore[import-untyped,unused-ignore]  # noqa: PLC0415 - no py.typed
    except (ImportError, RuntimeError, OSError) as exc:
        raise SeccompUnavailable(f"libseccomp is unusable: {exc}") from exc
    module: ModuleType = pyseccomp
    return module


def _syscall(pyseccomp: ModuleType, name: str) -> int | None:
    """The native number of ``name``; None where libseccomp does not know it (a pseudo-number is kept)."""
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    return None if number == -1 else int(number)


def compile_filter() -> bytes:
    """The denylist as a classic BPF program for the native architecture."""
    pyseccomp = _pyseccomp()
    eperm = pyseccomp.ERRNO(errno.EPERM)
    flt = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    flt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    for names in DENIED.values():
        for name in names:
            number = _syscall(pyseccomp, name)
            if number is not None:
                flt.add_rule(eperm, number)
    flt.add_rule(eperm, "socket", pyseccomp.Arg(0, pyseccomp.NE, socket.AF_UNIX))
    for flag in CLONE_NAMESPACE_FLAGS.values():
        # On every architecture Warden runs on (x86_64, aarch64) clone's flags are its first argument.
        flt.add_rule(eperm, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    for name in NOT_IMPLEMENTED:
        number = _syscall(pyseccomp, name)
        if number is not None:
            flt.add_rule(pyseccomp.ERRNO(errno.ENOSYS), number)
    for name, position in SET_ID_MODE_ARGUMENT.items():
        number = _syscall(pyseccomp, name)
        for bit in _SET_ID_BITS if number is not None else ():
            flt.add_rule(eperm, number, pyseccomp.Arg(position, pyseccomp.MASKED_EQ, bit, bit))
    memfd = os.memfd_create("warden-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(memfd), "wb") as sink:
            flt.export_bpf(sink)
        return os.pread(memfd, os.fstat(memfd).st_size, 0)
    finally:
        os.close(memfd)
