"""The global LSTM over many series: which items it forecasts, its backtest and final fit.

Called in-process (the local path), inside the Ray actor, or, when a stored network only
forecasts, in a Ray task (nova_ray/distributed/); produces the same tables as the per-item
engine (nova_ray/engine.py), whose row builders it shares.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from .classify import CLASS_MODELS, classify
from .cleaning import CAPPED_CLASSES, cap, fence, recent_periods
from .engine import BatchResult, EngineSpec, cpu_time, supports_exog
from .frequency import future_dates, get_frequency
from .memory import frozen_heap, release_memory
from .models import MODELS
from .models.base import finalize, seasonal_error_scale
from .models.lstm import LstmState, RowGrid
from .result_rows import BACKTEST_COLS, BACKTEST_TABLE, FORECAST_COLS, FORECAST_TABLE, ITEMS_TABLE, Rows
from .series import SeriesSet, period_index
from .windows import backtest_origins, min_train, window_backs


def lstm_items(series: SeriesSet, spec: EngineSpec) -> list[int]:
    """Indices of the series the global LSTM forecasts (by class under auto, or all when asked for)
    among those with a window of their own (`lstm_lookback` + horizon periods)."""
    if spec.freq not in MODELS["lstm"].freqs:
        return []
    need = lstm_lookback(spec) + spec.horizon  # a series without a window of its own: zeros padded in
    long = [i for i in range(len(series)) if len(series.values_of(i)) >= need]  # (3 values got a weight)
    if spec.models is not None:
        return long if "lstm" in spec.models else []
    return [i for i in long if "lstm" in CLASS_MODELS[classify(series.values_of(i))]]


def lstm_lookback(spec: EngineSpec) -> int:
    """The LSTM's input window: `[lstm] lookback` for days, two seasons (4 to 26) otherwise."""
    m = get_frequency(spec.freq).season_length
    return spec.lstm.lookback if spec.freq == "D" else max(4, min(2 * m, 26))


def _lstm_exog(series: SeriesSet, indices: list[int], spec: EngineSpec) -> RowGrid | None:
    """The regressor rows of the LSTM's series, one grid for all (they share the calendar), or
    None (no exog, switched off, or not covering the horizon)."""
    if not (spec.use_exog and series.exog is not None and series.exog_names and supports_exog("lstm")):
        return None
    if series.exog_horizon < spec.horizon:
        return None
    return RowGrid(series.exog, np.array([series.exog_offset(i) for i in indices], dtype=np.int64))


def _window_grid(xs: RowGrid, series: SeriesSet, b: int, h: int) -> RowGrid:
    """The rows of the backtest window that starts `b` periods before the end: realised before
    its origin, then the `h` rows known at the origin (the realised ones when none are recorded).
    The origin is the same period of every series (they all end at `end`)."""
    known = series.exog_backtest.get(b)
    if known is None:
        return xs
    origin = len(xs.rows) - series.exog_horizon - b
    return replace(xs, rows=np.concatenate([xs.rows[:origin], known[:h, : xs.k]]))


CALENDAR_ORIGIN = np.datetime64("1970-01-05")  # a Monday (weekly periods start on Mondays)
PART_ITEMS = 250  # LSTM items per part of its result (each part is checkpointed as it comes)
FINAL_PART = "lstm"  # the name of the LSTM's last part; its checkpoint marks the LSTM done


@dataclass(frozen=True)
class StoredLstm:
    """A stored network to go on with (`final`), and for the items fitted cold this run
    (`score`), the network their backtest windows are scored with: the one the stored network's
    cold training trained for its backtest (`backtest`), on the days up to `trained_to`. Windows
    whose first forecast day is later are out of its sample, so the items get backtests of the
    LSTM beside their models' fresh ones, and the stored network is not trained again for them."""

    final: LstmState
    backtest: LstmState | None = None
    trained_to: np.datetime64 | None = None
    score: frozenset[str] = frozenset()


def _unwrapped(init: Any) -> tuple[Any, StoredLstm | None]:
    """(the stored network or None, the StoredLstm it came in or None)."""
    return (init.final, init) if isinstance(init, StoredLstm) else (init, None)


