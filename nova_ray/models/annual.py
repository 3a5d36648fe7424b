"""The annual cycle of a daily series as least-squares Fourier terms.

A model whose own season is the week (ARIMA and ETS on daily data, m = 7) has no annual cycle:
the engine takes this cycle off the series before such a model and adds it back to its forecasts
(models that set ``ANNUAL_CYCLE = True``; `nova_ray.engine`). The cycle is a fixed shape,
estimated once per fit by ordinary least squares, which keeps the model's own fast path (ARIMA
re-filters the search's fitted model only without regressors).
"""

from __future__ import annotations

import numpy as np

MIN_DAYS = 730  # observed days to fit an annual cycle on: two years, or the trend takes its place
YEAR_DAYS = 365.25


def annual_cycle(days: np.ndarray, y: np.ndarray, harmonics: int) -> np.ndarray:
    """Per day of `days` (datetime64, the first ``len(y)`` of them observed as `y`), the annual
    cycle of `harmonics` Fourier pairs fitted with a mean to `y` by least squares, less that
    mean: what to take off the series before the model and add to its forecasts. Zeros with
    fewer than `MIN_DAYS` observations or no harmonics."""
    t = np.asarray(days, dtype="datetime64[D]").astype(np.int64).astype(float)
    if harmonics <= 0 or len(y) < MIN_DAYS:
        return np.zeros(len(t))
    angle = 2 * np.pi * t / YEAR_DAYS
    terms = np.column_stack([f(k * angle) for k in range(1, harmonics + 1) for f in (np.sin, np.cos)])
    obs = terms[: len(y)]
    design = np.column_stack([np.ones(len(y)), obs])
    coef, *_ = np.linalg.lstsq(design, np.asarray(y, dtype=float), rcond=None)
    return terms @ coef[1:] - float(obs.mean(axis=0) @ coef[1:])
