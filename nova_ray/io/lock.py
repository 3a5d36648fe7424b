"""One nova-ray job at a time per results folder and model store: a lock file that the process holds
while it runs (standard library only: the CLI, also on the serving side, imports it)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

LOCK = ".nova-ray.lock"
_HELD: set[str] = set()  # the lock files this process holds


class LockedError(RuntimeError):
    """Another nova-ray job holds the lock."""


@contextmanager
def job_lock(folder: str | Path, create: bool = True) -> Iterator[Path]:
    """An exclusive, non-blocking lock on `<folder>/.nova-ray.lock` (released when the process dies).

    Re-entrant in one process: `nova-ray run` holds it around the forecast, which takes it too.
    `create=False`: a missing folder is not created (there is nothing in it to protect)."""
    path = Path(folder) / LOCK
    if not create and not path.parent.is_dir():
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    key = str(path.resolve())
    if key in _HELD:
        yield path
        return
    fh = open(path, "a+")
    try:
        _take(fh)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise LockedError(
            f"{path}: another nova-ray job is running ({holder}); try again when it ends"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()} since {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    fh.flush()
    _HELD.add(key)
    try:
        yield path
    finally:
        _HELD.discard(key)
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _take(fh: IO[str], patience_s: float = 1.0) -> None:
    """The exclusive lock, tried for `patience_s`: `holder`'s brief probe (`nova-ray runs` at the
    moment a job starts) must not turn the job away; another job holds it for longer."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def holder(folder: str | Path) -> str | None:
    """Who holds `folder`'s job lock ("pid N since ..."), or None when no job does (read only:
    nothing is created, and a folder this process cannot open reads as free). The probe takes a
    shared lock for an instant, which a job starting then waits out (`_take`)."""
    path = Path(folder) / LOCK
    if str(path.resolve()) in _HELD:
        return f"pid {os.getpid()} (this process)"
    try:
        fh = open(path)
    except OSError:
        return None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return fh.read().strip() or "unknown"
        except OSError:
            return None
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
