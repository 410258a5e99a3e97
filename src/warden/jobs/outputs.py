"""A job's output: bounded while it is written, released without links or special files, hashed by descriptor.

In the bwrap sandbox ``/output`` is a tmpfs of a fixed size inside the sandbox, not a host directory: the
kernel refuses writes past the size (``ENOSPC``), however many files the job spreads them over, and the runner
watches the tmpfs's use (``statvfs``, one system call) to stop the job the moment it passes its byte or entry
limit. :class:`OutputArea` holds a descriptor to that tmpfs, opened from the host through
``/proc/PID/root/output`` while bwrap waits (``--block-fd``) after building the sandbox and before starting the
job, so the files outlive the sandbox's mount namespace until :meth:`OutputArea.release` has copied them out.

The release copies regular files and directories only, each opened by descriptor relative to its directory and
never following a link. Symbolic links (to ``/etc/shadow``, to ``../../``, or to a sibling), FIFOs, sockets and
device nodes are not recreated on the host; a second name of a hard-linked file is not copied again; a file that
would take the release past the byte limit (a sparse file, say) is not copied; a directory deeper than
``MAX_DEPTH`` is not entered. Each is a :class:`Withheld` entry the manifest lists, links with their target
string. The tmpfs is RAM: where the memory limit is a cgroup, the job's output counts against it.

The container backends bind a host directory at ``/output`` instead; :func:`remove_specials` takes links and
special files out of it after the run, recording them the same way.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import select
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "MAX_DEPTH",
    "OutputArea",
    "OutputFile",
    "Withheld",
    "hash_outputs",
    "remove_specials",
    "restrict_output",
    "tmpfs_size",
    "tree_usage",
]

MAX_DEPTH: Final = 200
"""Directories below this many levels are not released (each level holds two descriptors during the copy)."""

_PAGE: Final = os.sysconf("SC_PAGE_SIZE")
_ATTACH_SECONDS: Final = 30.0
_COPY_BLOCK: Final = 1 << 20


@dataclass(frozen=True)
class OutputFile:
    """One entry the job left in its output: a file with its hash, or a link, pipe, socket or device (never opened).

    ``error`` says why an entry could not be hashed (a path too long to open, say); the entry is still listed.
    ``released`` is False for an entry kept out of the released output (see :class:`Withheld`).
    """

    path: str
    sha256: str | None
    size: int
    link_target: str | None = None
    kind: str = "file"
    error: str | None = None
    released: bool = True


@dataclass(frozen=True)
class Withheld:
    """An entry of the job's output that was not released: its path, kind, link target and why."""

    path: str
    kind: str
    reason: str
    target: str | None = None

    def as_output(self) -> OutputFile:
        """The manifest's entry for it."""
        return OutputFile(self.path, None, 0, self.target, self.kind, self.reason, released=False)


