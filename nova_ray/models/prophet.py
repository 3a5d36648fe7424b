"""Prophet with weekly/yearly seasonality and Brazilian holidays; intervals from predictive samples.

Regressors (`x`, `x_future`, named by `exog_names`) enter as Prophet extra regressors
(`add_regressor`, additive, prior scale `REGRESSOR_PRIOR_SCALE`). With regressors the trend is
stiffer (`REGRESSOR_CHANGEPOINT_PRIOR`): the level's moves are theirs to explain. On daily data
each regressor is scaled by the item's weekday profile (`weekday_profile`), so that a factor moves
demand in proportion to the day's usual demand: little on a Sunday, most on a working day.
"""

from __future__ import annotations

import logging
from copy import deepcopy
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from .base import STATE, Forecast, ModelError, quantile_forecast, with_state

NAME = "prophet"
# 2: the fitted parameters stored and warm-started; 3: a stiffer trend with regressors; 4: daily
# regressors scaled by the weekday profile
VERSION = "4"
N_SAMPLES = 200
SUPPORTS_EXOG = True
REGRESSOR_PRIOR_SCALE = 10.0
REGRESSOR_MODE = "additive"
# Prophet's changepoint prior with regressors (its default, 0.05, without). With the default a
# changepoint took the level an exchange rate or the 5G pace had moved, and the forecast then ran
# on along that trend segment while the regressor, carried forward, stayed level: demo holdout
# (benchmarks/exog.py) with factors, driven items 0.731 -> 0.695 (fx 0.888 -> 0.825, 5G 0.528 ->
# 0.492), the others 0.956 -> 0.937. Without regressors the default stays: a stiff trend there
# lost the level moves it followed (driven items 0.740 -> 0.850).
REGRESSOR_CHANGEPOINT_PRIOR = 0.01
# Demand days per weekday at which the profile is half the weekday ratios and half 1 (shrinkage
# d / (d + WEEKDAY_SHRINK), d = the series' nonzero days / 7): a slow mover's few demand days say
# little about its week.
WEEKDAY_SHRINK = 10.0
SCALARS = ("k", "m", "sigma_obs")  # Prophet's fitted parameters: trend, offset, noise scale
VECTORS = ("delta", "beta")  # changepoint rate changes; seasonality, holiday and regressor weights


def _fitted_state(model: Any) -> dict[str, Any]:
    """The fitted parameters (MAP estimate), JSON-able: what a later fit starts its optimisation
    from (a warm start, as Prophet's docs update a model with new data)."""
    out: dict[str, Any] = {k: float(np.ravel(model.params[k])[0]) for k in SCALARS}
    out |= {k: np.ravel(model.params[k]).tolist() for k in VECTORS}
    return out


def _init(state: dict | None) -> dict[str, Any] | None:
    """A stored state as Prophet's `fit(init=...)` takes it; None without one. A parameter whose
    shape no longer fits the model (another number of holidays or regressors) is left to Prophet's
    own initialisation, which checks each shape."""
    if not state or any(k not in state for k in (*SCALARS, *VECTORS)):
        return None
    return {k: float(state[k]) for k in SCALARS} | {k: np.asarray(state[k], dtype=float) for k in VECTORS}


def weekday_profile(y: np.ndarray, dates: np.ndarray) -> np.ndarray:
    """Per weekday (Monday first) the series' mean on that weekday over its overall mean, shrunk
    towards 1 the fewer days with demand the series has; ones for a series without demand.

    Prophet's weekly seasonality and its regressors are additive, so a factor alone would move a
    Sunday's demand as much as a Monday's. Demand that is consumed on working days is moved in
    proportion instead (a storm's repairs, a roll-out's installations): a regressor multiplied by
    this profile lets the additive model express that interaction. Demo holdout
    (`benchmarks/exog.py`, last 30 days): Prophet with factors on the driven items 0.680 -> 0.650
    MASE."""
    y = np.asarray(y, dtype=float)
    dow = weekday(dates)
    total = float(y.mean()) if len(y) else 0.0
    if total <= 0:
        return np.ones(7)
    sums = np.bincount(dow, weights=y, minlength=7)
    days = np.bincount(dow, minlength=7)
    ratio = np.divide(sums, days * total, out=np.ones(7), where=days > 0)
    per_weekday = np.count_nonzero(y > 0) / 7
    return 1.0 + per_weekday / (per_weekday + WEEKDAY_SHRINK) * (ratio - 1.0)


