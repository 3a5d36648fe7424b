"""Checks of a run's input that give warnings, not errors: what the run would otherwise do without
a word (stock-out dates counted from a stale export, items no backtest window fits)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from . import clock
from .config import Config
from .engine import EngineSpec
from .frequency import future_dates, get_frequency, period_days
from .windows import backtest_origins, min_train

PERIODS = {"D": "days", "W": "weeks", "M": "months", "Q": "quarters", "Y": "years"}


STALE_DAYS = 7  # days past a period's end before the history counts as out of date


def stale_history(cfg: Config, end: Any, run_date: date | None = None, last_day: Any = None) -> list[str]:
    """A warning when the history ended well before the run date: the stock snapshot is taken as of
    its last day, so stock-out days count from it (a stale export, not today). `end`: the series'
    last period; `last_day`: the last day of daily rows (which may fall inside a period left out as
    incomplete), None for per-period rows, whose last period's end counts and which get the period's
    length as slack (a month's total comes after the month). Not for the built-in demo, whose dates
    are fixed (its own warning says it is generated)."""
    if cfg.paths.is_demo_data():
        return []
    freq = cfg.forecast.freq
    first = future_dates(pd.Timestamp(end), 1, get_frequency(freq))[0]
    as_of = (first - np.timedelta64(1, "D")).astype(object)
    slack = int(period_days(np.array([first]), freq)[0]) + STALE_DAYS
    if last_day is not None:
        as_of, slack = max(as_of, pd.Timestamp(last_day).date()), 1 + STALE_DAYS
    today = run_date or clock.today()
    late = (today - as_of).days
    if late <= slack:
        return []
    return [f"{cfg.paths.data}: the history ends {as_of}, {late} days before the run date {today}: the stock "
            f"snapshot is taken as of {as_of} and stock-outs count from the day after; is the demand export "
            "up to date?"]


GAP_DAYS = 7  # days inside the history without a row for any item that look like a failed export


DENSE = 0.9  # share of a history's days with rows from which a stretch without any is a gap


def export_gaps(cfg: Config, dates: pd.Series) -> list[str]:
    """A warning naming the longest stretch of days inside a daily history without a row for any
    item (`GAP_DAYS` or more): every item reads it as zero demand, which is also what an export
    that failed for a week gives (a warehouse closed that long is the other reading). Only for an
    export with rows on `DENSE` of its days at least (an export that lists items only on the days
    they are used has such stretches by nature); the caller passes the whole file's dates."""
    days = np.sort(pd.unique(dates.to_numpy().astype("datetime64[D]")))
    if len(days) < 2 or len(days) < DENSE * ((days[-1] - days[0]).astype(np.int64) + 1):
        return []
    gaps = np.diff(days).astype(np.int64) - 1
    i = int(np.argmax(gaps))
    if gaps[i] < GAP_DAYS:
        return []
    others = int((gaps >= GAP_DAYS).sum()) - 1
    more = f"; {others} more such gap{'s' if others > 1 else ''}" if others else ""
    return [f"{cfg.paths.data}: no row for any item from {days[i] + 1} to {days[i + 1] - 1} ({gaps[i]} days"
            f"{more}): every item reads them as zero demand; a failed export?"]


def _named(mask: np.ndarray, ids: Any, shown: int = 5) -> str:
    """": A, B, C and 4 more" for the items of `mask` (`ids` in the order of `lengths`), or ""."""
    if ids is None:
        return ""
    names = [str(ids[i]) for i in np.flatnonzero(mask)]
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ": " + ", ".join(names[:shown]) + more


def unchanged_data(
    cfg: Config, dataset: str, run_date: date | None = None, history_end: date | None = None
) -> list[str]:
    """A warning when the results folder's latest run, of an earlier date, read the same demand
    data (its dataset id), or a history that ended on the same day (`history_end`: a rolling
    export window moves its first day and changes the file without adding one): no new rows
    since, a night whose export did not run (the stale-history warning waits a week, and
    stock-out dates stay anchored to the old end meanwhile). Not for the built-in demo, whose
    data never change."""
    from .io.errors import InputError
    from .io.results import read_pointer

    if cfg.paths.is_demo_data():
        return []
    try:
        ptr = read_pointer(cfg.paths.output)
    except InputError:  # a broken pointer: said elsewhere
        return []
    today = run_date or clock.today()
    if not ptr or str(ptr.get("run_date")) >= today.isoformat():
        return []
    if ptr.get("dataset_id") == dataset:
        return [f"{cfg.paths.data}: the same demand data as run {ptr['run_id']} of {ptr['run_date']} (no "
                "new rows since): is the demand export up to date?"]
    if history_end is not None and ptr.get("history_end") and str(history_end) <= str(ptr["history_end"]):
        return [f"{cfg.paths.data}: the history ends {history_end}; run {ptr['run_id']} of {ptr['run_date']} "
                f"had it up to {ptr['history_end']} (no new day since, though the file changed): is the "
                "demand export up to date?"]
    return []


def too_short_to_backtest(lengths: np.ndarray, spec: EngineSpec, ids: Any = None) -> list[str]:
    """A warning when items are too short for even the newest backtest window (its training part
    and its horizon): they get no metrics, equal ensemble weights and a safety stock from the
    history, which a run would otherwise do without a word (2 years of weekly data, horizon 8).
    `ids`: the items' codes in the order of `lengths`, a few of them named."""
    if spec.backtest_windows == 0 or not len(lengths):
        return []
    train = min_train(get_frequency(spec.freq).season_length)
    need = train + spec.horizon
    lengths = np.asarray(lengths)
    short = int((lengths < need).sum())
    unit = PERIODS.get(spec.freq, "periods")
    out = []
    if short:
        out.append(f"{short} of {len(lengths)} items have under {need} {unit} of history ({train} to train a "
                   f"backtest window, {spec.horizon} to test it): no backtest for them, so no metrics, equal "
                   "ensemble weights and safety stock from the history; a shorter --horizon or a longer "
                   f"history gives them one{_named(lengths < need, ids)}")
    m = get_frequency(spec.freq).season_length
    counts = np.array([len(backtest_origins(int(n), spec.horizon, spec.backtest_windows, spec.step, m))
                       for n in lengths])
    thin = (counts > 0) & (counts < spec.backtest_windows)
    few = int(thin.sum())
    if few:
        out.append(f"{few} of {len(lengths)} items have room for fewer than the {spec.backtest_windows} "
                   f"backtest windows asked for (as few as {int(counts[counts > 0].min())}; windows too "
                   "short to train the seasonal models are left out): their ensemble "
                   "weights and metrics rest on few errors (one window can give one model all the weight)"
                   f"{_named(thin, ids)}")
    return out


def horizon_problem(end: Any, horizon: int, freq: str) -> str | None:
    """Why `horizon` periods after the history's last day `end` cannot be forecast (None when they
    can): past 2262-04-11, the last day a table's dates hold (pandas' nanosecond stamps), a run
    crashed with a traceback after it had staged its checkpoints."""
    fq = get_frequency(freq)
    days = {"D": 1, "W": 7, "M": 31, "Q": 92, "Y": 366}[fq.code]  # at most, per period
    last = np.datetime64(pd.Timestamp(end).date(), "D") + np.timedelta64(horizon * days, "D")
    if last <= np.datetime64(pd.Timestamp.max.date(), "D"):
        return None
    return (f"--horizon {horizon} ({fq.code}) reaches past {pd.Timestamp.max:%Y-%m-%d}, the last date "
            "the tables can hold: give a shorter horizon")


def horizon_beyond_history(lengths: np.ndarray, spec: EngineSpec, ids: Any = None) -> list[str]:
    """A warning when items have less history than the horizon: their forecasts reach further
    ahead than they have data behind them (40 quarters ahead of 34: an ARIMA trend of 5x the
    history's largest value, bands a few units wide ten years out), which a run gave without a word."""
    lengths = np.asarray(lengths)
    over = int((lengths < spec.horizon).sum())
    if not over:
        return []
    unit = PERIODS.get(spec.freq, "periods")
    return [f"{over} of {len(lengths)} items have less history than the horizon of {spec.horizon} {unit} "
            f"(as little as {int(lengths.min())}): their forecasts reach further ahead than their data "
            "go back; treat the far periods with care, or use a shorter --horizon"
            f"{_named(lengths < spec.horizon, ids)}"]
