"""File locks (flock) shared by the store, the package cache and environments.

flock locks vanish with the process that held them, so a SIGKILLed run never leaves a stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path


class LockBusy(Exception):
    """The lock is held by someone else and the caller did not want to wait."""


class FileLock:
    """An advisory lock on `path` (created if missing); exclusive unless `shared`.

    Use as a context manager. `wait=False` raises LockBusy at once; `timeout` bounds the wait.
    """

    def __init__(self, path: Path | str, shared: bool = False, wait: bool = True,
                 timeout: float | None = None):
        self.path = Path(path)
        self.shared = shared
        self.wait = wait
        self.timeout = timeout
        self._fd: int | None = None

    def acquire(self) -> "FileLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        mode = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if not self.wait or (deadline is not None and time.monotonic() >= deadline):
                    os.close(fd)
                    raise LockBusy(str(self.path)) from None
                time.sleep(0.05)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def is_locked(path: Path | str) -> bool:
    """True when another process holds any lock on `path` (a probe that takes nothing)."""
    try:
        with FileLock(path, wait=False):
            return False
    except LockBusy:
        return True
    except FileNotFoundError:
        return False