def lstm_parts(
    series: SeriesSet,
    indices: list[int],
    spec: EngineSpec,
    threads: int = 1,
    init: Any = None,
) -> Iterator[BatchResult]:
    """Train the global LSTM once before the oldest backtest origin (backtest), once on all data
    (warm-started), and forecast every selected series. Called in-process or on Ray (actor or task).

    The result comes in parts of `PART_ITEMS` items (``lstm-bt-NNNN``: backtest rows, as soon
    as the backtest is done and before the final training; ``lstm-fc-NNNN``: forecasts), then
    the part named `FINAL_PART` with the trained state (`warm`: grown from `init`), the CPU and
    wall time and the names of the parts of this run. A part's name always holds the same items,
    so a part produced again (a retry) replaces its first copy, and one that this run did not
    produce (left by an earlier attempt that made more parts, e.g. a resumed run's LSTM is warm
    where the killed one was cold) is discarded by the driver.
    Nothing holds the whole result: at 2000 items it is ~14 MiB of rows.

    `init` (a stored LstmState, incremental run): no backtest; the stored network forecasts as it
    is (`warm_epochs` 0) or is fine-tuned on all data for `warm_epochs` epochs; a `StoredLstm`
    also scores the backtest windows of its `score` items with its backtest network. With
    regressors each window also sees the regressor rows of its forecast periods (in the backtest
    those known at the window's origin, ``SeriesSet.exog_backtest``, else the realised ones); if
    that fails the LSTM runs without them (its parts produced again)."""
    w0, c0 = time.perf_counter(), cpu_time()
    ys = [series.values_of(i) for i in indices]
    xs = _lstm_exog(series, indices, spec)
    names: list[str] = []
    try:
        state, warm, bt = yield from _recorded(_lstm_run(series, indices, spec, threads, ys, xs, init), names)
    except Exception:
        if xs is None:
            raise
        names.clear()
        run = _lstm_run(series, indices, spec, threads, ys, None, init)
        state, warm, bt = yield from _recorded(run, names)
    yield BatchResult(
        forecasts=FORECAST_TABLE.empty_table(),
        backtests=BACKTEST_TABLE.empty_table(),
        items=ITEMS_TABLE.empty_table(),
        cpu_seconds=cpu_time() - c0,
        wall_seconds=time.perf_counter() - w0,
        state=state,
        name=FINAL_PART,
        parts=tuple(names),
        warm=warm,
        backtest_state=bt[0] if bt else None,
        backtest_to=bt[1] if bt else None,
    )


def _fits(stored: Any, spec: EngineSpec, xs: RowGrid | None) -> bool:
    """Whether a stored network has the shape this run's would have (lookback, horizon, units,
    regressor columns) and its season phases on the calendar (version 2 on)."""
    shape = (lstm_lookback(spec), spec.horizon, spec.lstm.units, 0 if xs is None else xs.k, 1)
    return (stored.lookback, stored.horizon, stored.units, stored.n_exog, stored.calendar) == shape


def predicts_only(series: SeriesSet, indices: list[int], spec: EngineSpec, stored: Any) -> bool:
    """Whether `lstm_parts` with `stored` only forecasts with it as it is (numpy: no backtest, no
    training, no TensorFlow): a stored network of this run's shape with `warm_epochs` 0. That work
    needs no process of its own (the Ray path runs it as a task)."""
    ys = [series.values_of(i) for i in indices]
    stored, _, _ = _going_on(series, indices, spec, stored, ys, _lstm_exog(series, indices, spec))
    return stored is not None and bool(stored.weights) and spec.final_fit and spec.lstm.warm_epochs == 0


