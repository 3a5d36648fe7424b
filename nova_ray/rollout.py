"""5G roll-out counts (cumulative sites or municipalities, daily or forward-filled from monthly
updates): their reporting interval, the pace of their updates, and their continuation past the
last observed day. Pure numpy/pandas; `exog` derives the models' 5G features from them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

G5_PREFIX = "g5_"  # the feature table's 5G columns
G5_RATE_DAYS = 28  # recent window of the 5G pace carried into the future
PERIODIC_DAYS = 7  # a count whose changes are this many days apart (median) is reported weekly or less often


def sites_column(columns: Sequence[str]) -> str | None:
    """The cumulative 5G column that counts sites/stations (else the first 5G column)."""
    g5 = [c for c in columns if c.startswith(G5_PREFIX)]
    for key in ("estac", "site", "erb"):
        for c in g5:
            if key in c:
                return c
    return g5[0] if g5 else None


def reported_pace(cumulative: np.ndarray) -> np.ndarray:
    """Per day, the daily pace of a forward-filled cumulative count's latest update: its increase
    over the days since the update before, held until the next (0 before the second update)."""
    v = np.asarray(cumulative, dtype=float)
    at = np.flatnonzero(np.diff(v) != 0) + 1  # the days a new count appears
    pace = np.zeros(len(v))
    for prev, cur, nxt in zip(at[:-1], at[1:], [*at[2:], len(v)], strict=True):
        pace[cur:nxt] = max(v[cur] - v[prev], 0.0) / (cur - prev)
    return pace


def recent_pace(cumulative: np.ndarray) -> float:
    """The daily pace of a forward-filled cumulative count over its last 28 days (>= 0). A count
    updated less often: from the update at least two reporting intervals before its latest to
    the latest (a window of fixed length ending on the last day held two or three monthly updates
    by the months' lengths: a pace 30% off), 0 when the last two intervals hold no update."""
    v = np.asarray(cumulative, dtype=float)
    if len(v) < 2:
        return 0.0
    step = report_interval(v)
    at = np.flatnonzero(np.diff(v) != 0) + 1  # the days a new count appears
    if step > 1 and len(at) > 1 and len(v) - 1 - at[-1] <= 2 * step:
        before = at[at <= at[-1] - 2 * step]
        first = int(before[-1]) if len(before) else int(at[0])
        if at[-1] > first:
            return max(float(v[at[-1]] - v[first]) / float(at[-1] - first), 0.0)
    recent = v[-(max(G5_RATE_DAYS, 2 * step) + 1) :]
    return max(float(recent[-1] - recent[0]) / max(len(recent) - 1, 1), 0.0)


def continue_counts(
    features: pd.DataFrame, last_seen: dict[str, pd.Timestamp]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The cumulative 5G columns whose source ends before the table (`last_seen`: column -> its
    last observed day), continued after that day at their `recent_pace`, in steps of their
    reporting interval (a monthly count still steps monthly); and per continued column its last
    observed day and pace. The ETL forward-fills such a column: an Anatel extract two months
    behind the other sources read as a roll-out that stopped, and the forecast's 5G pace as 0."""
    f = features.sort_values("date").reset_index(drop=True)
    dates = pd.to_datetime(f["date"])
    continued: dict[str, dict[str, Any]] = {}
    for col in (c for c in f.columns if c.startswith(G5_PREFIX) and c in last_seen):
        last = pd.Timestamp(last_seen[col]).normalize()
        after = (dates > last).to_numpy()
        if not after.any() or after.all():
            continue
        values = f[col].to_numpy(dtype=float)
        seen = values[~after]
        step, pace = report_interval(seen), recent_pace(seen)
        days = (dates[after] - last).dt.days.to_numpy()
        values[after] = seen[-1] + pace * step * (days // step)
        f[col] = values
        continued[col] = {"observed_until": str(last.date()), "pace_per_day": round(pace, 4)}
    return f, continued


def report_interval(cumulative: np.ndarray) -> int:
    """Days between a forward-filled cumulative count's updates (the median gap between the days
    it changes): ~30 for a monthly count, 7 for a weekly one; 1 for a daily count, also one that
    changes only every other day or so (a gap under `PERIODIC_DAYS`), and with fewer than two
    changes. A daily count's median gap went 1, 2, 1 as its history grew: each change of it
    redefined the whole 5G history, and the stored fits went cold."""
    changes = np.flatnonzero(np.diff(np.asarray(cumulative, dtype=float)) != 0)
    gap = int(np.median(np.diff(changes))) if len(changes) > 1 else 1
    return gap if gap >= PERIODIC_DAYS else 1
