"""Exponential smoothing (statsforecast AutoETS): model form chosen once, then reused."""

from __future__ import annotations

import warnings

import numpy as np

from .base import STATE, Forecast, ModelError, floats, refilter_backtest, with_state
from .ets_class3 import patch

NAME = "ets"
VERSION = "3"  # 2: multiplicative-season intervals widen per step (ets_class3); 3: annual cycle
ANNUAL_CYCLE = True  # on daily data its season is the week: the engine takes the year's off first


def _too_short(n: int, form: str = "ZZZ", damped: bool | None = None) -> bool:
    """Whether statsforecast's ETS cannot estimate `form` on `n` periods: it refuses n <= its
    parameter count + 4 ("tiny datasets"); the count is 2 (alpha, level), +2 for a trend
    (beta, slope), +2 for a season (gamma, seasonal states), +1 when damped."""
    n_par = 2 + 2 * (form[1] in "AM") + 2 * (form[2] in "AM") + bool(damped)
    return n <= n_par + 4


def search(y: np.ndarray, season_length: int, **_: object) -> dict:
    """Pick the ETS form (error, trend, season, damped) on `y`. The estimated model comes along
    under ``fitted`` (not JSON: the engine takes it out) for callers that re-filter with it."""
    from statsforecast.models import AutoETS

    if _too_short(len(y)):
        raise ModelError("series too short for ETS")
    patch()  # the multiplicative forms' interval widths (ets_class3)

    m = season_length if len(y) >= 2 * season_length + 2 else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoETS(season_length=m).fit(np.asarray(y, dtype=float))
    comps = model.model_["components"]
    form = "".join(comps[:3])
    model.n_obs_ = len(y)  # its initial states belong to the first of these periods
    return {"model": form, "damped": bool(comps[3] == "D" or comps[3] is True), "m": m, "fitted": model}


def _form(y: np.ndarray, params: dict) -> tuple[int, str, bool | None]:
    """(season length, form, damped) for a fit on `y`: no season when it is shorter than two;
    multiplicative error or season become additive when `y` has zeros (a form chosen on a
    recent all-positive stretch cannot fit them)."""
    m = int(params["m"]) if len(y) >= 2 * int(params["m"]) + 2 else 1
    form = params["model"] if m > 1 else params["model"][:2] + "N"
    if len(y) and np.min(y) <= 0:
        form = form[0].replace("M", "A") + form[1] + form[2].replace("M", "A")
    return m, form, params.get("damped")


def _reusable(fitted: object, params: dict, m: int, form: str, end: int) -> tuple[object, int]:
    """(the search's model, the index it re-filters from) when the fit at hand keeps its season
    length and form and the model was fitted on the `n_obs_` periods before `end`; else (None, 0).
    ETS estimates its initial states: a re-filter must start where the search's data started, or
    the seasonal states would be out of phase."""
    n = getattr(fitted, "n_obs_", None)
    if fitted is None or n is None or n > end or m != int(params["m"]) or form != params["model"]:
        return None, 0
    return fitted, end - n


def forecast(
    y: np.ndarray,
    horizon: int,
    season_length: int,
    params: dict | None = None,
    fitted: object = None,
    **_: object,
) -> Forecast:
    """Fit the chosen ETS form on `y` and forecast with intervals. `fitted` (the search's model,
    estimated on the recent part of `y`) or `params["state"]` (the parameters an earlier run
    estimated and stored): `y` is re-filtered with them instead. The forecast carries the
    parameters it used under STATE."""
    from statsforecast.models import AutoETS

    patch()  # the multiplicative forms' interval widths (ets_class3)

    y = np.asarray(y, dtype=float)
    if len(y) < 4:
        raise ModelError("series too short for ETS")
    params = params or search(y, season_length)
    m, form, damped = _form(y, params)
    model, start = _restored(params.get(STATE), m, form, len(y))
    if model is None:
        model, start = _reusable(fitted or params.get("fitted"), params, m, form, len(y))
    if model is not None:
        fc = refilter_backtest(None, y, [len(y)], horizon, f"ETS({form})", model, start=start)[0]
        return with_state(fc, _state(model, start))
    if _too_short(len(y), form, damped):
        raise ModelError(f"series too short for ETS({form})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = AutoETS(season_length=m, model=form, damped=damped).fit(y)
            fc = model.predict(horizon, level=[80, 95])
        except Exception as exc:
            raise ModelError(f"ETS({form}) failed: {exc}") from None
    return with_state(fc, _state(model, 0))


def _state(model: object, start: int) -> dict:
    """An estimated ETS's parameters (JSON-able): form, smoothing parameters and initial states,
    and `start`, the period of the series those initial states belong to."""
    mod = model.model_  # type: ignore[attr-defined]
    return {
        "m": mod["m"],
        "components": mod["components"],
        "par": mod["par"],
        "n_params": mod["n_params"],
        "start": start,
    }


def rolled(params: dict, dropped: int) -> dict:
    """Stored params for a history that lost its `dropped` oldest periods (a rolling export
    window): the state's `start`, the period its initial states belong to, moves back by them.
    Once that falls before the new first period, it moves forward by whole seasons, so that the
    seasonal initial states keep their weekday (or month); without a season, to the first period.
    Unmoved, a warm weekly pattern came out `dropped` days out of phase (the Saturday peak on
    Tuesday)."""
    state = (params or {}).get(STATE)
    if not state or not dropped:
        return params
    start = int(state["start"]) - int(dropped)
    if start < 0:
        m = int(state["m"]) if str(state["components"])[2:3] not in ("", "N") else 1
        start = start % m if m > 1 else 0
    return {**params, STATE: {**state, "start": start}}


def _restored(state: dict | None, m: int, form: str, n: int) -> tuple[object, int]:
    """(a statsforecast AutoETS carrying stored parameters, the period its re-filter starts
    at); (None, 0) without a state or when the fit at hand needs another season or form (a
    form without season may be stored with season length 1)."""
    if not state or state["components"][:3] != form or int(state["start"]) >= n:
        return None, 0
    if form[2] != "N" and int(state["m"]) != m:
        return None, 0
    from statsforecast.models import AutoETS

    patch()  # the multiplicative forms' interval widths (ets_class3)

    model = AutoETS(season_length=m, model=form)
    model.model_ = {
        "m": int(state["m"]),
        "components": state["components"],
        "par": floats(state["par"]),
        "n_params": int(state["n_params"]),
        "fit": None,
    }
    return model, int(state["start"])


def backtest(
    y: np.ndarray,
    origins: list[int],
    horizon: int,
    season_length: int,
    params: dict | None = None,
    fitted: object = None,
    **_: object,
) -> list[Forecast]:
    """Forecasts from each origin (ascending): the form is estimated once on y[:origins[0]] (or
    `fitted`, the search's model, is used as it is), each origin re-filters y[:o] with those
    parameters (no re-estimation)."""
    from statsforecast.models import AutoETS

    patch()  # the multiplicative forms' interval widths (ets_class3)

    y = np.asarray(y, dtype=float)
    y0 = y[: origins[0]]
    if len(y0) < 4:
        raise ModelError("series too short for ETS")
    params = params or search(y0, season_length)
    m, form, damped = _form(y0, params)
    model = AutoETS(season_length=m, model=form, damped=damped)
    fitted, start = _reusable(fitted or params.get("fitted"), params, m, form, origins[0])
    if fitted is None and _too_short(len(y0), form, damped):
        raise ModelError(f"series too short for ETS({form})")
    return refilter_backtest(model, y, origins, horizon, f"ETS({form})", fitted, start=start)
