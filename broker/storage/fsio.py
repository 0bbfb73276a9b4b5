"""Small POSIX helpers shared by the log and the journal."""

from __future__ import annotations

import errno
import os
import pathlib


def write_all(fd: int, data: bytes) -> None:
    """Loop on short writes: a write crossing RLIMIT_FSIZE or a full disk can be partial."""
    view: bytes | memoryview = data
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write made no progress")
        if n == len(view):
            return
        view = memoryview(view)[n:]  # only a short write pays for a view


def fsync_dir(path: pathlib.Path) -> None:
    """A new or renamed file is only durable once its directory entry is."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rollback(fd: int, size: int) -> None:
    """Cut a file back after a failed write and park the position there.

    The position is reset even if ftruncate fails, so the next write overwrites
    the debris instead of appending after it.
    """
    try:
        os.ftruncate(fd, size)
    finally:
        os.lseek(fd, size, os.SEEK_SET)
