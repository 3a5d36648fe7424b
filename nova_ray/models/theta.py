"""Dynamic optimised Theta (statsforecast)."""

from __future__ import annotations

import numpy as np

from .base import STATE, Forecast, ModelError, refilter_backtest, with_state

NAME = "theta"
VERSION = "1"


def forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, **_: object
) -> Forecast:
    """Theta forecast with intervals; seasonal decomposition when two seasons are available.
    `params["state"]` (the parameters an earlier run estimated and stored): `y` is re-filtered
    with them. The forecast carries the parameters it used under STATE."""
    from statsforecast.models import DynamicOptimizedTheta

    y = np.asarray(y, dtype=float)
    if len(y) < 5:
        raise ModelError("series too short for Theta")
    m = _season(y, season_length)
    state = (params or {}).get(STATE)
    if state and int(state["m"]) == m and state["modeltype"] == "DOTM":
        model = DynamicOptimizedTheta(season_length=m)
        model.model_ = {"m": m, "modeltype": "DOTM", "par": dict(state["par"])}
        fc = refilter_backtest(None, y, [len(y)], horizon, "Theta", model)[0]
        return with_state(fc, state)
    model = DynamicOptimizedTheta(season_length=m)
    fc = refilter_backtest(model, y, [len(y)], horizon, "Theta")[0]
    mod = model.model_
    return with_state(fc, {"m": mod["m"], "modeltype": mod["modeltype"], "par": mod["par"]})


def _season(y: np.ndarray, season_length: int) -> int:
    return season_length if len(y) >= 2 * season_length + 2 else 1


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
    m = _season(y0, season_length)
    return refilter_backtest(DynamicOptimizedTheta(season_length=m), y, origins, horizon, "Theta")
