"""Dynamic optimised Theta (statsforecast)."""

from __future__ import annotations

import numpy as np

from .base import Forecast, ModelError, refilter_backtest

NAME = "theta"
VERSION = "1"


def forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, **_: object
) -> Forecast:
    """Theta forecast with intervals; seasonal decomposition when two seasons are available."""
    return backtest(y, [len(y)], horizon, season_length)[0]


def backtest(
    y: np.ndarray,
    origins: list[int],
    horizon: int,
    season_length: int,
    params: dict | None = None,
    **_: object,
) -> list[Forecast]:
    """Forecasts from each origin (ascending): estimated once on y[:origins[0]], each later origin
    re-filters y[:o] with those parameters (no re-estimation)."""
    from statsforecast.models import DynamicOptimizedTheta

    y = np.asarray(y, dtype=float)
    y0 = y[: origins[0]]
    if len(y0) < 5:
        raise ModelError("series too short for Theta")
    m = season_length if len(y0) >= 2 * season_length + 2 else 1
    return refilter_backtest(DynamicOptimizedTheta(season_length=m), y, origins, horizon, "Theta")
