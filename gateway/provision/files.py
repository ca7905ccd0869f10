"""Atomic file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "write_private", "remove_file"]


def atomic_write(path: Path, data: bytes, mode: int | None = None) -> None:
    """Replace ``path`` by ``data`` so that readers see the old or the new file, never a mix.

    ``mode`` defaults to the existing file's mode (and owner, when we may set it), else 0644.
    """
    path = Path(path)
    try:
        existing = path.stat()
    except FileNotFoundError:
        existing = None
    if mode is None:
        mode = (existing.st_mode & 0o7777) if existing is not None else 0o644
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, mode)
        if existing is not None:
            with contextlib.suppress(OSError):
                os.chown(temp, existing.st_uid, existing.st_gid)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret or private key readable by its owner only (0600; the directory 0700 if new)."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True)
    atomic_write(path, data, 0o600)


def remove_file(path: Path) -> bool:
    """Delete ``path``; False when it did not exist."""
    try:
        Path(path).unlink()
    except FileNotFoundError:
        return False
    _fsync_directory(Path(path).parent)
    return True
