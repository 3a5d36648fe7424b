"""Dynamic optimised Theta (statsforecast)."""

from __future__ import annotations

import warnings

import numpy as np

from .base import Forecast, ModelError

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = DynamicOptimizedTheta(season_length=m).fit(y0)
            first = model.predict(horizon, level=[80, 95])
            return [first] + [model.forward(y[:o], horizon, level=[80, 95]) for o in origins[1:]]
        except Exception as exc:
            raise ModelError(f"Theta failed: {exc}") from None
