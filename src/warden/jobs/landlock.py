"""Landlock, the sandbox's second layer: a trampoline run inside the sandbox that confines the job before exec.

Kept apart from :mod:`warden.jobs.sandbox`, which builds the bwrap command line around it.
"""

from __future__ import annotations

import ctypes

__all__ = ["LANDLOCK_PYTHON", "LANDLOCK_TRAMPOLINE", "landlock_abi"]

_SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture

LANDLOCK_PYTHON = "/usr/bin/python3"
"""The interpreter that runs the Landlock trampoline inside the sandbox (Debian's, under the read-only /usr)."""

LANDLOCK_TRAMPOLINE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
sep = sys.argv.index("--")
writable, command = sys.argv[1:sep], sys.argv[sep + 1 :]
abi = libc.syscall(444, None, 0, 1)
if abi > 0:
    fs = (1 << 13) - 1 | (1 << 13 if abi >= 2 else 0) | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0)
    net, scoped = (3 if abi >= 4 else 0), (3 if abi >= 6 else 0)
    attr = (ctypes.c_uint64 * 3)(fs, net, scoped)
    ruleset = libc.syscall(444, attr, 8 if abi < 4 else 16 if abi < 6 else 24, 0)
    if ruleset < 0:
        sys.exit(f"landlock_create_ruleset: {os.strerror(ctypes.get_errno())}")
    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("fd", ctypes.c_int32)]
    def allow(path, rights):
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rule = PathBeneath(rights, fd)
        if libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0) < 0:
            sys.exit(f"landlock_add_rule {path}: {os.strerror(ctypes.get_errno())}")
        os.close(fd)
    allow("/", 1 | 4 | 8)
    allow("/dev", 1 | 2 | 4 | 8 | (1 << 14 if abi >= 3 else 0) | (1 << 15 if abi >= 5 else 0))
    for path in writable:
        allow(path, fs)
    if libc.prctl(38, 1, 0, 0, 0) < 0 or libc.syscall(446, ruleset, 0) < 0:
        sys.exit(f"landlock_restrict_self: {os.strerror(ctypes.get_errno())}")
    os.close(ruleset)
os.execvp(command[0], command)
"""
"""Runs inside the sandbox before the job: everything visible is readable and executable, only ``/output``,
``/tmp`` and ``/dev/shm`` (arguments before ``--``) are writable, ``/dev`` nodes may be written, TCP bind and
connect are refused (ABI 4+), and abstract UNIX sockets and signals cannot leave the sandbox (ABI 6+)."""


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it has none (or the LSM is not enabled)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = int(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, 1))  # LANDLOCK_CREATE_RULESET_VERSION
    return max(version, 0)
