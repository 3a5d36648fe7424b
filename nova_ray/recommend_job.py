"""Recommendations for a published run without refitting: `nova-ray recommend`, and the daily job
when only the stock snapshot or the `[recommend]` settings changed since the run."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from . import clock
from .config import Config
from .frequency import get_frequency
from .io.errors import InputError
from .recommend_inputs import STEP, history_end, per_period, stock_day


def current_inputs(cfg: Config) -> tuple[str, str] | None:
    """The stock file a run of `cfg` reads and `inputs_id` of it, or None without one."""
    from .io.source import source_exists
    from .io.stock import resolve_stock_path

    path = resolve_stock_path(cfg.paths.stock, cfg.paths.data)
    return (path, inputs_id(path, cfg)) if path is not None and source_exists(path) else None


def inputs_id(stock_path: str | Path, cfg: Config) -> str:
    """What recommendations depend on besides the forecasts: the stock file's bytes and the
    inventory policy (`[recommend]`), as one short hash."""
    from .io.source import read_source
    from .recommend import Policy

    h = hashlib.sha256(read_source(stock_path))
    h.update(json.dumps(dataclasses.asdict(Policy.from_config(cfg)), sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class RecommendRun:
    """What `run_recommend` did: the table (most urgent first), its summary, warnings, the run record."""

    table: pl.DataFrame
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    output: str = ""


def _days_left(what: str, end: date | None, forecasts: pl.DataFrame, freq: str | None) -> int | None:
    """The forecast's days after `end` (a history or a stock snapshot newer than the run's forecast
    start: its days up to `end` count as consumed), None when `end` is before the forecast; an
    InputError naming `what` when nothing is left to project."""
    dates = forecasts["date"].cast(pl.Date)
    first, last = dates.min(), dates.max()
    if end is None or first is None or end < first:
        return None
    code = get_frequency(freq).code if freq else "D"
    if code != "D":  # a period's row covers it to the next period's start
        last = pl.Series([last]).dt.offset_by(STEP[code]).item() - timedelta(days=1)
    if end >= last:
        raise InputError(f"{what} {end}, on or after the last forecast day {last}: nothing left to "
                         "project; forecast again before recommending")
    return (last - end).days


def _newer(data: str, history: pl.DataFrame, forecasts: pl.DataFrame, freq: str | None) -> str:
    """What a history newer than the run's forecast start means ("" when it is not)."""
    left = _days_left(f"{data}: the history ends", history_end(history), forecasts, freq)
    if left is None:
        return ""
    return (f" (it goes on past the forecast's start: the forecast's days up to its end count as "
            f"consumed, {left} days are left; forecast again for a full horizon)")


def run_recommend(cfg: Config, stock: str | None = None, history_required: bool = False,
                  stock_date: date | None = None) -> RecommendRun:
    """Read the latest published run under cfg.paths.output, the stock snapshot and the demand history,
    compute recommendations and add them to that run. Everything is validated before anything is
    written: bad input raises InputError and leaves the output untouched."""
    from .io.demand import read_demand, same_data
    from .io.publish import RUN_FACTS
    from .io.recommendations import amend_run, read_published_run
    from .io.results import recorded_data, recorded_freq, utc_now
    from .io.source import source_exists
    from .io.stock import check_matches, read_stock, resolve_stock_path, unknown_items
    from .recommend import KIND, Policy, history_frame, recommend, summarize

    warnings: list[str] = []
    run = read_published_run(cfg.paths.output)
    # the history the run was forecast from (as `report` reads it), unless --data names another
    data = cfg.paths.data
    recorded = recorded_data(run.record)
    if not history_required and recorded and source_exists(recorded):
        data = recorded
    stock_path = resolve_stock_path(stock or cfg.paths.stock, data)
    if stock_path is None:
        raise InputError("no stock snapshot: pass --stock PATH (or set paths.stock), "
                         f"or put stock.parquet next to {data}")
    snapshot = read_stock(stock_path, warnings, cfg.paths.columns)
    forecast_items = run.forecasts["item_id"].unique().to_list()
    missing = check_matches(stock_path, snapshot, forecast_items)  # no item of the run: an error
    history, start = None, None
    if history_required or source_exists(data):
        demand = read_demand(data, warnings, cfg.paths.columns)
        history = history_frame(demand)
        expected = run.record.get("dataset_id")
        if expected and not same_data(demand, forecast_items, expected):  # a subset run: its items' rows
            warnings.append(f"{data}: demand differs from the data of run {run.run_id}"
                            + _newer(data, history, run.forecasts, recorded_freq(run.root, run.record)))
        if cfg.forecast.series_start == "file":  # as the run's series started
            start = demand["date"].min().date()
    else:
        warnings.append(f"{data}: not found; no history bootstrap or site split")
    if run.backtests is None:
        warnings.append(f"run {run.run_id} has no ensemble backtests on disk: safety stock from the "
                        "history bootstrap")
    warnings += unknown_items(stock_path, snapshot, forecast_items) + missing
    freq, today = recorded_freq(run.root, run.record), date.fromisoformat(run.run_date)
    if (run.record.get("summary") or {}).get("demo_data"):
        today = None  # the demo's history ends on a fixed day: its stock-outs are not in the past
    as_of = stock_day(run.forecasts["date"].cast(pl.Date).min(), history, per_period(history, freq))
    if stock_date is None and today is not None and (late := (clock.today() - as_of).days) > 1:
        warnings.append(f"{stock_path}: the stock is taken as of {as_of}, the history's last day, "
                        f"{late} days before today: a snapshot taken since counts the demand of the "
                        "days between twice; give its day with --stock-date")
    if stock_date is not None:  # the stock of a later day: the forecast's days up to it are consumed
        _days_left("--stock-date", stock_date, run.forecasts, freq)
        today = max(today or stock_date, stock_date)
        if stock_date < as_of:  # the snapshot is taken to describe the history's last day, as without it
            warnings.append(f"--stock-date {stock_date} is before the history's last day {as_of}: the "
                            f"stock is taken as of {as_of} (the demand of the {(as_of - stock_date).days} "
                            "days between is not taken off it)")
    table = recommend(run.forecasts, snapshot, history=history, backtests=run.backtests, items=run.items,
                      policy=Policy.from_config(cfg), freq=freq, today=today, series_start=start,
                      snapshot=stock_date)
    summary = summarize(table) | {"stock": str(stock_path), "inputs": inputs_id(stock_path, cfg)}
    # the run's own metadata, as its other tables carry it, and when this table was made again
    rec = run.record
    facts = {k: str(rec[k]) for k in RUN_FACTS if rec.get(k) is not None and k != "schema_version"}
    meta = {"run_id": run.run_id, "model_version": str(rec.get("model_version")),
            "generated_at": str(rec.get("generated_at")), "dataset_id": str(rec.get("dataset_id")),
            **facts, "amended_at": utc_now()}
    record = amend_run(run.root, run.run_id, run.run_date, KIND, table.to_arrow(), meta, summary)
    return RecommendRun(table, summary, warnings, record,
                        str((run.root / KIND / f"run_date={run.run_date}").resolve()))


