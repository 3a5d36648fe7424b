"""Shared model contract: numpy arrays in, a dict of arrays out (mean, lo-80, hi-80, lo-95, hi-95)."""

from __future__ import annotations

import warnings
from statistics import NormalDist
from typing import Any

import numpy as np

LEVELS: tuple[int, ...] = (80, 95)
Forecast = dict[str, np.ndarray]
# A Forecast may carry the fitted model's parameters under this key (a JSON-able dict): the engine
# takes it out and stores it with the item's choices; a later run (one more day of data) passes it
# back in `params["state"]` and the model re-filters the new data with it instead of estimating.
STATE = "state"


class ModelError(RuntimeError):
    """A model could not fit or forecast this series."""


def z_value(level: float) -> float:
    """Two-sided normal quantile for a central interval of `level` percent."""
    return NormalDist().inv_cdf(0.5 + level / 200.0)


def normal_forecast(mean: np.ndarray, sigma: np.ndarray, levels: tuple[int, ...] = LEVELS) -> Forecast:
    """Mean with symmetric normal intervals of per-step standard deviation `sigma`."""
    mean = np.asarray(mean, dtype=float)
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), mean.shape)
    out: Forecast = {"mean": mean}
    for lv in levels:
        z = z_value(lv)
        out[f"lo-{lv}"] = mean - z * sigma
        out[f"hi-{lv}"] = mean + z * sigma
    return out


def quantile_forecast(
    samples: np.ndarray, mean: np.ndarray | None = None, levels: tuple[int, ...] = LEVELS
) -> Forecast:
    """Intervals from sample paths (n_samples x horizon)."""
    out: Forecast = {"mean": samples.mean(axis=0) if mean is None else np.asarray(mean, dtype=float)}
    for lv in levels:
        a = (100 - lv) / 200.0
        out[f"lo-{lv}"] = np.quantile(samples, a, axis=0)
        out[f"hi-{lv}"] = np.quantile(samples, 1 - a, axis=0)
    return out


def finalize(fc: Forecast, horizon: int, levels: tuple[int, ...] = LEVELS) -> Forecast:
    """Check shape and finiteness, clip at zero (demand is never negative), order the bounds."""
    keys = ["mean"] + [f"{s}-{lv}" for lv in levels for s in ("lo", "hi")]
    out: Forecast = {}
    for k in keys:
        if k not in fc:
            raise ModelError(f"forecast lacks {k!r}")
        v = np.asarray(fc[k], dtype=float).reshape(-1)
        if v.shape[0] != horizon or not np.all(np.isfinite(v)):
            raise ModelError(f"forecast {k!r} has wrong length or non-finite values")
        out[k] = np.maximum(v, 0.0)
    for lv in levels:
        lo, hi = out[f"lo-{lv}"], out[f"hi-{lv}"]
        out[f"lo-{lv}"] = np.minimum(np.minimum(lo, hi), out["mean"])
        out[f"hi-{lv}"] = np.maximum(np.maximum(lo, hi), out["mean"])
    return out


def seasonal_error_scale(y: np.ndarray, season_length: int) -> float:
    """Mean absolute in-sample seasonal-naive error (the MASE denominator); falls back to lag 1."""
    m = season_length if len(y) > season_length else 1
    if len(y) <= m:
        return float("nan")
    return float(np.mean(np.abs(y[m:] - y[:-m])))


def plain(v: Any) -> Any:
    """`v` with numpy scalars and arrays as Python floats/ints/lists and NaN as None (JSON-able)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [plain(x) for x in v]
    if isinstance(v, np.bool_ | bool):
        return bool(v)
    if isinstance(v, np.integer | int):
        return int(v)
    if isinstance(v, np.floating | float):
        return None if not np.isfinite(v) else float(v)
    return v


def floats(v: list) -> np.ndarray:
    """A stored list of numbers (None for NaN) as a float array."""
    return np.array([np.nan if x is None else x for x in v], dtype=float)


def with_state(fc: Forecast, state: dict) -> Forecast:
    """`fc` carrying the model's JSON-able fitted parameters under STATE."""
    fc[STATE] = plain(state)  # type: ignore[assignment]
    return fc


def refilter_backtest(
    model: Any,
    y: np.ndarray,
    origins: list[int],
    horizon: int,
    what: str,
    fitted: Any = None,
    x: np.ndarray | None = None,
    start: int = 0,
    x_future: list[np.ndarray | None] | None = None,
) -> list[Forecast]:
    """Forecasts from each origin (ascending) with one estimation: `model` (an unfitted
    statsforecast model) is fitted on y[:origins[0]]; each later origin re-filters y[:o] with the
    fitted parameters (`forward`, no re-estimation). `fitted`: a model already estimated on (the
    recent part of) y[:origins[0]], e.g. by the order search: every origin is re-filtered with it
    and nothing is estimated again. `x`: regressors, row t for period t (at least
    origins[-1] + horizon rows); a window at origin o sees rows up to o + horizon only, or rows
    up to o and then its entry of `x_future` (one per origin; None: the realised rows).
    `start`: every re-filter begins at y[start] (a model whose estimated initial states belong to
    that period, such as ETS fitted on a recent stretch). Failures raise ModelError naming `what`."""
    levels = list(LEVELS)

    futures = dict(zip(origins, x_future or [], strict=False))

    def ahead(o: int) -> np.ndarray:
        f = futures.get(o)
        return x[o : o + horizon] if f is None else f

    def xs(o: int) -> dict[str, np.ndarray]:
        return {} if x is None else {"X": x[:o], "X_future": ahead(o)}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if fitted is not None:
                return [fitted.forward(y[start:o], horizon, level=levels, **xs(o)) for o in origins]
            o0 = origins[0]
            if x is None:
                model = model.fit(y[:o0])
                first = model.predict(horizon, level=levels)
            else:
                model = model.fit(y[:o0], X=x[:o0])
                first = model.predict(horizon, X=ahead(o0), level=levels)
            return [first] + [model.forward(y[:o], horizon, level=levels, **xs(o)) for o in origins[1:]]
        except Exception as exc:
            raise ModelError(f"{what} failed: {exc}") from None
