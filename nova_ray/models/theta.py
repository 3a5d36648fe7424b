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
    from statsforecast.models import DynamicOptimizedTheta

    y = np.asarray(y, dtype=float)
    if len(y) < 5:
        raise ModelError("series too short for Theta")
    m = season_length if len(y) >= 2 * season_length + 2 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return DynamicOptimizedTheta(season_length=m).forecast(y=y, h=horizon, level=[80, 95])
        except Exception as exc:
            raise ModelError(f"Theta failed: {exc}") from None