def _going_on(
    series: SeriesSet,
    indices: list[int],
    spec: EngineSpec,
    init: Any,
    ys: list[np.ndarray],
    xs: RowGrid | None,
) -> tuple[Any, StoredLstm | None, list[int]]:
    """The stored network the run goes on with (None: it trains cold), the `StoredLstm` it came in
    (None: none, or no items to score) and the windows its backtest network scores (`_scored_backs`).
    Cold: no stored network, one of another shape or with phases from each series' start (before
    version 2), or items to score without a backtest network of this shape, or with a window whose
    first forecast day that network saw (its scores would be in sample)."""
    stored, scorer = _unwrapped(init)
    if scorer is not None and not scorer.score:
        scorer = None
    if stored is None or not _fits(stored, spec, xs):
        return None, None, []
    if scorer is None:
        return stored, None, []
    bt = scorer.backtest
    if bt is None or not bt.weights or scorer.trained_to is None or not _fits(bt, spec, xs):
        return None, None, []
    scored = _scored_backs(series, indices, spec, ys, scorer, get_frequency(spec.freq).season_length)
    return (None, None, []) if scored is None else (stored, scorer, scored)


def is_part(name: str) -> bool:
    """Whether a checkpoint name is one of the LSTM's parts (not its last, `FINAL_PART`)."""
    return name.startswith(f"{FINAL_PART}-")


def _recorded(
    parts: Generator[BatchResult, None, Any], names: list[str]
) -> Generator[BatchResult, None, Any]:
    """`parts` passed on, their names appended to `names`; returns what `parts` returns."""
    while True:
        try:
            part = next(parts)
        except StopIteration as stop:
            return stop.value
        names.append(part.name)
        yield part


def forecast_lstm(
    series: SeriesSet,
    indices: list[int],
    spec: EngineSpec,
    threads: int = 1,
    init: Any = None,
) -> BatchResult:
    """`lstm_parts` as one result (all its rows at once)."""
    parts = list({p.name: p for p in lstm_parts(series, indices, spec, threads, init)}.values())
    last = parts[-1]
    last.forecasts = pa.concat_tables([p.forecasts for p in parts])
    last.backtests = pa.concat_tables([p.backtests for p in parts])
    return last


def _part(kind: str, k: int, table: pa.Table) -> BatchResult:
    """Part `k` of the LSTM's `kind` rows ("bt" backtests, "fc" forecasts)."""
    return BatchResult(
        forecasts=table if kind == "fc" else FORECAST_TABLE.empty_table(),
        backtests=table if kind == "bt" else BACKTEST_TABLE.empty_table(),
        items=ITEMS_TABLE.empty_table(),
        name=f"lstm-{kind}-{k:04d}",
    )


@contextmanager
def _trained_heap(threads: int) -> Iterator[None]:
    """A training in `frozen_heap`, TensorFlow imported first: its collections (ours after the
    training, Keras' own as it clears its session) skip TensorFlow's objects, 0.26 s each."""
    from .models.lstm import configure_tensorflow

    configure_tensorflow(threads)
    with frozen_heap():
        yield


