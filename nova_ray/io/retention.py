"""Keep a results folder from growing night after night: remove the oldest run dates' partitions,
their run records and the run logs older than the oldest run kept."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..schemas import TABLES
from .results import read_pointer

RUN_DATE = re.compile(r"^run_date=(\d{4}-\d{2}-\d{2})$")


@dataclass
class Pruned:
    """What `prune_results` removed."""

    kept: list[str] = field(default_factory=list)  # run dates, newest first
    dates: list[str] = field(default_factory=list)  # run dates removed, newest first
    partitions: int = 0
    records: int = 0
    logs: int = 0

    def describe(self) -> str:
        if not self.dates:
            return f"kept all {len(self.kept)} run date{'s' * (len(self.kept) != 1)}"
        span = self.dates[-1] if len(self.dates) == 1 else f"{self.dates[-1]} .. {self.dates[0]}"
        n = len(self.dates)
        return (
            f"removed {n} run date{'s' * (n != 1)} ({span}): {self.partitions} partitions, "
            f"{self.records} run records, {self.logs} logs; kept {len(self.kept)} from {self.kept[-1]}"
        )


def run_dates(root: Path) -> set[str]:
    """The run dates that have a partition of any table under `root`."""
    found = set()
    for kind in TABLES:
        folder = root / kind
        for sub in folder.iterdir() if folder.is_dir() else ():
            m = RUN_DATE.match(sub.name)
            if m and sub.is_dir():
                found.add(m.group(1))
    return found


def prune_results(root: str | Path, keep: int, pinned: set[str] = frozenset()) -> Pruned:
    """Remove all but the `keep` newest run dates (the pointer's run date and `pinned` dates are
    kept and count towards `keep`): their partitions of every table, the run records of those
    dates, and the run logs last written before the oldest kept run was generated. Call it under
    the folder's job lock. Each partition is renamed aside first, then deleted, so a reader never
    sees half of one."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    root = Path(root)
    ptr = read_pointer(root)
    pinned = set(pinned) | ({str(ptr["run_date"])} if ptr and ptr.get("run_date") else set())
    dates = sorted(run_dates(root), reverse=True)
    kept = [d for d in dates if d in pinned]
    kept += [d for d in dates if d not in pinned][: max(keep - len(kept), 0)]
    out = Pruned(kept=sorted(kept, reverse=True), dates=[d for d in dates if d not in kept])
    if not out.dates:
        return out
    trash = root / ".trash" / f"prune-{uuid.uuid4().hex[:8]}"
    for kind in TABLES:
        for day in out.dates:
            part = root / kind / f"run_date={day}"
            if part.is_dir():
                trash.mkdir(parents=True, exist_ok=True)
                os.replace(part, trash / f"{kind}-{day}")
                out.partitions += 1
    shutil.rmtree(trash, ignore_errors=True)
    with contextlib.suppress(OSError):  # another attempt's trash may still be there
        trash.parent.rmdir()
    oldest_kept = None
    gone = set(out.dates)
    for rec_path in (root / "metadata" / "runs").glob("*.json"):
        try:
            rec = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record is left for `nova-ray runs` to show
        if not isinstance(rec, dict):
            continue
        if str(rec.get("run_date")) in gone:
            rec_path.unlink(missing_ok=True)
            out.records += 1
        elif rec.get("generated_at"):
            stamp = _timestamp(str(rec["generated_at"]))
            if stamp is not None:
                oldest_kept = stamp if oldest_kept is None else min(oldest_kept, stamp)
    if oldest_kept is not None:
        for log in (root / "logs").glob("run-*.log"):
            if log.stat().st_mtime < oldest_kept:
                log.unlink(missing_ok=True)
                out.logs += 1
    return out


def _timestamp(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
