"""Reading a published run for the report: its tables, its demand history, and the derived tables
(per-item errors, leaderboard, sorted recommendations, the items to chart). No Ray."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from ..io.errors import InputError
from ..io.publish import recent_runs
from ..io.results import POINTER, foreign_owner, recorded_data, recorded_freq
from ..io.source import location

URGENCY_ORDER: tuple[str, ...] = ("critical", "high", "medium", "ok")
KINDS = ("forecasts", "metrics", "ensemble_weights", "items", "recommendations")
HISTORY_DAYS = 120  # history shown before the first forecast date
MIN_HISTORY_POINTS = 30  # ... but at least this many periods (weekly/monthly data)
N_BEST_WORST = 3
PERIOD_UNIT = {"D": "day", "W": "week", "M": "month", "Q": "quarter", "Y": "year"}
class ReportError(ValueError):
    """The report cannot be built (no run, unknown run or item); the message is one line."""


@dataclass
class RunTables:
    """One run's tables (None where the run wrote none) and the demand history for its items."""

    run_id: str
    record: dict[str, Any]
    forecasts: pl.DataFrame | None = None
    metrics: pl.DataFrame | None = None
    weights: pl.DataFrame | None = None
    items: pl.DataFrame | None = None
    recommendations: pl.DataFrame | None = None
    history: pl.DataFrame | None = None  # item_id, date, quantity: summed over sites, per period
    freq: str = "D"
    data_path: str | None = None
    data_given: bool = False  # data_path is the report's --data, not the file the run read
    root: str = ""
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: not a JSON object")
    return data


def find_record(root: Path, run_id: str | None) -> dict[str, Any]:
    """The run record of `run_id` (default: the run the pointer names)."""
    if not root.is_dir():
        raise ReportError(f"{root}: results folder not found")
    meta = root / "metadata"
    if run_id is None:
        ptr = meta / POINTER
        if not ptr.exists():
            raise ReportError(
                f"{root}: no run found (metadata/{POINTER} missing); run `nova-ray forecast --output {root}` "
                "first"
            )
        pointer = _read_json(ptr)
        run_id = str(pointer.get("run_id") or "")
        if not run_id:
            raise ReportError(f"{ptr}: no run_id in the pointer")
        rec_path = meta / "runs" / f"{run_id}.json"
        return _read_json(rec_path) if rec_path.exists() else pointer
    rec_path = meta / "runs" / f"{Path(run_id).name}.json"
    if not rec_path.exists():
        raise ReportError(
            f"{root}: no run {run_id!r} (metadata/runs/{run_id}.json missing; recent runs: "
            f"{', '.join(recent_runs(meta)) or 'none'})"
        )
    record = _read_json(rec_path)
    if record.get("status", "complete") != "complete":
        raise ReportError(f"{rec_path}: run {run_id} is not complete (status {record.get('status')!r})")
    return record


def _read_kind(root: Path, folder: Path, run_id: str) -> pl.DataFrame | None:
    """A partition folder as a DataFrame (hive columns included), checking the files belong to `run_id`."""
    import pyarrow.dataset as ds

    if not folder.is_dir():
        return None
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    if found := foreign_owner(dataset.files, run_id):
        raise ReportError(
            f"{Path(found[0]).relative_to(root)}: holds run {found[1]}, not {run_id}: a later run on the "
            "same date replaced it (only the latest run of a date can be reported), or one was killed "
            "while its tables were swapped in (rerun `nova-ray run` for that date)"
        )
    if not dataset.files:
        return None
    df = pl.from_arrow(dataset.to_table())
    assert isinstance(df, pl.DataFrame)
    return df.with_columns(pl.col(pl.Categorical).cast(pl.String))  # hive columns (model) as plain strings


