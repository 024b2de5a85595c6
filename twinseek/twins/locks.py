"""The file locks of a store folder: the writer lock, and the leases that keep an ingest's mask folder from being
swept while it is written (see :mod:`twinseek.twins.store`). Each is an ``flock``, which the kernel drops when the
process holding it dies."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twinseek.errors import StoreBusyError


@contextlib.contextmanager
def exclusive(path: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created when missing): blocks while another process (or thread) holds
    it; with ``timeout_s``, raises :class:`StoreBusyError` when it is not free within that many seconds."""
    with open(path, "w") as handle:
        _lock(handle, timeout_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take_lease(path: Path, mask_dir: str) -> int:
    """Create ``path`` and hold an exclusive flock on it; returns the open fd (closing it drops the lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "mask_dir": mask_dir}).encode())
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    return fd


def lease_held(path: Path) -> bool | None:
    """Whether a live process holds the lease at ``path`` (``None``: there is no lease file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # also drops the lock we may just have taken
    return False


def age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def mkdir_racing_sweeps(path: Path, attempts: int = 20) -> None:
    """``mkdir -p path`` while other processes may sweep: a sweep removes an empty per-video folder, which can
    happen between creating it and creating ``path`` inside it; then the parent is simply made again."""
    for attempt in range(attempts):
        try:
            path.mkdir(parents=True)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise


def _lock(handle: Any, timeout_s: float | None) -> None:
    if timeout_s is None:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return
    give_up = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= give_up:
                raise StoreBusyError(f"another writer holds {handle.name} (waited {timeout_s:.1f}s)") from None
            time.sleep(0.02)
