"""The per-item engine: classify, backtest, fit and forecast a batch of series, with a fallback.

Pure: series in, Arrow tables out. The local path and the Ray tasks call exactly these functions.

External factors: when the SeriesSet carries regressors (``SeriesSet.exog``), models that take
them (module attribute ``SUPPORTS_EXOG``: ARIMA, Prophet, the LSTM) get, for a fit at origin
``o``, the regressor rows before ``o`` and the ``horizon`` rows from ``o`` (:func:`exog_slices`).
A backtest window gets the rows its origin knew (``SeriesSet.exog_backtest``: calendar exact,
climate from climatology, economy/5G carried forward, as the final forecast's horizon rows; see
nova_ray/exog.py), or the realised rows where there are none (``backtest_exog = "realised"``:
what the factors explain when known, not how well they can be foreseen). A model whose fit with
regressors fails or blows up is refitted without them (noted in ``items.notes``); the feature set
is recorded in ``items.params``.

Annual cycle: a model whose season on daily data is the week (module attribute
``ANNUAL_CYCLE``: ARIMA, ETS) fits a series of two years or more less its annual cycle
(`models.annual`), which is added back to its backtests and forecast (`_annual_cycles`).
"""

from __future__ import annotations

import json
import resource
import time
import zlib
from dataclasses import dataclass, field, replace
from importlib import import_module
from typing import Any

import numpy as np
import pyarrow as pa

from .classify import CLASS_MODELS, adi_cv2, classify
from .cleaning import CAPPED_CLASSES, cap, fence, recent_periods
from .frequency import future_dates
from .models import LEVELS, MODELS, Forecast, get_model
from .models.annual import MIN_DAYS as MIN_ANNUAL_DAYS
from .models.annual import annual_cycle
from .models.base import STATE, ModelError, finalize, seasonal_error_scale
from .result_rows import BACKTEST_COLS, BACKTEST_TABLE, FORECAST_COLS, FORECAST_TABLE, ITEMS_TABLE, Rows
from .series import SeriesSet
from .windows import backtest_origins

FALLBACK = "naive"
BLOWUP = 3.0  # a forecast with regressors whose mean exceeds BLOWUP x (history max) + 1 is rejected
OBS_PER_REGRESSOR = 10  # per-item models use at most (oldest training length) // 10 regressors
_BANDS = ("mean", *(f"{s}-{lv}" for lv in LEVELS for s in ("lo", "hi")))  # a Forecast's values


@dataclass(frozen=True)
class LstmSpec:
    lookback: int = 28
    units: int = 32
    epochs: int = 8
    batch_size: int = 256
    max_windows_per_item: int = 200
    warm_epochs: int = 0
    max_windows: int = 100_000


@dataclass(frozen=True)
class EngineSpec:
    """What to fit: horizon, frequency, models (None = by demand class), backtest layout."""

    horizon: int
    freq: str = "D"
    models: tuple[str, ...] | None = None
    arima_engine: str = "statsforecast"
    backtest_windows: int = 3
    backtest_step: int = 0
    backtest_refit: str = "first"  # first: estimate at the oldest origin, re-filter later ones; all
    cap_outliers: bool = True  # smooth/erratic items: cap training values at the far-out fence
    search_window: int = 730  # most recent periods an order/form search sees (0: all)
    seed: int = 7
    lstm: LstmSpec = field(default_factory=LstmSpec)
    final_fit: bool = True  # False: backtests only (--only-metrics)
    use_exog: bool = True  # False: ignore SeriesSet.exog (the --no-exog path)
    annual_harmonics: int = 2  # daily series: the annual cycle's Fourier pairs (models/annual.py)

    @property
    def step(self) -> int:
        return self.backtest_step or self.horizon


@dataclass
class BatchResult:
    """What one batch produced; tables share the column names of the output schemas."""

    forecasts: pa.Table
    backtests: pa.Table
    items: pa.Table
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    worker: str = ""
    state: Any = None  # the LSTM batch: its trained LstmState, for the model store
    name: str = ""  # the checkpoint name of a result that is not a batch of items (the LSTM's parts)
    parts: tuple[str, ...] = ()  # the LSTM's last part: the names of the parts its run produced
    warm: bool = False  # the LSTM's last part: its state grew from the stored network
    # the LSTM's last part, trained cold: the network its backtest trained, and the last day that saw
    backtest_state: Any = None
    backtest_to: Any = None