def tmpfs_size(limit: int) -> int:
    """The size of the sandbox's ``/output`` tmpfs for a byte limit: whole pages, one page above the limit.

    The spare page makes "past the limit" visible in ``statvfs`` before the kernel answers ``ENOSPC``.
    """
    return -(-limit // _PAGE) * _PAGE + _PAGE


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "device"


class OutputArea:
    """The sandbox's ``/output`` tmpfs, held open from the host by descriptor."""

    def __init__(self, fd: int, max_bytes: int, max_entries: int) -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self.max_entries = max_entries

    @classmethod
    def attach(cls, process: subprocess.Popen[bytes], info_fd: int, max_bytes: int, max_entries: int) -> OutputArea:
        """Open the ``/output`` of the sandbox bwrap is building, once bwrap has switched to the sandbox's root.

        ``info_fd`` is the read end of bwrap's ``--info-fd`` (which names its child's pid). Until the child has
        entered the new root, ``/proc/PID/root`` is the host's root or bwrap's staging tmpfs: the root is taken
        once it is neither, holds ``output`` and that is a tmpfs of exactly the expected size. Raises OSError
        when bwrap ends first or the sandbox does not appear in time.
        """
        pid = _child_pid(process, info_fd)
        host_root = os.stat("/")
        deadline = time.monotonic() + _ATTACH_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            with contextlib.suppress(OSError):
                fd = _open_final_output(pid, host_root, tmpfs_size(max_bytes))
                if fd is not None:
                    return cls(fd, max_bytes, max_entries)
            time.sleep(0.002)
        raise OSError(errno.ESRCH, "bwrap ended or stalled before the sandbox's /output could be opened")

    def exceeded(self) -> str | None:
        """``output_bytes`` or ``output_files`` once the tmpfs holds more than its limit; otherwise None."""
        usage = os.fstatvfs(self.fd)
        if (usage.f_blocks - usage.f_bfree) * usage.f_frsize > self.max_bytes:
            return "output_bytes"
        if usage.f_files - usage.f_ffree - 1 > self.max_entries:  # the root directory is one inode
            return "output_files"
        return None

    def release(self, destination: Path) -> tuple[list[Withheld], bool]:
        """Copy the regular files and directories to ``destination``; return what was withheld, and whether a file
        did not fit the byte limit."""
        copier = _Copier(self.max_bytes)
        dest_fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            copier.directory(os.dup(self.fd), dest_fd, "", 0)
        finally:
            os.close(dest_fd)
        return copier.withheld, copier.over

    def close(self) -> None:
        """Let the tmpfs go (its pages are freed once the sandbox is gone too)."""
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _child_pid(process: subprocess.Popen[bytes], info_fd: int) -> int:
    data = b""
    deadline = time.monotonic() + _ATTACH_SECONDS
    while time.monotonic() < deadline:
        ready, _, _ = select.select([info_fd], [], [], 0.1)
        if ready:
            chunk = os.read(info_fd, 4096)
            if not chunk:
                break
            data += chunk
            with contextlib.suppress(ValueError):
                return int(json.loads(data)["child-pid"])
        elif process.poll() is not None:
            break
    raise OSError(errno.ESRCH, "bwrap did not report its sandbox's pid")


def _open_final_output(pid: int, host_root: os.stat_result, size: int) -> int | None:
    root = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY)
    try:
        info = os.fstat(root)
        if (info.st_dev, info.st_ino) == (host_root.st_dev, host_root.st_ino):
            return None
        names = set(os.listdir(root))
        if "output" not in names or "newroot" in names:
            return None
        fd = os.open("output", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root)
    finally:
        os.close(root)
    usage = os.fstatvfs(fd)
    if usage.f_blocks * usage.f_frsize != size or os.listdir(fd):
        os.close(fd)
        return None
    return fd


class _Copier:
    """One release: copies by descriptor, remembers hard links, counts bytes, records what it withholds."""

    def __init__(self, max_bytes: int) -> None:
        self.room = max_bytes
        self.over = False
        self.withheld: list[Withheld] = []
        self._seen: dict[tuple[int, int], str] = {}

    def directory(self, src: int, dest: int, base: str, depth: int) -> None:
        """Copy the directory open at ``src`` into the one open at ``dest``; closes ``src``."""
        try:
            names = sorted(os.listdir(src))
        except OSError as exc:
            os.close(src)
            self.withheld.append(Withheld(base or ".", "directory", exc.strerror or "unreadable"))
            return
        try:
            for name in names:
                self._entry(src, dest, name, f"{base}/{name}" if base else name, depth)
        finally:
            os.close(src)

    def _entry(self, src: int, dest: int, name: str, relative: str, depth: int) -> None:
        kind = "file"
        try:
            info = os.stat(name, dir_fd=src, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                kind = "directory"
                self._subdirectory(src, dest, name, relative, depth)
            elif not stat.S_ISREG(info.st_mode):
                target = os.readlink(name, dir_fd=src) if stat.S_ISLNK(info.st_mode) else None
                self.withheld.append(Withheld(relative, _kind(info.st_mode), "not a regular file", target))
            elif info.st_nlink > 1 and (info.st_dev, info.st_ino) in self._seen:
                first = self._seen[(info.st_dev, info.st_ino)]
                self.withheld.append(Withheld(relative, "hardlink", "another name of a released file", first))
            elif info.st_size > self.room:
                self.over = True
                self.withheld.append(Withheld(relative, "file", "past the output limit"))
            else:
                self._file(src, dest, name, info)
                self.room -= info.st_size
                self._seen[(info.st_dev, info.st_ino)] = relative
        except OSError as exc:
            self.withheld.append(Withheld(relative, kind, exc.strerror or type(exc).__name__))

    def _subdirectory(self, src: int, dest: int, name: str, relative: str, depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.withheld.append(Withheld(relative, "directory", f"deeper than {MAX_DEPTH} levels"))
            return
        child = _open_own(name, src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, 0o700)
        os.mkdir(name, 0o755, dir_fd=dest)
        child_dest = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dest)
        try:
            self.directory(child, child_dest, relative, depth + 1)
        finally:
            os.close(child_dest)

    def _file(self, src: int, dest: int, name: str, info: os.stat_result) -> None:
        source = _open_own(name, src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(source).st_mode):  # pragma: no cover - the job is gone; nothing can swap it
                raise OSError(errno.EINVAL, "changed while released")
            mode = (info.st_mode & 0o755) | 0o600
            target = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=dest)
            try:
                left = info.st_size
                while left > 0 and (block := os.read(source, min(_COPY_BLOCK, left))):
                    os.write(target, block)
                    left -= len(block)
            finally:
                os.close(target)
        finally:
            os.close(source)


