"""Seasonal ARIMA: order search once, then fixed-order fits; engines statsforecast, pmdarima, statsmodels.

With regressors (`x`: one row per observation, `x_future`: one row per forecast step) it is a
regression with seasonal ARIMA errors (statsforecast/pmdarima `X`, statsmodels `exog`).
"""

from __future__ import annotations

import warnings

import numpy as np

from .base import STATE, Forecast, ModelError, floats, normal_forecast, refilter_backtest, with_state

NAME = "arima"
VERSION = "2"  # 2: daily series less their annual cycle (models/annual.py)
ENGINES = ("statsforecast", "pmdarima", "statsmodels")
SUPPORTS_EXOG = True
ANNUAL_CYCLE = True  # on daily data its season is the week: the engine takes the year's off first


def usable_exog(
    x: np.ndarray | None, x_future: np.ndarray | None, n: int, horizon: int | None = None
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """(x, x_future, kept-column mask) with only the columns that vary on the training rows
    (constant ones are singular); (None, None, mask) when none is left or `x` is None.

    Checks that `x` has `n` rows and `x_future` `horizon` rows; raises ModelError otherwise.
    """
    if x is None:
        return None, None, np.zeros(0, bool)
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    if len(x) != n:
        raise ModelError(f"regressors have {len(x)} rows for {n} observations")
    if horizon is not None:
        if x_future is None:
            raise ModelError("regressors given without their future values")
        x_future = np.asarray(x_future, dtype=float).reshape(len(x_future), -1)
        if x_future.shape != (horizon, x.shape[1]):
            raise ModelError(f"future regressors have shape {x_future.shape}, need ({horizon}, {x.shape[1]})")
    if not np.all(np.isfinite(x)) or (x_future is not None and not np.all(np.isfinite(x_future))):
        raise ModelError("regressors have missing or infinite values")
    keep = np.ptp(x, axis=0) > 1e-9 if n else np.zeros(x.shape[1], bool)
    if not keep.any():
        return None, None, keep
    return x[:, keep], (x_future[:, keep] if x_future is not None else None), keep


def _m(y: np.ndarray, season_length: int) -> int:
    return season_length if season_length > 1 and len(y) >= 3 * season_length else 1


def regression_residuals(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Residuals of the least-squares fit of `y` on an intercept and the columns of `x`."""
    design = np.column_stack([np.ones(len(y)), x])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return y - design @ beta


def search(
    y: np.ndarray,
    season_length: int,
    engine: str = "statsforecast",
    x: np.ndarray | None = None,
    **_: object,
) -> dict:
    """Choose (p,d,q)(P,D,Q)m on `y`; the result is reused for backtest windows and reruns.
    Without regressors (statsforecast engine) the search's estimated model comes along under
    ``fitted`` (not JSON: the engine takes it out) so that callers can re-filter with it instead
    of estimating the chosen orders again.

    With regressors `x` the orders are chosen for the errors of the regression (the residuals
    of a least-squares fit of `y` on `x`): as good a choice for a regression with ARIMA errors as
    a joint search, at the cost of a plain search (a joint one takes 3-10x longer).
    """
    y = np.asarray(y, dtype=float)
    m = _m(y, season_length)
    x = usable_exog(x, None, len(y))[0]
    if x is not None:
        y = regression_residuals(y, x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if engine == "statsforecast":
            from statsforecast.models import AutoARIMA

            model = AutoARIMA(season_length=m, approximation=True, max_p=3, max_q=3, max_P=1, max_Q=1)
            model.fit(y)
            p, q, sp, sq, _, d, sd = model.model_["arma"]
            # drift (a trend after one difference) goes with the orders: without it the final
            # fit forecast a trending item flat while its backtests, with it, earned the weight
            drift = "drift" in model.model_["coef"]
            out = {"order": [p, d, q], "seasonal_order": [sp, sd, sq], "m": m, "drift": drift}
            return out if x is not None else {**out, "fitted": model}
        if engine == "pmdarima":
            import pmdarima as pm

            model = pm.auto_arima(y, seasonal=m > 1, m=m, suppress_warnings=True, error_action="ignore")
            diffs = model.order[1] + model.seasonal_order[1]
            drift = bool(model.with_intercept) and diffs == 1  # its "intercept" after one difference
            return {"order": list(model.order), "seasonal_order": list(model.seasonal_order[:3]), "m": m,
                    "drift": drift}
        if engine == "statsmodels":
            return {"order": [1, 0, 1], "seasonal_order": [1, 0, 0] if m > 1 else [0, 0, 0], "m": m}
    raise ModelError(f"unknown ARIMA engine {engine!r}")


def forecast(
    y: np.ndarray,
    horizon: int,
    season_length: int,
    params: dict | None = None,
    engine: str = "statsforecast",
    x: np.ndarray | None = None,
    x_future: np.ndarray | None = None,
    fitted: object = None,
    **_: object,
) -> Forecast:
    """Fit the given orders on `y` (searching first if `params` is empty) and forecast; with
    regressors `x` (len(y) rows) and their future values `x_future` (horizon rows). `fitted`
    (the search's model, estimated on the recent part of `y`): `y` is re-filtered with it, as it
    is with `params["state"]` (the parameters an earlier run estimated and stored). The forecast
    carries the parameters it used under STATE."""
    y = np.asarray(y, dtype=float)
    if len(y) < 8:
        raise ModelError("series too short for ARIMA")
    x, x_future, keep = usable_exog(x, x_future, len(y), horizon)
    params = params or search(y, season_length, engine=engine, x=x)
    if engine != "statsmodels" and (stored := _restored(params.get(STATE), keep)) is not None:
        xs = None if x is None else np.vstack([x, x_future])
        return with_state(
            refilter_backtest(None, y, [len(y)], horizon, "ARIMA", stored, xs)[0], params[STATE]
        )
    fitted = fitted or params.get("fitted")
    if fitted is not None and x is None and engine == "statsforecast":
        fc = refilter_backtest(None, y, [len(y)], horizon, "ARIMA", fitted)[0]
        return with_state(fc, _state(fitted, keep))
    order, sorder, m = _orders(y, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if engine == "statsmodels":
            from statsmodels.tsa.statespace.sarimax import SARIMAX

            res = SARIMAX(
                y,
                exog=x,
                order=order,
                seasonal_order=(*sorder, m) if m > 1 else (0, 0, 0, 0),
                trend="c" if order[1] == 0 else "n",
            ).fit(disp=False)
            fc = res.get_forecast(horizon, exog=x_future)
            return normal_forecast(fc.predicted_mean, np.sqrt(np.maximum(fc.var_pred_mean, 0)))
        failures = []
        for method in METHODS:  # CSS-ML's start from CSS can fail where ML alone does not
            try:
                model = _sf_arima(order, sorder, m, bool(params.get("drift")), method).fit(y, X=x)
                res = model.predict(horizon, X=x_future, level=[80, 95])
                break
            except Exception as exc:  # statsforecast raises bare ValueErrors on non-stationary fits
                failures.append(f"{method}: {exc}")
        else:
            raise ModelError(f"ARIMA{order}{sorder}[{m}] failed: {'; '.join(failures)}")
    return with_state(res, _state(model, keep))


def _state(model: object, keep: np.ndarray) -> dict:
    """An estimated statsforecast ARIMA's parameters (JSON-able): its orders, coefficients in
    their order, sigma^2 and the regressor columns (of those given) the coefficients belong to."""
    mod = model.model_  # type: ignore[attr-defined]
    coef = [[k, v] for k, v in mod["coef"].items()]
    return {"arma": list(mod["arma"]), "coef": coef, "sigma2": mod["sigma2"], "keep": list(keep)}


def _restored(state: dict | None, keep: np.ndarray) -> object | None:
    """A statsforecast ARIMA carrying stored parameters, ready to re-filter (`forward`); None
    without a state or when it was estimated on other regressor columns than `keep`.

    Drift (a trend after one difference) is the first regressor column, the time index 1..n of
    the series. statsforecast's `forward` builds the re-filtered series' column (1..its length)
    by a straight line through the fitted model's column against time: two points of it give
    that line exactly. The index's offset cancels in the difference, so a rolling window that
    lost its oldest days re-filters alike (both checked in tests/test_models.py against the
    estimated model's own `forward`)."""
    if not state or [bool(k) for k in state["keep"]] != [bool(k) for k in keep]:
        return None
    p, q, sp, sq, m, d, sd = (int(v) for v in state["arma"])
    model = _sf_arima((p, d, q), (sp, sd, sq), m)
    coef = dict(zip([k for k, _ in state["coef"]], floats([v for _, v in state["coef"]]), strict=True))
    k = int(np.sum(keep))
    xreg, x = (np.zeros((1, k)) if k else None), None
    if "drift" in coef:
        xreg, x = np.zeros((2, 1 + k)), np.zeros(2)
        xreg[:, 0] = (1.0, 2.0)
    model.model_ = {
        "arma": (p, q, sp, sq, m, d, sd),
        "coef": coef,
        "sigma2": float(state["sigma2"]),
        "xreg": xreg,
        "lambda": None,
        "x": x,
    }
    return model


def _orders(y: np.ndarray, params: dict) -> tuple[tuple, tuple, int]:
    """(order, seasonal order, season length) for a fit on `y`: no season when `y` is too short."""
    order, sorder, m = tuple(params["order"]), tuple(params["seasonal_order"]), int(params["m"])
    if m > 1 and len(y) < 2 * m + sum(order) + 2:
        sorder, m = (0, 0, 0), 1
    return order, sorder, m


METHODS = ("CSS-ML", "ML", "CSS")  # estimation methods tried in turn for a final fit


def _sf_arima(order: tuple, sorder: tuple, m: int, drift: bool = False, method: str = "CSS-ML"):
    from statsforecast.models import ARIMA

    return ARIMA(
        order=order,
        seasonal_order=sorder,
        season_length=m,
        include_mean=order[1] == 0 and sorder[1] == 0,
        include_drift=drift and order[1] + sorder[1] == 1,
        method=method,
    )


def backtest(
    y: np.ndarray,
    origins: list[int],
    horizon: int,
    season_length: int,
    params: dict | None = None,
    engine: str = "statsforecast",
    fitted: object = None,
    x: np.ndarray | None = None,
    x_future: list[np.ndarray | None] | None = None,
    **_: object,
) -> list[Forecast]:
    """Forecasts from each origin (ascending). statsforecast engine: the orders (and regression
    coefficients, with regressors `x`: row t for period t, at least origins[-1] + horizon rows)
    are estimated once on y[:origins[0]] (or `fitted`, the search's model, is used as it is) and
    each origin re-filters y[:o] with those coefficients (no re-estimation); the other engines
    refit at every origin. `x_future`: per origin, the rows its window sees instead of the
    realised x[o:o+horizon] (None: those)."""
    y = np.asarray(y, dtype=float)
    o0 = origins[0]
    futures = list(x_future) if x_future is not None else [None] * len(origins)
    if engine != "statsforecast":
        return [
            forecast(
                y[:o],
                horizon,
                season_length,
                params,
                engine=engine,
                **({} if x is None else {"x": x[:o], "x_future": x[o : o + horizon] if f is None else f}),
            )
            for o, f in zip(origins, futures, strict=True)
        ]
    y0 = y[:o0]
    if len(y0) < 8:
        raise ModelError("series too short for ARIMA")
    if x is not None:  # only the columns that vary on the oldest training set
        keep = usable_exog(x[:o0], None, o0)[2]
        x = np.asarray(x, dtype=float).reshape(len(x), -1)[:, keep] if keep.any() else None
        futures = [None if f is None or x is None else np.asarray(f, dtype=float)[:, keep] for f in futures]
        if x is not None and not np.all(np.isfinite(x[: origins[-1] + horizon])):
            raise ModelError("regressors have missing or infinite values")
    if not params:
        params = search(y0, season_length, engine=engine, x=None if x is None else x[:o0])
    fitted = None if x is not None else fitted or params.get("fitted")
    order, sorder, m = _orders(y0, params)
    if fitted is not None and m != params["m"]:
        fitted = None  # y0 too short for the season the search saw
    what = f"ARIMA{order}{sorder}[{m}]"
    model = _sf_arima(order, sorder, m, bool(params.get("drift")))
    return refilter_backtest(model, y, origins, horizon, what, fitted, x, x_future=futures)