def load_run(
    results: str | Path, run_id: str | None = None, data: str | None = None, default_data: str | None = None,
    columns: str = "",
) -> RunTables:
    """Read run `run_id` (default: the latest) of a results folder and the demand history of its items.

    The history comes from `data`, else the run record's `data_path`, else `default_data` (the config's
    `paths.data`; `columns`: its column renames, `[paths] columns`). A missing or changed history
    file is a warning shown in the report, not an error.
    """
    root = Path(results).expanduser()
    record = find_record(root, run_id)
    run_id = str(record.get("run_id"))
    run_date = record.get("run_date")
    listed = "partitions" in record  # older records list none: each kind under the run's date
    partitions = record.get("partitions") or {}
    tables: dict[str, pl.DataFrame | None] = {}
    for kind in KINDS:
        rel = partitions.get(kind) if listed else f"{kind}/run_date={run_date}"
        # a kind the run did not write (--only-forecasts: no metrics) is not looked for under its
        # date, where an earlier run of that date may have left its own
        tables[kind] = _read_kind(root, root / rel, run_id) if rel else None
    if all(t is None for t in tables.values()):
        raise ReportError(f"{root}: run {run_id} has no tables under its run date {run_date}")
    run = RunTables(
        run_id=run_id,
        record=record,
        forecasts=tables["forecasts"],
        metrics=tables["metrics"],
        weights=tables["ensemble_weights"],
        items=tables["items"],
        recommendations=tables["recommendations"],
        root=str(root),
    )
    run.freq = _run_freq(root, record, run.forecasts)
    run.data_path = data or recorded_data(record) or default_data
    run.data_given = bool(data) and location(data) != location(recorded_data(record) or "")
    if run.data_path:
        run.history, warnings = read_history(
            run.data_path, run_items(run), record.get("dataset_id"), run.freq, columns
        )
        run.warnings += warnings
    else:
        run.warnings.append("no demand file given (--data): charts show forecasts without history")
    return run


def _run_freq(root: Path, record: dict[str, Any], forecasts: pl.DataFrame | None) -> str:
    freq = recorded_freq(root, record)
    if freq in PERIOD_UNIT:
        return str(freq)
    return infer_freq(forecasts["date"].unique().sort().to_list() if forecasts is not None else [])


