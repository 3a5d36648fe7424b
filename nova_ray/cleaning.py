"""Outlier capping of a training history before the per-item models fit it.

A one-off bulk consumption (a tower rebuilt after a storm, a stock transfer booked as demand) in
the last days of the history drags every level-tracking model up -- exponential smoothing moves its
level by alpha x the spike, seasonal naive repeats it every season -- and inflates the reorder point
for weeks. For smooth and erratic items nova-ray caps such values at the far-out fence of the
history (Tukey: Q3 + 3 x IQR of the non-zero values; of the last 56 periods when that is higher, so
that a level the item has moved to is not taken for outliers) before fitting; backtest actuals stay raw, so
the backtest measures what capping costs or gains. Intermittent and lumpy items are left alone:
their spikes are their demand, which Croston/TSB and the bootstrap treat as such.
"""

from __future__ import annotations

import numpy as np

FENCE_IQR = 3.0  # Tukey's far-out fence
MIN_NONZERO = 20  # fewer non-zero values: no fence (the quartiles would be noise)
CAPPED_CLASSES = ("smooth", "erratic")


RECENT = 56  # the latest periods whose own fence also counts: a level held lately is no outlier


def fence(y: np.ndarray, k: float = FENCE_IQR) -> float:
    """Q3 + k x IQR of the non-zero values of `y`, or of its last RECENT values when that is
    higher (with enough non-zero values there): a lasting step up (40 a day for the last four
    months after 10 before) was capped at the old level's fence, and every statistical model
    forecast 25; a one-off spike stays above both. +inf when `y` has too few non-zero values."""
    y = np.asarray(y, dtype=float)
    whole = _fence(y, k)
    recent = _fence(y[-RECENT:], k) if len(y) > RECENT else float("inf")
    return max(whole, recent) if np.isfinite(recent) else whole


def _fence(y: np.ndarray, k: float) -> float:
    nz = y[y > 0]
    if len(nz) < MIN_NONZERO:
        return float("inf")
    q1, q3 = np.quantile(nz, [0.25, 0.75])
    return float(q3 + k * (q3 - q1))


def cap(y: np.ndarray, limit: float) -> np.ndarray:
    """`y` with values above `limit` set to it (a copy only when something is capped)."""
    y = np.asarray(y, dtype=float)
    return np.minimum(y, limit) if np.isfinite(limit) and (y > limit).any() else y
