"""The per-item engine: classify, backtest, fit and forecast a batch of series, with a fallback.

Pure: series in, Arrow tables out. The local path and the Ray tasks call exactly these functions.
"""

from __future__ import annotations

import json
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from .classify import CLASS_MODELS, adi_cv2, classify
from .frequency import future_dates
from .models import LEVELS, MODELS, Forecast, get_model
from .models.base import finalize, seasonal_error_scale
from .series import SeriesSet

FALLBACK = "naive"


@dataclass(frozen=True)
class LstmSpec:
    lookback: int = 28
    units: int = 32
    epochs: int = 8
    batch_size: int = 256
    max_windows_per_item: int = 200


@dataclass(frozen=True)
class EngineSpec:
    """What to fit: horizon, frequency, models (None = by demand class), backtest layout."""

    horizon: int
    freq: str = "D"
    models: tuple[str, ...] | None = None
    arima_engine: str = "statsforecast"
    backtest_windows: int = 3
    backtest_step: int = 0
    seed: int = 7
    lstm: LstmSpec = field(default_factory=LstmSpec)

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


def item_seed(seed: int, item_id: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(item_id.encode())) % (2**31)


def min_train(season_length: int) -> int:
    """Fewest observations a backtest window trains on."""
    return max(2 * season_length, 8)


def backtest_origins(n: int, horizon: int, windows: int, step: int, season_length: int) -> list[int]:
    """Window origins (index of the first forecast period), oldest first; each has `horizon` actuals."""
    origins = [n - horizon - k * step for k in range(windows)]
    return sorted(o for o in origins if o >= min_train(season_length))


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


class _Rows:
    """Column chunks (numpy arrays) for one output table."""

    def __init__(self, columns: list[str]):
        self.cols: dict[str, list[np.ndarray]] = {c: [] for c in columns}

    def add_forecast(self, fc: Forecast, **scalars: object) -> None:
        h = len(fc["mean"])
        for k, v in scalars.items():
            self.cols[k].append(np.asarray(v) if isinstance(v, np.ndarray) else np.repeat(np.asarray(v), h))
        self.cols["forecast"].append(fc["mean"])
        for lv in LEVELS:
            self.cols[f"lo_{lv}"].append(fc[f"lo-{lv}"])
            self.cols[f"hi_{lv}"].append(fc[f"hi-{lv}"])

    def table(self, schema: pa.Schema) -> pa.Table:
        arrays = []
        for f in schema:
            chunks = self.cols[f.name]
            if not chunks:
                arrays.append(pa.array([], type=f.type))
                continue
            v = np.concatenate(chunks)
            arrays.append(pa.array(v.astype(str) if pa.types.is_string(f.type) else v, type=f.type))
        return pa.Table.from_arrays(arrays, schema=schema)


FORECAST_COLS = ["item_id", "model", "date", "forecast"] + [f"{s}_{lv}" for lv in LEVELS for s in ("lo", "hi")]
BACKTEST_COLS = FORECAST_COLS[:2] + ["window", "origin"] + FORECAST_COLS[2:] + ["actual", "scale"]

FORECAST_TABLE = pa.schema(
    [("item_id", pa.string()), ("model", pa.string()), ("date", pa.date32()), ("forecast", pa.float64())]
    + [(f"{s}_{lv}", pa.float64()) for lv in LEVELS for s in ("lo", "hi")]
)
BACKTEST_TABLE = pa.schema(
    [("item_id", pa.string()), ("model", pa.string()), ("window", pa.int32()), ("origin", pa.date32()),
     ("date", pa.date32()), ("forecast", pa.float64())]
    + [(f"{s}_{lv}", pa.float64()) for lv in LEVELS for s in ("lo", "hi")]
    + [("actual", pa.float64()), ("scale", pa.float64())]
)
ITEMS_TABLE = pa.schema([
    ("item_id", pa.string()), ("demand_class", pa.string()), ("adi", pa.float64()), ("cv2", pa.float64()),
    ("n_obs", pa.int32()), ("zero_share", pa.float64()), ("models", pa.string()),
    ("failed_models", pa.string()), ("fallback", pa.bool_()), ("notes", pa.string()),
    ("params", pa.string()), ("cpu_seconds", pa.float64()),
])