def infer_freq(dates: Sequence[date]) -> str:
    """The frequency code (D, W, M, Q, Y) of sorted period dates, from their median spacing."""
    if len(dates) < 2:
        return "D"
    gaps = sorted((b - a).days for a, b in zip(dates[:-1], dates[1:], strict=True))
    gap = gaps[len(gaps) // 2]
    for code, upper in (("D", 1), ("W", 7), ("M", 31), ("Q", 92)):
        if gap <= upper:
            return code
    return "Y"


def run_items(run: RunTables) -> list[str]:
    ids: set[str] = set()
    for t in (run.items, run.forecasts):
        if t is not None and "item_id" in t.columns:
            ids |= set(t["item_id"].unique().to_list())
    return sorted(ids)


def read_history(
    path: str | Path, items: list[str], expected_dataset: str | None, freq: str = "D", columns: str = ""
) -> tuple[pl.DataFrame | None, list[str]]:
    """Demand of `items` summed over sites per period, and warnings (unreadable or changed file)."""
    import pandas as pd

    from ..frequency import FREQUENCIES, period_start
    from ..io.demand import dataset_id, read_demand, same_data

    try:
        demand = read_demand(path, columns=columns)
    except InputError as exc:
        return None, [f"demand history not shown: {exc}"]
    warnings: list[str] = []
    sub = demand[demand["item_id"].isin(items)].reset_index(drop=True)
    if len(demand) and not len(sub):
        warnings.append(f"{path} holds none of this run's items: the charts show no history")
    if expected_dataset and len(sub) and not same_data(demand, items, expected_dataset):
        warnings.append(
            f"{path} differs from the data of this run (dataset id {dataset_id(sub)}, the run used "
            f"{expected_dataset}): the history may not be what the models saw"
        )
    if freq in FREQUENCIES and freq != "D":
        sub = sub.assign(date=period_start(sub["date"], FREQUENCIES[freq]))
    hist = sub.groupby(["item_id", "date"], as_index=False, observed=True)["quantity"].sum()
    hist["date"] = pd.to_datetime(hist["date"]).dt.date
    hist["item_id"] = hist["item_id"].astype(str)
    return pl.from_pandas(hist[["item_id", "date", "quantity"]]), warnings


# ----------------------------------------------------------------------------- numbers


def fmt(x: Any, digits: int = 3) -> str:
    """A number with `digits` decimals (thousands separated), or an en dash when missing."""
    if x is None:
        return "–"
    if isinstance(x, float) and not math.isfinite(x):
        return "–"
    if isinstance(x, (int, float)):
        return f"{x:,.{digits}f}"
    return str(x)


def pct(x: Any, digits: int = 0) -> str:
    """A share (0.91) as a percentage ('91%'), or an en dash when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{100 * x:.{digits}f}%"


def item_errors(metrics: pl.DataFrame | None, model: str = "ensemble") -> pl.DataFrame:
    """Per item, the mean over backtest windows of `model`'s MASE, sMAPE and coverage."""
    cols = {
        "item_id": pl.String,
        "mase": pl.Float64,
        "smape": pl.Float64,
        "coverage_80": pl.Float64,
        "coverage_95": pl.Float64,
        "windows": pl.UInt32,
    }
    if metrics is None or metrics.height == 0:
        return pl.DataFrame(schema=cols)
    return (
        metrics.filter(pl.col("model") == model)
        .with_columns(pl.col("mase", "smape", "coverage_80", "coverage_95").fill_nan(None))
        .group_by("item_id")
        .agg(pl.col("mase", "smape", "coverage_80", "coverage_95").mean(), pl.len().alias("windows"))
        .sort("item_id")
    )


def leaderboard(metrics: pl.DataFrame | None, items: pl.DataFrame | None) -> pl.DataFrame:
    """Per demand class and model: items, median MASE, median sMAPE, mean 80%/95% coverage.

    Each item counts once (its mean over backtest windows); sorted by class, then median MASE.
    """
    if metrics is None or metrics.height == 0:
        return pl.DataFrame()
    per = (
        metrics.with_columns(pl.col("mase", "smape", "coverage_80", "coverage_95").fill_nan(None))
        .group_by("item_id", "model")
        .agg(pl.col("mase", "smape", "coverage_80", "coverage_95").mean())
    )
    if items is not None and "demand_class" in items.columns:
        per = per.join(items.select("item_id", "demand_class"), on="item_id", how="left")
    else:
        per = per.with_columns(demand_class=pl.lit(None, pl.String))
    per = per.with_columns(pl.col("demand_class").fill_null("unknown"))
    return (
        per.group_by("demand_class", "model")
        .agg(
            pl.len().alias("items"),
            pl.col("mase").median().alias("median_mase"),
            pl.col("smape").median().alias("median_smape"),
            pl.col("coverage_80").mean(),
            pl.col("coverage_95").mean(),
        )
        .sort("demand_class", pl.col("median_mase"), nulls_last=True)
    )


def sort_recommendations(recs: pl.DataFrame) -> pl.DataFrame:
    """Most urgent first: urgency (critical, high, medium, ok), then days to stock-out, then order value;
    ties by item and site, as `nova-ray recommend` prints them (a sort is not stable otherwise)."""
    rank = {u: i for i, u in enumerate(URGENCY_ORDER)}
    cols = [c for c in ("days_to_stockout", "order_value", "item_id", "site") if c in recs.columns]
    return (
        recs.with_columns(
            pl.col("urgency").replace_strict(rank, default=len(rank), return_dtype=pl.Int32).alias("_rank")
        )
        .sort(["_rank", *cols], descending=[False] + [c == "order_value" for c in cols], nulls_last=True)
        .drop("_rank")
    )


def select_items(run: RunTables, explicit: list[str] | None = None) -> list[tuple[str, list[str]]]:
    """The items to chart with why: `explicit`, else the critical/high-urgency items of the
    recommendations, then the 3 worst and the 3 best items by ensemble backtest MASE."""
    known = run_items(run)
    if explicit:
        for item in explicit:
            if item not in known:
                close = difflib.get_close_matches(item, known, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise ReportError(f"unknown item {item!r} in --items (not in run {run.run_id}){hint}")
        return [(i, ["asked for"]) for i in dict.fromkeys(explicit)]
    chosen: dict[str, list[str]] = {}
    if run.recommendations is not None and run.recommendations.height:
        urgent = sort_recommendations(run.recommendations).filter(
            pl.col("urgency").is_in(["critical", "high"])
        )
        for item, urg in urgent.select("item_id", "urgency").iter_rows():
            chosen.setdefault(item, [])
            if f"{urg} urgency" not in chosen[item]:
                chosen[item].append(f"{urg} urgency")
    errors = item_errors(run.metrics).drop_nulls("mase").sort("mase", "item_id")
    if errors.height:
        worst = errors.reverse().head(N_BEST_WORST)["item_id"].to_list()
        best = errors.head(min(N_BEST_WORST, max(errors.height - len(worst), 0)))["item_id"].to_list()
        for item in worst:
            chosen.setdefault(item, []).append("worst ensemble MASE")
        for item in best:
            chosen.setdefault(item, []).append("best ensemble MASE")
    if not chosen:  # no backtests and no recommendations: the first few items
        chosen = {i: ["first items (no backtest errors to rank by)"] for i in known[: 2 * N_BEST_WORST]}
    return list(chosen.items())


# ----------------------------------------------------------------------------- charts