def _open_own(name: str, directory: int, flags: int, mode: int) -> int:
    """Open an entry the job owns, granting the owner access first if the job took it away (chmod 000)."""
    try:
        return os.open(name, flags, dir_fd=directory)
    except PermissionError:
        os.chmod(name, mode, dir_fd=directory)  # the entry was just seen not to be a link, and the job is gone
        return os.open(name, flags, dir_fd=directory)


def remove_specials(output_dir: Path) -> list[Withheld]:
    """Take links, FIFOs, sockets, devices and extra hard-link names out of a host output directory, recording them.

    For the container backends, whose ``/output`` is a host directory; walked by descriptor, nothing followed.
    """
    withheld: list[Withheld] = []
    seen: dict[tuple[int, int], str] = {}
    for root, dirs, files, root_fd in os.fwalk(output_dir, follow_symlinks=False):
        base = Path(root).relative_to(output_dir)
        for name in sorted(files) + sorted(dirs):
            relative = (base / name).as_posix()
            with contextlib.suppress(OSError):
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    continue
                entry: Withheld | None = None
                if not stat.S_ISREG(info.st_mode):
                    target = os.readlink(name, dir_fd=root_fd) if stat.S_ISLNK(info.st_mode) else None
                    entry = Withheld(relative, _kind(info.st_mode), "not a regular file", target)
                elif info.st_nlink > 1 and (info.st_dev, info.st_ino) in seen:
                    first = seen[(info.st_dev, info.st_ino)]
                    entry = Withheld(relative, "hardlink", "another name of a released file", first)
                else:
                    seen[(info.st_dev, info.st_ino)] = relative
                if entry is not None:
                    os.unlink(name, dir_fd=root_fd)
                    withheld.append(entry)
    return withheld


def tree_usage(output_dir: Path) -> tuple[int, int]:
    """The bytes allocated under ``output_dir`` (``st_blocks``, so sparse files count what they hold) and its
    number of entries; walked by descriptor, nothing followed, entries that vanish meanwhile skipped."""
    allocated = entries = 0
    for _root, dirs, files, root_fd in os.fwalk(output_dir, follow_symlinks=False):
        for name in files + dirs:
            entries += 1
            with contextlib.suppress(OSError):
                allocated += os.stat(name, dir_fd=root_fd, follow_symlinks=False).st_blocks * 512
    return allocated, entries


def hash_outputs(output_dir: Path) -> list[OutputFile]:
    """Every entry under ``output_dir``, sorted by path: files hashed, anything else recorded, nothing followed.

    Directories are walked by descriptor (``os.fwalk``), so no path length stops the walk, and files are opened
    with ``O_NOFOLLOW`` relative to their directory, so a link the job made never leads the runner elsewhere.
    """
    found: list[OutputFile] = []
    walk_errors: list[OSError] = []
    for root, dirs, files, root_fd in os.fwalk(output_dir, follow_symlinks=False, onerror=walk_errors.append):
        base = Path(root).relative_to(output_dir)
        for name in sorted(files) + sorted(dirs):
            relative = (base / name).as_posix()
            try:
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    continue
                found.append(_hashed(relative, name, info, root_fd))
            except OSError as exc:
                found.append(OutputFile(relative, None, 0, error=exc.strerror or type(exc).__name__))
    found += [OutputFile(str(e.filename or "?"), None, 0, kind="directory", error=e.strerror) for e in walk_errors]
    return sorted(found, key=lambda o: o.path)


def _hashed(relative: str, name: str, info: os.stat_result, root_fd: int) -> OutputFile:
    if stat.S_ISLNK(info.st_mode):
        return OutputFile(relative, None, 0, os.readlink(name, dir_fd=root_fd), kind="link")
    if not stat.S_ISREG(info.st_mode):
        return OutputFile(relative, None, 0, kind=_kind(info.st_mode))
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=root_fd)
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while block := handle.read(_COPY_BLOCK):
            digest.update(block)
    return OutputFile(relative, digest.hexdigest(), info.st_size)


def restrict_output(output_dir: Path) -> None:
    """Take write access from group and others on everything the job left (a job can chmod 0777 its output)."""
    os.chmod(output_dir, os.stat(output_dir).st_mode & ~0o022 & 0o7777)
    for _root, dirs, files, root_fd in os.fwalk(output_dir, follow_symlinks=False):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
                    os.chmod(name, info.st_mode & ~0o022 & 0o7777, dir_fd=root_fd)