def _fit(name: str, y: np.ndarray, dates: np.ndarray, future: np.ndarray, spec: EngineSpec,
         params: dict | None, seed: int, season_length: int) -> Forecast:
    mdef = MODELS[name]
    fc = mdef.forecast_fn()(y, spec.horizon, season_length, params, dates=dates, future=future,
                            freq=spec.freq, seed=seed, engine=spec.arima_engine)
    return finalize(fc, spec.horizon)


def forecast_item(item_id: str, dates: np.ndarray, y: np.ndarray, spec: EngineSpec,
                  fc_rows: _Rows, bt_rows: _Rows, item_rows: dict[str, list],
                  cached: dict | None = None) -> None:
    """Backtest and forecast one series with every model that suits it; naive is the fallback."""
    t0 = time.process_time()
    from .frequency import get_frequency

    freq = get_frequency(spec.freq)
    m = freq.season_length
    n = len(y)
    future = future_dates(dates[-1], spec.horizon, freq)
    cls = classify(y)
    adi, cv2 = adi_cv2(y)
    names, notes = models_for(cls, spec)
    stat_names = [nm for nm in names if not MODELS[nm].is_global]
    origins = backtest_origins(n, spec.horizon, spec.backtest_windows, spec.step, m)
    seed = item_seed(spec.seed, item_id)
    failed: list[str] = []
    fitted: list[str] = []
    chosen: dict[str, dict] = {}
    for name in stat_names:
        mdef = MODELS[name]
        try:
            params = (cached or {}).get(name)
            if params is None and mdef.search is not None:
                # choose orders/forms on the oldest training set only: no window sees its own future
                train_end = origins[0] if origins else n
                params = mdef.search_fn()(y[:train_end], m, engine=spec.arima_engine)
            for w, o in enumerate(origins):
                fc = _fit(name, y[:o], dates[:o], dates[o : o + spec.horizon], spec, params, seed, m)
                bt_rows.add_forecast(
                    fc, item_id=item_id, model=name, window=w, origin=dates[o],
                    date=dates[o : o + spec.horizon], actual=y[o : o + spec.horizon],
                    scale=seasonal_error_scale(y[:o], m),
                )
            fc = _fit(name, y, dates, future, spec, params, seed, m)
        except Exception as exc:  # one bad model never sinks the item
            failed.append(name)
            notes.append(f"{name} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            continue
        fc_rows.add_forecast(fc, item_id=item_id, model=name, date=future)
        fitted.append(name)
        if params:
            chosen[name] = params
    fallback = False
    if not fitted and FALLBACK not in failed:
        fc = _fit(FALLBACK, y, dates, future, spec, None, seed, m)
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
    item_rows["cpu_seconds"].append(time.process_time() - t0)


def _jsonable(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)


def forecast_batch(series: SeriesSet, indices: list[int] | np.ndarray, spec: EngineSpec,
                   cached: dict[str, dict] | None = None) -> BatchResult:
    """Run `forecast_item` over the selected series; the local path and every Ray task call this."""
    w0, c0 = time.perf_counter(), time.process_time()
    fc_rows, bt_rows = _Rows(FORECAST_COLS), _Rows(BACKTEST_COLS)
    item_rows: dict[str, list] = {n: [] for n in ITEMS_TABLE.names}
    for i in indices:
        item_id = str(series.item_ids[i])
        forecast_item(item_id, series.dates_of(i), series.values_of(i), spec, fc_rows, bt_rows, item_rows,
                      (cached or {}).get(item_id))
    return BatchResult(
        forecasts=fc_rows.table(FORECAST_TABLE),
        backtests=bt_rows.table(BACKTEST_TABLE),
        items=pa.table(item_rows, schema=ITEMS_TABLE),
        cpu_seconds=time.process_time() - c0,
        wall_seconds=time.perf_counter() - w0,
    )


def lstm_items(series: SeriesSet, spec: EngineSpec) -> list[int]:
    """Indices of the series the global LSTM forecasts (by class under auto, or all when asked for)."""
    if spec.freq not in MODELS["lstm"].freqs:
        return []
    if spec.models is not None:
        return list(range(len(series))) if "lstm" in spec.models else []
    return [i for i in range(len(series)) if "lstm" in CLASS_MODELS[classify(series.values_of(i))]]


def lstm_lookback(spec: EngineSpec) -> int:
    from .frequency import get_frequency

    m = get_frequency(spec.freq).season_length
    return spec.lstm.lookback if spec.freq == "D" else max(4, min(2 * m, 26))


def forecast_lstm(series: SeriesSet, indices: list[int], spec: EngineSpec, threads: int = 1) -> BatchResult:
    """Train the global LSTM once before the oldest backtest origin (backtest), once on all data
    (warm-started), and forecast every selected series. Called in-process or inside the Ray actor."""
    from .frequency import get_frequency
    from .models import lstm

    w0, c0 = time.perf_counter(), time.process_time()
    freq = get_frequency(spec.freq)
    m, h = freq.season_length, spec.horizon
    fc_rows, bt_rows = _Rows(FORECAST_COLS), _Rows(BACKTEST_COLS)
    kw = dict(lookback=lstm_lookback(spec), units=spec.lstm.units, epochs=spec.lstm.epochs,
              batch_size=spec.lstm.batch_size, max_windows_per_item=spec.lstm.max_windows_per_item,
              seed=spec.seed, threads=threads)
    ys = [series.values_of(i) for i in indices]
    ds = [series.dates_of(i) for i in indices]
    n_max = max((len(y) for y in ys), default=0)
    # origins count back from the common end, so they are the same dates for every series
    back = [h + k * spec.step for k in range(spec.backtest_windows)]
    back = [b for b in back if n_max - b >= min_train(m)]
    init = None
    if back:
        oldest = max(back)
        train_set = [y[: len(y) - oldest] for y in ys if len(y) - oldest >= kw["lookback"] + h]
        init = lstm.train(train_set, h, m, **kw)
        if init.weights:
            for b in sorted(back, reverse=True):
                w = back.index(b)
                window = len(back) - 1 - w
                sel = [j for j, y in enumerate(ys) if len(y) - b >= min_train(m)]
                fcs = lstm.predict(init, [ys[j][: len(ys[j]) - b] for j in sel])
                for j, fc in zip(sel, fcs):
                    o = len(ys[j]) - b
                    fc = finalize(fc, h)
                    bt_rows.add_forecast(
                        fc, item_id=str(series.item_ids[indices[j]]), model="lstm", window=window,
                        origin=ds[j][o], date=ds[j][o : o + h], actual=ys[j][o : o + h],
                        scale=seasonal_error_scale(ys[j][:o], m))
    epochs = max(2, spec.lstm.epochs // 2) if init is not None and init.weights else spec.lstm.epochs
    state = lstm.train(ys, h, m, **{**kw, "epochs": epochs}, init=init)
    if state.weights:
        for j, fc in enumerate(lstm.predict(state, ys)):
            fc_rows.add_forecast(finalize(fc, h), item_id=str(series.item_ids[indices[j]]), model="lstm",
                                 date=future_dates(ds[j][-1], h, freq))
    return BatchResult(
        forecasts=fc_rows.table(FORECAST_TABLE),
        backtests=bt_rows.table(BACKTEST_TABLE),
        items=pa.table({n: [] for n in ITEMS_TABLE.names}, schema=ITEMS_TABLE),
        cpu_seconds=time.process_time() - c0,
        wall_seconds=time.perf_counter() - w0,
    )