def _lstm_run(
    series: SeriesSet,
    indices: list[int],
    spec: EngineSpec,
    threads: int,
    ys: list[np.ndarray],
    xs: RowGrid | None,
    stored: Any = None,
) -> Generator[BatchResult, None, Any]:
    """Yield the backtest parts, then the forecast parts (see `lstm_parts`); return the state,
    whether it came from the `stored` network (False when that was missing or of another shape),
    and, trained cold, the backtest's network with the last day it saw (else None)."""
    from .models import lstm

    freq = get_frequency(spec.freq)
    m, h = freq.season_length, spec.horizon
    kw = dict(
        lookback=lstm_lookback(spec),
        units=spec.lstm.units,
        epochs=spec.lstm.epochs,
        batch_size=spec.lstm.batch_size,
        max_windows_per_item=spec.lstm.max_windows_per_item,
        max_windows=spec.lstm.max_windows,
        seed=spec.seed,
        threads=threads,
    )
    n_max = max((len(y) for y in ys), default=0)
    # each series' first period counted from one common period: season phases on the calendar
    starts = period_index(CALENDAR_ORIGIN, series.starts[np.asarray(indices, dtype=np.int64)], spec.freq)
    stored, scorer, scored = _going_on(series, indices, spec, stored, ys, xs)
    # origins count back from the common end, so they are the same dates for every series
    back = window_backs(h, spec.backtest_windows, spec.step)
    back = [b for b in back if n_max - b >= min_train(m)] if stored is None else []
    # only windows some item scores (`backtest_origins`): the network trains before the oldest of
    # those (5 years of months scored from 36 and 48 months had it trained on 24)
    lengths = {len(y) for y in ys}
    back = [b for b in back if any(n - b in _own_origins(n, spec, m) for n in lengths)]
    init, bt = stored, None
    if back:
        oldest = max(back)
        seen = _capped(ys, spec, oldest)  # the backtest's inputs: capped at the oldest training set's fence
        tr = [j for j, y in enumerate(ys) if len(y) - oldest >= kw["lookback"] + h]
        train_set = [seen[j][: len(ys[j]) - oldest] for j in tr]
        # training windows read only rows inside their (cut) series: the shared grid as it is
        train_x = None if xs is None else replace(xs, offsets=xs.offsets[tr])
        with _trained_heap(threads):
            init = lstm.train(train_set, h, m, **kw, exog=train_x, starts=starts[tr])
            release_memory()  # what training's threads freed: the final training starts lower
        if init.weights:  # the backtest parts, before the final training (which holds none)
            yield from _backtest_parts(series, indices, spec, ys, xs, starts, init, back, seen)
            j = tr[0]  # every series ends on one day: the same last day seen for all
            bt = init, series.dates_of(indices[j])[len(ys[j]) - oldest - 1].astype("datetime64[D]").item()
        del seen
    elif scored and scorer is not None:
        sel = [j for j in range(len(indices)) if str(series.item_ids[indices[j]]) in scorer.score]
        mine = [ys[j] for j in sel]
        sub_x = None if xs is None else replace(xs, offsets=xs.offsets[sel])
        yield from _backtest_parts(series, [indices[j] for j in sel], spec, mine, sub_x, starts[sel],
                                   scorer.backtest, scored, _capped(mine, spec, max(scored)))
    ys = _capped(ys, spec)  # the final fit and the forecasts see the whole history's fence
    warm = stored is not None and bool(stored.weights)
    if warm:
        epochs = spec.lstm.warm_epochs
    elif init is not None and init.weights:
        epochs = max(2, spec.lstm.epochs // 2)
    else:
        epochs = spec.lstm.epochs
    if not spec.final_fit:
        state = None
    elif epochs == 0:  # the stored network forecasts the new data as it is (no TensorFlow)
        state = stored
    else:
        with _trained_heap(threads):
            state = lstm.train(ys, h, m, **{**kw, "epochs": epochs}, init=init, exog=xs, starts=starts)
            release_memory()
    if state is not None and state.weights:
        for k, span in enumerate(_spans(len(indices))):  # each part's items predicted on their own
            sel = list(span)
            sel_x = None if xs is None else replace(xs, offsets=xs.offsets[sel])
            fcs = lstm.predict(state, [ys[j] for j in sel], exog=sel_x, starts=starts[sel])
            fc_rows = Rows(FORECAST_COLS)
            for j, fc in zip(sel, fcs, strict=True):
                fc_rows.add_forecast(
                    finalize(fc, h),
                    item_id=str(series.item_ids[indices[j]]),
                    model="lstm",
                    date=future_dates(series.dates_of(indices[j])[-1], h, freq),
                )
            yield _part("fc", k, fc_rows.table(FORECAST_TABLE))
    return state, warm, bt


def _scored_backs(
    series: SeriesSet, indices: list[int], spec: EngineSpec, ys: list[np.ndarray], scorer: StoredLstm, m: int
) -> list[int] | None:
    """The windows (periods back from the end) of the `scorer.score` items that a cold run would
    score, or None when the stored backtest network saw the first forecast day of one of them
    (its scores would be in sample; left out, the items' windows would be numbered otherwise
    than their models')."""
    sel = [j for j in range(len(indices)) if str(series.item_ids[indices[j]]) in scorer.score]
    if not sel:
        return []
    ref = max(sel, key=lambda j: len(ys[j]))  # every series ends on one day: one date per window
    dates, n = series.dates_of(indices[ref]).astype("datetime64[D]"), len(ys[ref])
    lengths = {len(ys[j]) for j in sel}
    back = [b for b in window_backs(spec.horizon, spec.backtest_windows, spec.step) if n - b >= min_train(m)]
    back = [b for b in back if any(k - b in _own_origins(k, spec, m) for k in lengths)]
    return None if any(dates[n - b] <= scorer.trained_to for b in back) else back


def _backtest_parts(
    series: SeriesSet,
    indices: list[int],
    spec: EngineSpec,
    ys: list[np.ndarray],
    xs: RowGrid | None,
    starts: np.ndarray,
    state: Any,
    back: list[int],
    seen: list[np.ndarray],
) -> Iterator[BatchResult]:
    """The backtest rows of the network `state` (trained before the oldest origin), a part of
    `PART_ITEMS` items at a time: each part's items predicted and their rows built on their own,
    so that the actor never holds the rows of every item (~19 KB per item). Windows numbered per
    item, oldest first among its own origins, as the engine does (a short item's first window is
    its oldest valid origin, not the longest series'). `seen`: the series as the network's inputs
    see them (outliers capped), `ys` as they were (the actuals)."""
    from .models import lstm

    m, h = get_frequency(spec.freq).season_length, spec.horizon
    grids = {} if xs is None else {b: _window_grid(xs, series, b, h) for b in back}  # once per window

    for k, span in enumerate(_spans(len(indices))):
        rows = Rows(BACKTEST_COLS)
        done = dict.fromkeys(span, 0)
        for b in sorted(back, reverse=True):
            # an item's own origins, as the engine's windows (`backtest_origins`): they meet in the ensemble
            sel = [j for j in span if len(ys[j]) - b in _own_origins(len(ys[j]), spec, m)]
            if not sel:
                continue
            sel_x = replace(grids[b], offsets=xs.offsets[sel]) if xs is not None else None
            cut = [seen[j][: len(ys[j]) - b] for j in sel]
            for j, fc in zip(sel, lstm.predict(state, cut, exog=sel_x, starts=starts[sel]), strict=True):
                o = len(ys[j]) - b
                dates = series.dates_of(indices[j])  # per item when needed: not held for the run
                rows.add_forecast(
                    finalize(fc, h),
                    item_id=str(series.item_ids[indices[j]]),
                    model="lstm",
                    window=done[j],
                    origin=dates[o],
                    date=dates[o : o + h],
                    actual=ys[j][o : o + h],
                    scale=seasonal_error_scale(ys[j][:o], m),
                )
                done[j] += 1
        yield _part("bt", k, rows.table(BACKTEST_TABLE))


def _own_origins(n: int, spec: EngineSpec, m: int) -> set[int]:
    """The origins of a series of `n` periods that the engine backtests (its windows, per item)."""
    return set(backtest_origins(n, spec.horizon, spec.backtest_windows, spec.step, m))


def _capped(ys: list[np.ndarray], spec: EngineSpec, back: int = 0) -> list[np.ndarray]:
    """The series as the LSTM sees them: a smooth or erratic series' values above its outlier fence
    (that of its first len - `back` values) capped, as the statistical models' training values are
    (nova_ray/cleaning.py; a copy only where something is capped). It saw raw values: one day of
    5000 for an item of ~10 a day gave an LSTM forecast of ~70 a day and doubled the ensemble."""
    if not spec.cap_outliers:
        return ys
    recent = recent_periods(spec.freq)
    out = []
    for y in ys:
        fit = y[: len(y) - back] if back else y
        out.append(cap(y, fence(fit, recent=recent)) if classify(y) in CAPPED_CLASSES else y)
    return out


def _spans(n: int) -> Iterator[range]:
    """Positions 0..n-1, `PART_ITEMS` at a time: the items of each part."""
    for k in range(0, n, PART_ITEMS):
        yield range(k, min(k + PART_ITEMS, n))
