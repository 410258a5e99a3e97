"""Which writers of a stream are alive: so a writer that finds an unsealed tail can tell a crash from a co-writer.

A stream's tail is unsealed both while its writer runs and after that writer crashed. On
one host (the processes sharing a replica id: a server and the admin commands run beside
it) each writer that has started writing holds a shared ``flock`` on a file in the data
directory until it closes; the kernel drops it when a process dies, SIGKILL included. A
writer about to write its first record probes, under a gate lock, whether any other
writer holds it: if none does, an unsealed tail was left by a writer that did not close.
Writers of one process are counted in memory as well (``flock`` locks of one process on
different descriptors conflict, so the probe sees them too, but a writer built without a
directory relies on the count alone).

The lock files are outside the database on purpose: someone who can write the database
(and so delete records) cannot take them to pass for a live writer; someone who can take
them runs as the server's user and can read its secret anyway.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Final

_log = logging.getLogger("warden.audit")
_LOCK: Final = threading.Lock()
_LIVE: dict[tuple[str, str], int] = {}


class Presence:
    """One writer's mark of being alive on ``stream``; ``join`` once before its first write, ``leave`` at close."""

    def __init__(self, stream: str, directory: Path | None = None, *, scope: str = "") -> None:
        self.stream = stream
        self.directory = directory
        self._key = (str(directory) if directory is not None else scope, stream)
        self._fd: int | None = None
        self._joined = False

    def join(self) -> bool:
        """Mark this writer alive; True when no other live writer of the stream was found (idempotent)."""
        if self._joined:
            return False
        with _LOCK:
            alone = _LIVE.get(self._key, 0) == 0
            _LIVE[self._key] = _LIVE.get(self._key, 0) + 1
            self._joined = True
        if self.directory is not None:
            try:
                alone = self._lock_files(self.directory) and alone
            except OSError as exc:  # no lock files: a live co-writer cannot be seen, so a tail counts as crashed
                _log.warning("audit writer presence lock unavailable in %s: %s", self.directory, exc)
        return alone

    def leave(self) -> None:
        """Stop being counted alive (idempotent)."""
        if not self._joined:
            return
        with _LOCK:
            left = _LIVE.get(self._key, 1) - 1
            if left:
                _LIVE[self._key] = left
            else:
                _LIVE.pop(self._key, None)
            self._joined = False
        if self._fd is not None:
            os.close(self._fd)  # releases the shared lock
            self._fd = None

    def _lock_files(self, directory: Path) -> bool:
        name = hashlib.sha256(self.stream.encode()).hexdigest()[:16]
        gate = os.open(directory / f".audit-{name}.gate", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)  # one prober at a time: the probe and the downgrade are one step
            fd = os.open(directory / f".audit-{name}.live", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                alone = True
            except BlockingIOError:
                alone = False
            fcntl.flock(fd, fcntl.LOCK_SH)
            self._fd = fd
            return alone
        finally:
            os.close(gate)
