"""Seasonal naive: repeat the last season; intervals from the seasonal differences."""

from __future__ import annotations

import numpy as np

from .base import Forecast, ModelError, normal_forecast

NAME = "naive"
VERSION = "1"


def forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, **_: object
) -> Forecast:
    """Seasonal naive forecast (plain naive when the series is shorter than two seasons)."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        raise ModelError("empty series")
    m = season_length if len(y) >= 2 * season_length else 1
    last = y[-m:]
    steps = np.arange(horizon)
    mean = last[steps % m]
    resid = y[m:] - y[:-m] if len(y) > m else np.zeros(1)
    sigma1 = float(np.sqrt(np.mean(resid**2)))
    k = steps // m + 1
    return normal_forecast(mean, sigma1 * np.sqrt(k))