def weekday(dates: np.ndarray) -> np.ndarray:
    """Monday = 0 .. Sunday = 6 of datetime64 `dates` (1970-01-01 was a Thursday)."""
    return ((np.asarray(dates, dtype="datetime64[D]").astype(np.int64) + 3) % 7).astype(np.intp)


def _quiet() -> None:
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logger = logging.getLogger(name)
        logger.disabled = True
        logger.propagate = False


def _as_arrays(d: dict[str, Any]) -> dict[str, Any]:
    return {k: np.asarray(v) if isinstance(v, list) else v for k, v in d.items()}


def _numpy_stan_data() -> None:
    """Hand cmdstanpy numpy arrays instead of Prophet's nested lists (once per process).

    Prophet's backend turns its data into lists, which cmdstanpy's JSON writer (stanio) then walks
    value by value. Arrays take stanio's vectorised path; the JSON is the same. With ujson (a
    dependency) writing a 3-year daily series' data (~65,000 values with holidays and regressors)
    takes 0.017 s instead of 0.20 s, against ~0.1 s of optimisation per fit.
    """
    from prophet.models import CmdStanPyBackend

    if getattr(CmdStanPyBackend.prepare_data, "nova_ray", False):
        return
    original = CmdStanPyBackend.prepare_data

    def prepare_data(init: dict[str, Any], data: dict[str, Any]) -> tuple[dict, dict]:
        inits, dat = original(init, data)
        return _as_arrays(inits), _as_arrays(dat)

    prepare_data.nova_ray = True  # type: ignore[attr-defined]
    prepare_data.original = original  # type: ignore[attr-defined]
    CmdStanPyBackend.prepare_data = staticmethod(prepare_data)


def _cached_country_holidays() -> None:
    """Build each country-holiday table once per process (Prophet rebuilds it from the `holidays`
    package at every fit, predict and sampling call: 12 times per item with three backtest
    windows). Same arguments, same table: each caller gets a copy. Likewise the country's holiday
    names, which `add_country_holidays` lists from 50 years of holidays at every model (0.013 s,
    a tenth of a warm-started fit)."""
    import prophet.forecaster as forecaster

    if getattr(forecaster.make_holidays_df, "nova_ray", False):
        return
    list_names = forecaster.get_holiday_names
    names = cache(lambda country: frozenset(list_names(country)))

    def get_holiday_names(country: str) -> set[str]:
        return set(names(country))

    get_holiday_names.original = list_names  # type: ignore[attr-defined]
    forecaster.get_holiday_names = get_holiday_names
    original = forecaster.make_holidays_df
    tables: dict[tuple, pd.DataFrame] = {}

    def make_holidays_df(year_list: list[int], country: str, *args: Any, **kw: Any) -> pd.DataFrame:
        key = (tuple(year_list), country, args, tuple(sorted(kw.items())))
        if key not in tables:
            tables[key] = original(year_list, country, *args, **kw)
        return tables[key].copy()

    make_holidays_df.nova_ray = True  # type: ignore[attr-defined]
    make_holidays_df.original = original  # type: ignore[attr-defined]
    forecaster.make_holidays_df = make_holidays_df


@cache
def _prophet_class() -> type:
    """Prophet, with the table of which feature columns form which component memoised.

    Prophet rebuilds that table with pandas group operations at every fit, predict and sampling
    call (~0.03 s each with holidays and five regressors, a third of a fit's own CPU); it depends
    only on the feature names, modes and the training's table, which form the key. Same output.
    """
    from prophet import Prophet

    class _Prophet(Prophet):
        _components: dict[tuple, tuple[pd.DataFrame, dict]] = {}

        def regressor_column_matrix(
            self, seasonal_features: pd.DataFrame, modes: dict
        ) -> tuple[pd.DataFrame, dict]:
            train = self.train_component_cols
            key = (
                tuple(seasonal_features.columns),
                tuple((m, tuple(v)) for m, v in sorted(modes.items())),
                None if self.train_holiday_names is None else tuple(self.train_holiday_names),
                tuple((r, p["mode"]) for r, p in self.extra_regressors.items()),
                self.holidays_mode,
                None if train is None else (tuple(train.columns), train.to_numpy().tobytes()),
            )
            if key not in self._components:
                cols, out = super().regressor_column_matrix(seasonal_features, deepcopy(modes))
                self._components[key] = (cols, out)
            cols, out = self._components[key]
            return cols.copy(), deepcopy(out)

    return _Prophet


