"""Temp folders named for the process that owns them, so that a later run removes those whose owner
died without cleaning up (a driver killed with -9, a Ray worker ended by a signal: no atexit runs).

The PID is this machine's: a temp dir shared between PID namespaces (containers mounting one /tmp)
would let one remove another's live folders, so give each its own."""

from __future__ import annotations

import os
import shutil
import tempfile

PREFIX = "nova-ray-"


def owned_tmpdir(kind: str, base: str | None = None) -> str:
    """A new folder `nova-ray-<kind>-<pid>-<random>` in `base` (the temp dir by default), after
    removing the `kind` folders there whose process is gone."""
    base = base or tempfile.gettempdir()
    sweep(kind, base)
    return tempfile.mkdtemp(prefix=owned_prefix(kind), dir=base)


def owned_prefix(kind: str) -> str:
    """The name prefix of this process's `kind` folders (for `tempfile.TemporaryDirectory`)."""
    return f"{PREFIX}{kind}-{os.getpid()}-"


def sweep(kind: str, base: str) -> list[str]:
    """Remove the `kind` folders in `base` whose owning process no longer exists; return them."""
    stem = f"{PREFIX}{kind}-"
    gone = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return gone
    for entry in entries:
        if not entry.name.startswith(stem):
            continue
        pid = entry.name[len(stem) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            gone.append(entry.path)
    return gone


def _alive(pid: int) -> bool:
    """Whether process `pid` runs. A zombie does not: a Ray worker ended with its raylet is
    reparented to PID 1, which in a container may never reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # the state follows "(name)"
    except (OSError, IndexError):  # no /proc (macOS): the signal said it exists
        return True
