"""A run's validated inputs: the engine's spec from the config, the demand history (read,
checked, cut at a backfill's date), its series with the external factors, the stock snapshot."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import polars as pl

from . import clock
from .config import Config, ConfigError, Forecast
from .engine import EngineSpec, LstmSpec
from .etl import EtlError
from .exog import for_run as exog_for_run
from .io.demand import dataset_id, lone_first_rows, read_demand, select_items, stopped_items
from .io.errors import InputError
from .io.results import read_pointer
from .io.stock import check_matches, read_stock, resolve_stock_path, unknown_items
from .models import parse_models
from .series import SeriesSet, build_series, complete_end, complete_start
from .windows import window_backs


def engine_spec(cfg: Config, final_fit: bool = True) -> EngineSpec:
    f = cfg.forecast
    return EngineSpec(
        final_fit=final_fit,
        horizon=f.horizon,
        freq=f.freq,
        models=parse_models(f.models),
        arima_engine=f.arima_engine,
        backtest_windows=f.backtest_windows,
        backtest_step=f.backtest_step,
        backtest_refit=f.backtest_refit,
        search_window=f.search_window,
        annual_harmonics=f.annual_harmonics,
        cap_outliers=f.cap_outliers,
        seed=f.seed,
        use_exog=f.exog,
        lstm=LstmSpec(
            cfg.lstm.lookback,
            cfg.lstm.units,
            cfg.lstm.epochs,
            cfg.lstm.batch_size,
            cfg.lstm.max_windows_per_item,
            cfg.lstm.warm_epochs,
            cfg.lstm.max_windows,
        ),
    )


class Demand(NamedTuple):
    """Validated demand rows of the selected items, the day every series ends on, notes, and the
    day every series starts on at the latest (`[forecast] series_start = "file"`: the file's first
    date; None: each item's first row)."""

    rows: pd.DataFrame
    end: pd.Timestamp
    notes: list[str]
    start: pd.Timestamp | None = None
    begin: pd.Timestamp | None = None  # rows before it (an incomplete first period) left out of the series


def load_demand(cfg: Config, items: list[str] | None, until: date | None = None) -> Demand:
    """Validated demand for the selected items. The series end on the file's last date, also when
    `items` picks a few (an item without rows lately has zero demand up to it, as in a run over
    every item), or before the period it falls in when that period is incomplete (`complete_end`).
    `until` (the daily job's run date): rows after it are left out, with a note (a backfill
    forecasts from the history up to its date, not from the whole file); rows dated today or
    later, a day still in progress, are left out with a note (`_before_today`)."""
    notes: list[str] = []
    demand = read_demand(cfg.paths.data, notes, cfg.paths.columns)
    if until is not None and until < clock.today():
        demand = _before(demand, until, cfg.paths.data, notes)
    else:
        demand = _before_today(demand, cfg.paths.data, notes)
    end, left_out = complete_end(demand["date"], cfg.forecast.freq)
    begin = complete_start(demand["date"], cfg.forecast.freq)  # the rows stay (the dataset's id)
    first, last = demand["date"].min(), demand["date"].max()  # the file's, before `items` picks some
    if begin is not None:
        notes.append(f"{cfg.paths.data}: the data start on {first:%Y-%m-%d}, inside the period before "
                     f"{begin:%Y-%m-%d}: that incomplete period is left out")
    if left_out is not None:
        notes.append(
            f"{cfg.paths.data}: the data end on {demand['date'].max():%Y-%m-%d}, inside the period from "
            f"{left_out:%Y-%m-%d}: that incomplete period is left out, the forecast starts with it"
        )
    demand = select_items(demand, items)
    if begin is not None:
        notes += _only_before(demand, begin)
    if left_out is not None:  # items whose rows all fall in it would vanish without a word
        item_first = demand.groupby("item_id", observed=True)["date"].min()
        new = sorted(str(i) for i in item_first.index[item_first >= left_out])
        if new:
            shown = ", ".join(new[:10]) + (f" and {len(new) - 10} more" if len(new) > 10 else "")
            notes.append(f"{len(new)} item(s) have rows only in that incomplete period: no forecast for them "
                         f"until it is complete: {shown}")
    notes += lone_first_rows(demand, cfg.paths.data) + stopped_items(demand, cfg.paths.data, last)
    if cfg.forecast.series_start == "file":
        start = pd.Timestamp(first) if begin is None else max(pd.Timestamp(first), begin)
    else:
        start = None
    return Demand(demand, end, notes, start, begin)


def _only_before(demand: pd.DataFrame, begin: pd.Timestamp) -> list[str]:
    """A note naming the items whose rows all fall before `begin` (`complete_start`): they would
    vanish without a word."""
    early = (demand["date"] < begin).to_numpy()
    if not early.any():
        return []
    ids = demand["item_id"]  # each side's distinct codes: not a set of every row's
    gone = sorted(set(map(str, pd.unique(ids[early]))) - set(map(str, pd.unique(ids[~early]))))
    if not gone:
        return []
    shown = ", ".join(gone[:10]) + (f" and {len(gone) - 10} more" if len(gone) > 10 else "")
    return [f"{len(gone)} item(s) have rows only in that incomplete first period: no forecast for "
            f"them: {shown}"]


def _before(demand: pd.DataFrame, until: date, path: str, notes: list[str]) -> pd.DataFrame:
    """The rows dated up to `until`, and a note when there were later ones; none is an InputError."""
    return _kept(demand, (demand["date"] > pd.Timestamp(until)).to_numpy(), notes,
                 f"{path}: no history up to the run date {until}",
                 f"{path}: the history runs to {demand['date'].max():%Y-%m-%d}, past the run date "
                 f"{until}: its later rows are left out (a backfill forecasts from the history up to "
                 "its date)")


def _before_today(demand: pd.DataFrame, path: str, notes: list[str]) -> pd.DataFrame:
    """The rows dated before today (`clock.today`), and a note when there were others: today's
    demand so far is not the day's (taken for it, it would read as a slow day, and tomorrow's
    export, with the whole day, as a history that changed: every item fitted cold again)."""
    today = clock.today()
    late = (demand["date"] >= pd.Timestamp(today)).to_numpy()
    return _kept(demand, late, notes, f"{path}: no history before today {today}, a day still in progress",
                 f"{path}: {int(late.sum())} row(s) dated today {today} or later, a day still in progress, "
                 "are left out: the forecast starts with it")


def _kept(demand: pd.DataFrame, late: np.ndarray, notes: list[str], none_left: str,
          note: str) -> pd.DataFrame:
    """The rows not `late`, with `note` when some were (`none_left`, an InputError, when all were);
    items (sites, families) with late rows only are gone from the categories."""
    if late.all():
        raise InputError(f"{none_left} (the file starts {demand['date'].min():%Y-%m-%d})")
    if not late.any():
        return demand
    notes.append(note)
    kept = demand[~late].reset_index(drop=True)
    for col in kept.columns:
        if isinstance(kept[col].dtype, pd.CategoricalDtype):
            kept[col] = kept[col].cat.remove_unused_categories()
    return kept


def load_series(cfg: Config, items: list[str] | None, loaded: Demand | None = None) -> tuple[SeriesSet, str]:
    """Validated demand for the selected items as a SeriesSet, and the dataset id (`loaded`: what
    `load_demand` gave, else read here)."""
    demand = load_demand(cfg, items) if loaded is None else loaded
    series = build_series(
        demand.rows, cfg.forecast.freq, end=demand.end, start=demand.start, begin=demand.begin
    )
    return series, dataset_id(demand.rows)


def features_path(cfg: Config) -> str:
    """`[forecast] features`; left at its default, the table `nova-ray etl` writes into `[etl]
    processed` when that is another folder and holds one (the daily job's etl step said it wrote
    the table and its forecast ran without it, noted only in the log)."""
    from .etl.features import FEATURES_FILE

    chosen = cfg.forecast.features
    written = Path(cfg.etl.processed) / FEATURES_FILE
    if chosen == Forecast().features and written.is_file():
        return str(written)
    return chosen


def known_on(cfg: Config, until: date | None) -> date | None:
    """The date a run for `until` reads the external factors as known on (a backfill: their later
    rows were realised after it), or None: the table as it is (rows after the run date are a plan
    put in it). A backfill is a run for a date more than a day before today (`clock.today`), or
    before the results folder's latest run: a rerun of the last night's date just after midnight
    reads the factors as its first run did, so that it resumes or is skipped as that run's rerun
    (the clock alone made it a backfill: other values, the night forecast again)."""
    if until is None:
        return None
    if until < clock.today() - timedelta(days=1):
        return until
    try:
        latest = read_pointer(cfg.paths.output)
    except InputError:  # a pointer cut short: the next publish replaces it
        latest = None
    return until if latest is not None and until < date.fromisoformat(str(latest["run_date"])) else None


def attach_exog(
    cfg: Config, series: SeriesSet, until: date | None = None
) -> tuple[SeriesSet, dict[str, Any]]:
    """The run's external factors on the series' grid, and a record of them for the run metadata;
    for a backfill (`known_on`), as they were known on `until`: the table's later rows were
    realised after it (today's run keeps rows after today: a plan put in the table).

    From `[forecast] features` when that file exists, else from the raw/ folder next to the demand
    file (the demo layout); none found, or `exog = false` (--no-exog): the series as they are.
    With `backtest_exog = "known"` (default) the backtest windows get the rows known at their
    origins; `"realised"` gives them the realised rows (what the factors explain when known).
    """
    f = cfg.forecast
    if not f.exog:
        off: dict[str, Any] = {"enabled": False, "reason": "switched off (exog = false / --no-exog)"}
        if f.future_features:  # a scenario asked for and not applied: not without a word
            off["warnings"] = [f"{cfg.source('future_features')}: future feature values "
                               f"{f.future_features} not used: external factors are switched off"]
        return series, off
    if f.features and f.features != Forecast().features and not Path(f.features).is_file():
        inside = Path(f.features) / "features.parquet"
        raise ConfigError(  # a file chosen, not the default (which may be absent: then raw/ or none)
            f"{cfg.source('features')}: setting 'features': {f.features} "
            + (f"is a folder (the table `nova-ray etl` writes: {inside})" if Path(f.features).is_dir() else
               "not found (write it with `nova-ray etl`, or leave the setting at its default)")
        )
    spec = engine_spec(cfg)
    backs = window_backs(spec.horizon, spec.backtest_windows, spec.step) if f.backtest_exog == "known" else []
    known = known_on(cfg, until)
    try:
        series, record = exog_for_run(
            series, f.horizon, features_path(cfg) or None, cfg.paths.data, f.future_features or None, backs,
            cfg.etl.inmet_stations, known,
        )
    except EtlError as exc:  # a broken raw file: exit 2 naming the file and line
        raise InputError(str(exc)) from None
    except ValueError as exc:  # e.g. a future table without a date column
        if f.future_features:
            raise ConfigError(f"{cfg.source('future_features')}: setting 'future_features': {exc}") from None
        raise InputError(f"{features_path(cfg) or cfg.paths.data}: {exc}") from None  # the table's
    return series, record


def _stock_gone(cfg: Config) -> list[str]:
    """A warning when the latest run of the results folder had recommendations from a stock file
    and this run finds none: a night whose stock export failed published without them, exit 0."""
    import json

    from .io.results import read_pointer

    try:
        ptr = read_pointer(cfg.paths.output)
        record = json.loads((Path(cfg.paths.output) / "metadata" / "runs" / f"{ptr['run_id']}.json")
                            .read_text()) if ptr else {}
    except (InputError, OSError, ValueError):
        return []  # no readable last run: nothing to compare with
    before = ((record.get("summary") or {}).get("recommendations") or {}).get("stock")
    if not before:
        return []
    return [f"no stock snapshot found (paths.stock, or stock.parquet / stock.csv beside {cfg.paths.data}): "
            f"no recommendations this run; the last run ({ptr['run_id']}) had them from {before}"]


def load_stock(
    cfg: Config, demand: pd.DataFrame, items: list[str] | None
) -> tuple[pl.DataFrame | None, list[str]]:
    """The validated stock snapshot (None when there is none) and warnings on unknown items."""
    stock_path = resolve_stock_path(cfg.paths.stock, cfg.paths.data)
    if stock_path is None:
        return None, _stock_gone(cfg)
    read_notes: list[str] = []
    stock = read_stock(stock_path, read_notes, cfg.paths.columns)
    forecast = set(demand["item_id"].unique())
    known = forecast
    if items:  # a subset run recommends for its subset; other stock rows are skipped silently
        known = forecast | (set(stock["item_id"].to_list()) - set(items))
    # a file with none of the items is an error (before the per-row warnings it would give)
    mine = stock.filter(pl.col("item_id").is_in(items)) if items else stock
    if items and not mine.height:  # the file serves the other items: a warning, not an error
        missing = [f"{stock_path}: no stock row for the selected items: no recommendations"]
    else:
        missing = check_matches(stock_path, mine, forecast)
    warnings = unknown_items(stock_path, stock, known)  # before filtering: line numbers stay right
    return mine, read_notes + warnings + missing