def cpu_time() -> float:
    """CPU seconds of this process and of its finished child processes (Prophet's cmdstan runs
    as a child: process_time alone would not see that work)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def item_seed(seed: int, item_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31)


SEASON_AGAIN = "season_from_whole_history"  # params flag: the final fit's season was searched again


def models_for(demand_class: str, spec: EngineSpec) -> tuple[list[str], list[str]]:
    """(models to fit, notes on models skipped for this frequency)."""
    wanted = spec.models if spec.models is not None else CLASS_MODELS[demand_class]
    chosen, notes = [], []
    for name in wanted:
        if spec.freq not in get_model(name).freqs:
            notes.append(f"{name} skipped: frequency {spec.freq} not supported")
        else:
            chosen.append(name)
    return chosen, notes


def _flag(name: str, attr: str) -> bool:
    """Whether model `name`'s module sets `attr` true."""
    return bool(getattr(import_module(MODELS[name].module, "nova_ray.models"), attr, False))


def supports_exog(name: str) -> bool:
    """Whether model `name` takes regressors (its module sets ``SUPPORTS_EXOG = True``)."""
    return _flag(name, "SUPPORTS_EXOG")


def _annual(name: str) -> bool:
    """Whether model `name` gets the series less its annual cycle (``ANNUAL_CYCLE = True``)."""
    return _flag(name, "ANNUAL_CYCLE")


def _annual_cycles(
    names: list[str],
    y: np.ndarray,
    dates: np.ndarray,
    future: np.ndarray,
    origins: list[int],
    spec: EngineSpec,
    capped: bool,
) -> tuple[np.ndarray, np.ndarray] | None:
    """For a daily series whose models include one without an annual cycle of its own: that
    cycle per day of the history and the horizon, fitted on the oldest training set (what the
    search and the backtests may see) and on the whole history (the final fit); None when it
    does not apply (another frequency, `annual_harmonics` 0, under two years at the oldest
    origin, no such model). Capped items' cycles are fitted on the capped values."""
    if spec.freq != "D" or spec.annual_harmonics <= 0 or not any(_annual(nm) for nm in names):
        return None
    days = np.concatenate([dates, future])
    o0 = origins[0] if origins else len(y)
    if o0 < MIN_ANNUAL_DAYS:
        return None
    recent = recent_periods(spec.freq)

    def fitted_on(o: int) -> np.ndarray:
        train = cap(y[:o], fence(y[:o], recent=recent)) if capped else y[:o]
        return annual_cycle(days, train, spec.annual_harmonics)

    oldest = fitted_on(o0)
    return oldest, (fitted_on(len(y)) if o0 < len(y) else oldest)


