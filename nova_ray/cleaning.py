"""Outlier capping of a training history before the per-item models fit it.

A one-off bulk consumption (a tower rebuilt after a storm, a stock transfer booked as demand) in
the last days of the history drags every level-tracking model up -- exponential smoothing moves its
level by alpha x the spike, seasonal naive repeats it every season -- and inflates the reorder point
for weeks. For smooth and erratic items nova-ray caps such values at the far-out fence of the
history (Tukey: Q3 + 3 x IQR of the non-zero values; of the last 8 weeks when that is higher, or of
the last 6 periods where 8 weeks are fewer (months, quarters), so that a level the item has moved
to is not taken for outliers) before fitting; backtest actuals stay raw, so
the backtest measures what capping costs or gains. Intermittent and lumpy items are left alone:
their spikes are their demand, which Croston/TSB and the bootstrap treat as such.
"""

from __future__ import annotations

import numpy as np

from .frequency import get_frequency

FENCE_IQR = 3.0  # Tukey's far-out fence
MIN_NONZERO = 20  # fewer non-zero values: no fence (the quartiles would be noise)
CAPPED_CLASSES = ("smooth", "erratic")


RECENT_DAYS = 56  # the latest days whose own fence also counts: a level held lately is no outlier
MIN_RECENT = 6  # ... at least this many periods, with as many non-zero values


def recent_periods(freq: str = "D") -> int:
    """The latest periods whose fence also counts at frequency `freq`: 8 weeks' worth, at least
    MIN_RECENT (56 days, 8 weeks, 6 months, 6 quarters). 56 periods whatever the frequency were the
    whole of a monthly history: three months at a new level of 1200 were capped at 447."""
    per_year = get_frequency(freq).periods_per_year
    return max(MIN_RECENT, round(RECENT_DAYS * per_year / 365.25))


def fence(y: np.ndarray, k: float = FENCE_IQR, recent: int = RECENT_DAYS) -> float:
    """Q3 + k x IQR of the non-zero values of `y`, or of its last `recent` values when that is
    higher (with MIN_RECENT non-zero values there): a lasting step up (40 a day for the last four
    months after 10 before) was capped at the old level's fence, and every statistical model
    forecast 25; a one-off spike stays above both. +inf when `y` has too few non-zero values."""
    y = np.asarray(y, dtype=float)
    whole = _fence(y, k)
    late = _fence(y[-recent:], k, MIN_RECENT) if len(y) > recent else float("inf")
    return max(whole, late) if np.isfinite(late) else whole


def _fence(y: np.ndarray, k: float, min_nonzero: int = MIN_NONZERO) -> float:
    nz = y[y > 0]
    if len(nz) < min_nonzero:
        return float("inf")
    q1, q3 = np.quantile(nz, [0.25, 0.75])
    return float(q3 + k * (q3 - q1))


def cap(y: np.ndarray, limit: float) -> np.ndarray:
    """`y` with values above `limit` set to it (a copy only when something is capped)."""
    y = np.asarray(y, dtype=float)
    return np.minimum(y, limit) if np.isfinite(limit) and (y > limit).any() else y
