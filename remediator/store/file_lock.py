"""One writer per SQLite file: an advisory lock on a file beside the database.

SQLite locks the database per transaction, not per process: two ``serve`` processes on one
file would both run, each deciding alone. So the store takes ``flock(LOCK_EX | LOCK_NB)`` on
``<database>.lock`` before anything else, and writes its pid there for the message of the
next one. The kernel drops the lock when the process ends, however it ends, so a lock file
left by a ``kill -9`` blocks no one. The file itself stays: removing it would let a
process lock a file a newcomer has already replaced.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from remediator.core.errors import RemediatorError


class FileInUse(RemediatorError):
    """Another holder has the lock of ``path`` (a process, or another store in this one);
    ``pid`` as the holder wrote it, 0 when it has not yet."""

    def __init__(self, path: Path, pid: int) -> None:
        super().__init__(f"{path} is in use by another process (pid {pid or 'unknown'})")
        self.path = path
        self.pid = pid


class FileLock:
    """The lock of one file, ``<path>.lock``; held from ``acquire`` to ``release``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise ``FileInUse`` naming its holder; never waits."""
        if self._fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise FileInUse(self.path, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.ftruncate(fd, 0)  # the pid of a process that no longer holds the file misleads
            os.close(fd)  # closing the last descriptor of the open file drops the lock


def _pid_in(fd: int) -> int:
    """The pid the holder wrote; 0 when it has not written it yet."""
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else 0