def forecast(
    y: np.ndarray,
    horizon: int,
    season_length: int,
    params: dict | None = None,
    *,
    dates: np.ndarray | None = None,
    future: np.ndarray | None = None,
    freq: str = "D",
    seed: int = 0,
    x: np.ndarray | None = None,
    x_future: np.ndarray | None = None,
    exog_names: tuple[str, ...] | list[str] | None = None,
    **_: object,
) -> Forecast:
    """Fit Prophet on (dates, y) and forecast the `future` dates; regressors `x` (one row per date)
    and `x_future` (one row per future date) are added with add_regressor. `params[STATE]` (the
    parameters an earlier run estimated and stored): the fit starts from them (a warm start, about
    a quarter less optimisation on a 3-year daily series; the optimum is the same up to the
    optimiser's tolerance). The forecast carries the fitted parameters under STATE."""
    if dates is None or future is None:
        raise ModelError("Prophet needs dates")
    y = np.asarray(y, dtype=float)
    if len(y) < 2 * season_length or np.count_nonzero(y) < 3:
        raise ModelError("series too short or too sparse for Prophet")
    _quiet()
    _cached_country_holidays()
    params = dict(params or {})
    init = _init(params.pop(STATE, None))
    daily = freq == "D"
    span_years = (dates[-1] - dates[0]).astype("timedelta64[D]").astype(int) / 365.25
    model = _prophet_class()(
        weekly_seasonality=daily,
        daily_seasonality=False,
        yearly_seasonality=span_years >= 1.5,
        uncertainty_samples=N_SAMPLES,
        **params,
    )
    hist = pd.DataFrame({"ds": pd.to_datetime(dates), "y": y})
    fut = pd.DataFrame({"ds": pd.to_datetime(future)})
    if x is not None:
        from .arima import usable_exog

        width = np.asarray(x).reshape(len(x), -1).shape[1]
        names = list(exog_names or []) if len(exog_names or []) == width else [f"x{j}" for j in range(width)]
        x, x_future, keep = usable_exog(x, x_future, len(y), len(future))
        if x is not None and daily:
            profile = weekday_profile(y, dates)
            x = x * profile[weekday(dates)][:, None]
            x_future = x_future * profile[weekday(future)][:, None]
        if x is not None:
            if "changepoint_prior_scale" not in params:
                model.changepoint_prior_scale = REGRESSOR_CHANGEPOINT_PRIOR
            for j, name in enumerate(n for n, k in zip(names, keep, strict=True) if k):
                col = f"exog_{name}"  # never clashes with Prophet's own column names
                model.add_regressor(
                    col, prior_scale=REGRESSOR_PRIOR_SCALE, standardize=True, mode=REGRESSOR_MODE
                )
                hist[col] = x[:, j]
                fut[col] = x_future[:, j]
    if daily:  # after the regressors: each add_regressor would otherwise rebuild the holiday names
        model.add_country_holidays(country_name="BR")
    _numpy_stan_data()
    try:
        model.fit(hist, **({"init": init} if init else {}))
    except Exception as exc:
        raise ModelError(f"Prophet fit failed: {exc}") from None
    np.random.seed(seed % (2**32))
    model.uncertainty_samples = 0  # the mean needs no sampling; the samples below give the bands
    mean = model.predict(fut)["yhat"].to_numpy()
    model.uncertainty_samples = N_SAMPLES
    samples = model.predictive_samples(fut)["yhat"].T  # (samples, horizon)
    return with_state(quantile_forecast(np.maximum(samples, 0.0), mean=mean), _fitted_state(model))
