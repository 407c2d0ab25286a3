"""The run folder's lock: ``RUN_DIR/.lock`` held with ``flock`` by the training process while it trains.

``neurotrain cleanup`` leaves a run alone while its lock is held. The OS drops a ``flock`` when its process
dies, so a ``.lock`` file left by a killed run is not "in progress"; the file itself is never removed
(removing it would let two processes lock two different files of one name).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from pathlib import Path

from ..errors import ConfigError

LOCK_NAME = ".lock"
logger = logging.getLogger(__name__)


class RunLock:
    """An exclusive ``flock`` on ``RUN_DIR/.lock``: ``acquire`` (waits up to ``wait`` seconds), ``release``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self, wait: float = 0.0) -> bool:
        """Take the lock (creating the file); False when another process holds it after ``wait`` seconds."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
            except OSError as exc:  # a file system without flock (some network mounts): run unlocked
                os.close(fd)
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                logger.warning("%s: the file system does not support flock; the run is not locked", self.path)
                return True
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def acquire(self, wait: float = 5.0) -> RunLock:
        """Take the lock for a training run; another live process holding it is a one-line error."""
        if not self.try_acquire(wait):
            raise ConfigError(
                f"{self.path.parent}: another process holds this run folder's {LOCK_NAME} (a training run in "
                "it, or a cleanup); wait for it to end or set another [basic] run_id"
            )
        return self

    def release(self) -> None:
        """Drop the lock (the file stays); a no-op when not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds ``RUN_DIR/.lock`` (a probe that creates nothing and holds nothing)."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:  # unreadable: cannot tell, so say in progress (the safe answer)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # cannot tell (no flock on this file system): say in progress, the safe answer
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock
    return False
