"""Staging on a memory filesystem: where an upload and its de-identified result live while it runs.

The de-identifier works on paths, so the raw upload must be a file for a moment; that file lives
in a private (0700) folder on a tmpfs and is removed when the push ends, however it ends. A
staging folder on a disk is refused (``staging_unavailable``): raw bytes never reach a disk in clear.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from warden.errors import StagingUnavailable

MEMORY_FILESYSTEMS: Final = frozenset({"tmpfs", "ramfs"})
_MOUNTS: Final = Path("/proc/mounts")


def filesystem_type(path: Path, mounts: Path = _MOUNTS) -> str | None:
    """The type of the filesystem ``path`` is on, from the longest mount point holding it; ``None`` if unknown."""
    try:
        lines = mounts.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    target, best, found = path.resolve(), -1, None
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))
        if (target == point or point in target.parents) and len(point.parts) > best:
            best, found = len(point.parts), fields[2]
    return found


def check_staging(root: Path, mounts: Path = _MOUNTS) -> None:
    """Refuse (``StagingUnavailable``) unless ``root`` is an existing folder on a tmpfs."""
    if not root.is_dir():
        raise StagingUnavailable(f"the staging folder {root} does not exist; set WARDEN_STAGING_DIR to a tmpfs mount")
    kind = filesystem_type(root, mounts)
    if kind not in MEMORY_FILESYSTEMS:
        raise StagingUnavailable(
            f"the staging folder {root} is on {kind or 'an unknown filesystem'}, not a tmpfs: uploads would reach "
            "a disk in clear; set WARDEN_STAGING_DIR to a tmpfs mount (such as /dev/shm)"
        )


@contextlib.contextmanager
def staging(root: Path, mounts: Path = _MOUNTS) -> Iterator[Path]:
    """A fresh private folder under ``root`` (checked to be a tmpfs), removed with all it holds on exit."""
    check_staging(root, mounts)
    folder = Path(tempfile.mkdtemp(prefix="warden-stage-", dir=root))  # 0700
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only."""
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(data)


def read_chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes, ``size`` at a time (to stream a staged result into the vault)."""
    with path.open("rb") as source:
        while chunk := source.read(size):
            yield chunk
