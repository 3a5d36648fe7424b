"""The log file of a run (or of the daily job around it) under `<output>/logs/`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path

LOG = logging.getLogger("nova_ray")
_LOG_FILE: ContextVar[Path | None] = ContextVar("nova_ray_log_file", default=None)


@contextmanager
def run_log(output: str | Path) -> Iterator[Path]:
    """A log file for this run under `<output>/logs/` (INFO and up; the console shows what the CLI
    chose). Inside another run_log (the daily job's) the run logs to that one's file."""
    if (active := _LOG_FILE.get()) is not None:
        yield active
        return
    stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    path = Path(output) / "logs" / f"run-{stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    LOG.addHandler(handler)
    if LOG.level == logging.NOTSET or LOG.level > logging.INFO:
        LOG.setLevel(logging.INFO)
    token = _LOG_FILE.set(path)
    try:
        yield path
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI raises it for both)
        LOG.error("run stopped: interrupted or terminated (a signal); nothing was published")
        raise
    except BaseException as exc:
        # nova-ray's own errors and the OS's are one line; Ray's and other failures bring their
        # traceback (the one-line error on the terminal points here for it)
        ours = type(exc).__module__.startswith("nova_ray") or isinstance(exc, OSError)
        LOG.error("run failed: %s: %s", type(exc).__name__, exc, exc_info=not ours)
        raise
    finally:
        _LOG_FILE.reset(token)
        LOG.removeHandler(handler)
        handler.close()
