"""Exponential smoothing (statsforecast AutoETS): model form chosen once, then reused."""

from __future__ import annotations

import warnings

import numpy as np

from .base import Forecast, ModelError, refilter_backtest

NAME = "ets"
VERSION = "1"


def search(y: np.ndarray, season_length: int, **_: object) -> dict:
    """Pick the ETS form (error, trend, season, damped) on `y`."""
    from statsforecast.models import AutoETS

    m = season_length if len(y) >= 2 * season_length + 2 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoETS(season_length=m).fit(np.asarray(y, dtype=float))
    comps = model.model_["components"]
    return {"model": "".join(comps[:3]), "damped": bool(comps[3] == "D" or comps[3] is True), "m": m}


def _form(y: np.ndarray, params: dict) -> tuple[int, str, bool | None]:
    """(season length, form, damped) for a fit on `y`: no season when it is shorter than two."""
    m = int(params["m"]) if len(y) >= 2 * int(params["m"]) + 2 else 1
    return m, params["model"] if m > 1 else params["model"][:2] + "N", params.get("damped")


def forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, **_: object
) -> Forecast:
    """Fit the chosen ETS form on `y` and forecast with intervals."""
    from statsforecast.models import AutoETS

    y = np.asarray(y, dtype=float)
    if len(y) < 4:
        raise ModelError("series too short for ETS")
    m, form, damped = _form(y, params or search(y, season_length))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = AutoETS(season_length=m, model=form, damped=damped)
            return model.forecast(y=y, h=horizon, level=[80, 95])
        except Exception as exc:
            raise ModelError(f"ETS({form}) failed: {exc}") from None


def backtest(
    y: np.ndarray,
    origins: list[int],
    horizon: int,
    season_length: int,
    params: dict | None = None,
    **_: object,
) -> list[Forecast]:
    """Forecasts from each origin (ascending): the form is estimated once on y[:origins[0]], each
    later origin re-filters y[:o] with those parameters (no re-estimation)."""
    from statsforecast.models import AutoETS

    y = np.asarray(y, dtype=float)
    y0 = y[: origins[0]]
    if len(y0) < 4:
        raise ModelError("series too short for ETS")
    m, form, damped = _form(y0, params or search(y0, season_length))
    model = AutoETS(season_length=m, model=form, damped=damped)
    return refilter_backtest(model, y, origins, horizon, f"ETS({form})")