def exog_slices(
    x: np.ndarray | None, origin: int, horizon: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """What a fit at `origin` may see: regressor rows before `origin` and the `horizon` rows from it.

    `x` is a series' regressor matrix (row t = period t of the series, rows after the history
    are the forecast horizon). Nothing from row ``origin + horizon`` on is ever returned.
    """
    if x is None:
        return None, None
    future = x[origin : origin + horizon]
    if len(future) != horizon:
        raise ValueError(f"regressors cover {len(future)} of the {horizon} periods from row {origin}")
    return x[:origin], future


def window_exog(
    x: np.ndarray | None, origin: int, horizon: int, known: np.ndarray | None
) -> np.ndarray | None:
    """The regressor rows of a backtest fit at `origin`: realised before it, then the `horizon` rows
    known at the origin (`known`), or the realised ones when `known` is None."""
    if x is None or known is None:
        return None if x is None else x[: origin + horizon]
    return np.concatenate([x[:origin], known[:horizon, : x.shape[1]]])


def _fit(
    name: str,
    y: np.ndarray,
    dates: np.ndarray,
    future: np.ndarray,
    spec: EngineSpec,
    params: dict | None,
    seed: int,
    season_length: int,
    x: np.ndarray | None = None,
    exog_names: tuple[str, ...] = (),
    fitted: object = None,
    shift: np.ndarray | None = None,
) -> tuple[Forecast, dict | None]:
    """The model's checked forecast and the estimated parameters it carried (STATE), if any;
    `shift` (one value per step: the annual cycle taken off `y`) is added back to it."""
    mdef = MODELS[name]
    kw: dict = {} if fitted is None else {"fitted": fitted}
    if x is not None:
        x_hist, x_future = exog_slices(x, len(y), spec.horizon)
        kw = {"x": x_hist, "x_future": x_future, "exog_names": exog_names}
    fc = mdef.forecast_fn()(
        y,
        spec.horizon,
        season_length,
        params,
        dates=dates,
        future=future,
        freq=spec.freq,
        seed=seed,
        engine=spec.arima_engine,
        **kw,
    )
    state = fc.pop(STATE, None)
    return finalize(_shifted(_checked(fc, y, x), shift), spec.horizon), state  # type: ignore[return-value]


def _shifted(fc: Forecast, shift: np.ndarray | None) -> Forecast:
    """`fc` with `shift` added to its mean and bounds (before they are clipped at zero)."""
    if shift is None:
        return fc
    return {k: np.asarray(v, dtype=float) + shift if k in _BANDS else v for k, v in fc.items()}


def _checked(out: Forecast, y: np.ndarray, x: np.ndarray | None) -> Forecast:
    """`out`, unless it was fitted with regressors and blew up (mean above BLOWUP x the max of `y`,
    the series the model was fitted on: before an annual cycle is added back to both)."""
    top = float(np.max(out["mean"])) if x is not None and len(y) else 0.0
    if top > BLOWUP * max(float(np.max(y)), 0.0) + 1.0:
        raise ModelError(f"forecast with regressors blew up (max {top:.3g})")
    return out


def _run_model(
    name: str,
    y: np.ndarray,
    dates: np.ndarray,
    future: np.ndarray,
    origins: list[int],
    spec: EngineSpec,
    params: dict | None,
    seed: int,
    m: int,
    x: np.ndarray | None,
    exog_names: tuple[str, ...],
    capped: bool = False,
    x_known: dict[int, np.ndarray] | None = None,
    cycles: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict | None, list[tuple[int, int, Forecast]], Forecast | None]:
    """Search (if needed), backtest every origin and fit the final model; with regressors `x`
    (a fit at origin o sees x[:o], then `x_known[o]`, the rows known at o, or else x[o:o+h]).
    `capped`: each fit sees its training values capped at the fence of that training set
    (nova_ray/cleaning.py). `cycles`: the annual cycle (per day of the history and the horizon)
    of the search and backtests, fitted on the oldest training set, and of the final fit, fitted
    on the whole history (`forecast_item`): taken off `y` before the model, added back after."""
    mdef = MODELS[name]
    n, h = len(y), spec.horizon
    known = {} if x is None else (x_known or {})
    y_all, cycle, final_cycle = y, None, None
    if cycles is not None:
        cycle, final_cycle = cycles
        y = y_all - cycle[:n]

    recent = recent_periods(spec.freq)

    def train(o: int) -> np.ndarray:
        return cap(y[:o], fence(y[:o], recent=recent)) if capped else y[:o]

    def part(c: np.ndarray | None, o: int) -> np.ndarray | None:
        return None if c is None else c[o : o + h]

    def search(end: int) -> dict:
        """The model's choice on the training set that ends at `end` (its last `search_window`)."""
        lo = max(0, end - spec.search_window) if spec.search_window else 0
        kw = {"x": x[lo:end]} if x is not None else {}
        return dict(mdef.search_fn()(train(end)[lo:], m, engine=spec.arima_engine, **kw))

    searched = params is None and mdef.search is not None
    if searched:
        # choose orders/forms on the oldest training set only: no window sees its own future
        params = search(origins[0] if origins else n)
        # the search's estimated model (when it has one): the backtest windows, or the final
        # fit when there is no backtest, re-filter with it instead of estimating again
        fitted = params.pop("fitted", None)
    else:
        fitted = None
    stored = (params or {}).get(STATE)  # a stored state saw the windows' future: final fit only
    if stored is not None:
        params = {k: v for k, v in (params or {}).items() if k != STATE}
    backtest = mdef.backtest_fn() if spec.backtest_refit == "first" else None
    if backtest is not None and len(origins) > 1:
        # estimated once at the oldest origin; later windows re-filter y[:o] with those parameters
        # (capped at the oldest training set's fence: a cap from the past only); with regressors
        # a window at origin o sees x[:o + h] only, as a refit would
        yb = cap(y, fence(y[: origins[0]], recent=recent)) if capped else y
        kw = {} if x is None else {"x": x[: origins[-1] + h]}
        if known:
            kw["x_future"] = [known.get(o) for o in origins]
        fcs = backtest(yb, origins, h, m, params, engine=spec.arima_engine, fitted=fitted, **kw)
        windows = [
            (w, o, finalize(_shifted(_checked(fc, yb[:o], x), part(cycle, o)), h))
            for w, (o, fc) in enumerate(zip(origins, fcs, strict=True))
        ]
    else:
        windows = [
            (
                w,
                o,
                _fit(
                    name,
                    train(o),
                    dates[:o],
                    dates[o : o + h],
                    spec,
                    params,
                    seed,
                    m,
                    window_exog(x, o, h, known.get(o)),
                    exog_names,
                    shift=part(cycle, o),
                )[0],
            )
            for w, o in enumerate(origins)
        ]
    if not spec.final_fit:
        return params, windows, None
    if searched and origins and m > 1 and params and params.get("m") == 1:
        # the oldest training set was too short for the season (5 years of monthly data, 3
        # windows of 12: 24 months); the whole history may not be: the final fit is not left
        # without the season its backtests could not see
        again = search(n)
        if int(again.get("m", 1)) > 1:
            again.pop("fitted", None)
            params = {**again, SEASON_AGAIN: True}
    final_fitted = fitted if not origins and x is None else None  # the search saw y's recent part
    final = params if stored is None else {**(params or {}), STATE: stored}
    if final_cycle is not None:  # the whole history's cycle (train() reads this y from here on);
        y = y_all - final_cycle[:n]  # the search's fitted model re-filters it
    fc, state = _fit(name, train(n), dates, future, spec, final, seed, m, x, exog_names, final_fitted,
                     part(final_cycle, n))
    if state is not None:  # stored with the item's choices: a rerun re-filters with it
        params = {**(params or {}), STATE: state}
    return params, windows, fc


def _global_covers(names: list[str], n: int, spec: EngineSpec) -> bool:
    """Whether a global model (the LSTM) of the item's set forecasts it for sure: the item has a
    training window of its own, so the network trains. Such an item needs no naive fallback
    (`--models lstm` flagged every item as fallen back and put naive next to the LSTM)."""
    if not any(MODELS[nm].is_global for nm in names):
        return False
    from .global_lstm import lstm_lookback

    return n >= lstm_lookback(spec) + spec.horizon


def forecast_item(
    item_id: str,
    dates: np.ndarray,
    y: np.ndarray,
    spec: EngineSpec,
    fc_rows: Rows,
    bt_rows: Rows,
    item_rows: dict[str, list],
    cached: dict | None = None,
    exog: np.ndarray | None = None,
    exog_names: tuple[str, ...] = (),
    exog_backtest: dict[int, np.ndarray] | None = None,
) -> None:
    """Backtest and forecast one series with every model that suits it; naive is the fallback.

    `exog`: the series' regressor matrix (row t = period t, then at least `horizon` future rows),
    used by the models that take regressors; None fits every model on the series alone.
    `exog_backtest`: rows known at the backtest origins, by window start before the end
    (``SeriesSet.exog_backtest``).
    """
    t0 = cpu_time()
    from .frequency import get_frequency

    freq = get_frequency(spec.freq)
    m = freq.season_length
    n = len(y)
    future = future_dates(dates[-1], spec.horizon, freq)
    cls = classify(y)
    adi, cv2 = adi_cv2(y)
    names, notes = models_for(cls, spec)
    if any(MODELS[nm].is_global for nm in names) and not _global_covers(names, n, spec):
        from .global_lstm import lstm_lookback

        names = [nm for nm in names if not MODELS[nm].is_global]  # global_lstm.lstm_items leaves it out
        notes.append(f"lstm skipped: {n} periods, fewer than its input window and horizon "
                     f"({lstm_lookback(spec)} + {spec.horizon})")
    stat_names = [nm for nm in names if not MODELS[nm].is_global]
    capped = spec.cap_outliers and cls in CAPPED_CLASSES  # the LSTM too (global_lstm._capped)
    if capped and (k := int((y > (limit := fence(y, recent=recent_periods(spec.freq)))).sum())):
        notes.append(f"{k} value(s) above {limit:.4g} capped before fitting")
    origins = backtest_origins(n, spec.horizon, spec.backtest_windows, spec.step, m)
    seed = item_seed(spec.seed, item_id)
    failed: list[str] = []
    fitted: list[str] = []
    chosen: dict[str, dict] = {}
    x = exog if spec.use_exog and exog is not None and exog.ndim == 2 and exog.shape[1] else None
    if x is not None and len(x) < n + spec.horizon:
        notes.append(f"regressors ignored: they cover {len(x) - n} of {spec.horizon} future periods")
        x = None
    if x is not None and not any(supports_exog(nm) for nm in stat_names):
        x = None  # none of the item's models takes regressors: nothing to count or say
    if x is not None:  # short series (monthly, quarterly) get fewer regressors, in the order given
        if cached is not None:  # a warm item (no backtest here): the regressors of its cold fit
            k = min(x.shape[1], len((cached.get("exog") or {}).get("features", [])))
        else:
            k = min(x.shape[1], (origins[0] if origins else n) // OBS_PER_REGRESSOR)
        if k < x.shape[1]:
            notes.append(f"{k} of {x.shape[1]} regressors: too few observations for more")
            x, exog_names = (x[:, :k], tuple(exog_names[:k])) if k else (None, ())
    x_known = {n - b: r[:, : x.shape[1]] for b, r in (exog_backtest or {}).items()} if x is not None else {}
    cycles = _annual_cycles(stat_names, y, dates, future, origins, spec, capped)
    with_exog: list[str] = []
    if cached is not None and cached.get("fitted_on"):  # its metrics and weights are that fit's
        notes.append(f"warm: model choices and backtests of the fit of {cached['fitted_on']}")
    for name in stat_names:
        cached_params = (cached or {}).get(name)
        if cached_params is not None and (cached or {}).get("dropped"):  # a rolling export window
            cached_params = MODELS[name].rolled(cached_params, int(cached["dropped"]))
        tries = [x, None] if x is not None and supports_exog(name) else [None]
        for xi in tries:
            try:
                params, windows, fc = _run_model(
                    name, y, dates, future, origins, spec, cached_params, seed, m, xi, exog_names,
                    capped, x_known, cycles if _annual(name) else None,
                )
                break
            except Exception as exc:  # one bad model never sinks the item
                msg = str(exc).splitlines()[0][:160] if str(exc) else ""
                if xi is not None:
                    notes.append(f"{name} with regressors failed ({type(exc).__name__}: {msg}); fit without")
                    continue
                failed.append(name)
                notes.append(f"{name} failed: {type(exc).__name__}: {msg}")
        else:
            continue
        if xi is not None:
            with_exog.append(name)
        for w, o, bfc in windows:  # recorded only for models that also produced their final forecast
            bt_rows.add_forecast(
                bfc,
                item_id=item_id,
                model=name,
                window=w,
                origin=dates[o],
                date=dates[o : o + spec.horizon],
                actual=y[o : o + spec.horizon],
                scale=seasonal_error_scale(y[:o], m),
            )
        if fc is not None:
            fc_rows.add_forecast(fc, item_id=item_id, model=name, date=future)
        if params and params.get(SEASON_AGAIN):
            notes.append(f"{name}: the season searched again on the whole history for the final fit "
                         "(the oldest backtest window was too short for it; its backtests have none)")
        fitted.append(name)
        if params:
            chosen[name] = params
    if with_exog:
        chosen["exog"] = {"features": list(exog_names), "models": with_exog}
        notes.append(f"regressors ({len(exog_names)}) used by {','.join(with_exog)}")
    fallback = False
    if not fitted and FALLBACK not in failed and spec.final_fit and not _global_covers(names, n, spec):
        fc = _fit(FALLBACK, y, dates, future, spec, None, seed, m)[0]
        fc_rows.add_forecast(fc, item_id=item_id, model=FALLBACK, date=future)
        fitted.append(FALLBACK)
        fallback = True
        notes.append("fell back to seasonal naive")
    item_rows["item_id"].append(item_id)
    item_rows["demand_class"].append(cls)
    item_rows["adi"].append(adi if np.isfinite(adi) else None)
    item_rows["cv2"].append(cv2 if np.isfinite(cv2) else None)
    item_rows["n_obs"].append(n)
    item_rows["zero_share"].append(float(np.mean(y == 0)) if n else 1.0)
    item_rows["models"].append(",".join(fitted))
    item_rows["failed_models"].append(",".join(failed))
    item_rows["fallback"].append(fallback)
    item_rows["notes"].append("; ".join(notes))
    item_rows["params"].append(json.dumps(chosen, sort_keys=True, default=_jsonable))
    item_rows["cpu_seconds"].append(cpu_time() - t0)


def why_failed(exc: BaseException) -> str:
    """An exception in one line: its type and the start of its message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


FIT_FAILED = "its fit failed ("  # in the notes of an item that got seasonal naive only (`failed_note`)


def failed_note(notes: str, why: str) -> str:
    """An item's notes, and that its fit failed (`why`) and it got seasonal naive only."""
    return f"{notes}; " * bool(notes) + f"{FIT_FAILED}{why}): seasonal naive only"


def _jsonable(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def forecast_batch(
    series: SeriesSet,
    indices: list[int] | np.ndarray,
    spec: EngineSpec,
    cached: dict[str, dict] | None = None,
) -> BatchResult:
    """Run `forecast_item` over the selected series; the local path and every Ray task call this."""
    w0, c0 = time.perf_counter(), cpu_time()
    fc_rows, bt_rows = Rows(FORECAST_COLS), Rows(BACKTEST_COLS)
    item_rows: dict[str, list] = {n: [] for n in ITEMS_TABLE.names}
    for i in indices:
        item_id = str(series.item_ids[i])
        dates, y = series.dates_of(i), series.values_of(i)
        marks = fc_rows.mark(), bt_rows.mark(), len(item_rows["item_id"])
        try:
            forecast_item(
                item_id,
                dates,
                y,
                spec,
                fc_rows,
                bt_rows,
                item_rows,
                (cached or {}).get(item_id),
                series.exog_of(i),
                series.exog_names,
                series.exog_backtest,
            )
        except Exception as exc:  # noqa: BLE001 - a step outside the models' own guard (a stored
            # choice that no longer fits, a library's edge case): the item's fault, not its batch's
            if spec.models == (FALLBACK,):
                raise  # seasonal naive alone failed: nothing simpler to fall back on
            fc_rows.truncate(marks[0])
            bt_rows.truncate(marks[1])
            for column in item_rows.values():
                del column[marks[2]:]
            naive = replace(spec, models=(FALLBACK,))
            forecast_item(item_id, dates, y, naive, fc_rows, bt_rows, item_rows)
            item_rows["notes"][-1] = failed_note(item_rows["notes"][-1], why_failed(exc))
            item_rows["fallback"][-1] = True
    return BatchResult(
        forecasts=fc_rows.table(FORECAST_TABLE),
        backtests=bt_rows.table(BACKTEST_TABLE),
        items=pa.table(item_rows, schema=ITEMS_TABLE),
        cpu_seconds=cpu_time() - c0,
        wall_seconds=time.perf_counter() - w0,
    )
