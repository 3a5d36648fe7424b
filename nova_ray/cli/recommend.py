"""`nova-ray recommend`: purchasing recommendations from the latest published forecasts (no refit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import typer
from rich.table import Table

from ..config import Config
from ..io.errors import InputError
from ..io.lock import LockedError, job_lock
from . import app
from .common import config_or_exit, fail, folder_or_exit, out, print_table, setting_label, warn


@dataclass
class RecommendRun:
    """What `run_recommend` did: the table (most urgent first), its summary, warnings, the run record."""

    table: pl.DataFrame
    summary: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)
    output: str = ""


def run_recommend(cfg: Config, stock: str | None = None, history_required: bool = False) -> RecommendRun:
    """Read the latest published run under cfg.paths.output, the stock snapshot and the demand history,
    compute recommendations and add them to that run. Everything is validated before anything is
    written: bad input raises InputError and leaves the output untouched."""
    from ..io.demand import dataset_id, read_demand
    from ..io.recommendations import amend_run, read_published_run
    from ..io.results import recorded_data, recorded_freq, utc_now
    from ..io.stock import check_matches, read_stock, resolve_stock_path, unknown_items
    from ..recommend import KIND, Policy, history_frame, recommend, summarize

    warnings: list[str] = []
    run = read_published_run(cfg.paths.output)
    # the history the run was forecast from (as `report` reads it), unless --data names another
    data = cfg.paths.data
    recorded = recorded_data(run.record)
    if not history_required and recorded and "://" not in recorded and Path(recorded).exists():
        data = recorded
    stock_path = resolve_stock_path(stock or cfg.paths.stock, data)
    if stock_path is None:
        raise InputError("no stock snapshot: pass --stock PATH (or set paths.stock), "
                         f"or put stock.parquet next to {data}")
    snapshot = read_stock(stock_path)
    forecast_items = run.forecasts["item_id"].unique().to_list()
    missing = check_matches(stock_path, snapshot, forecast_items)  # no item of the run: an error
    history = None
    if history_required or Path(data).exists():
        demand = read_demand(data)
        if run.record.get("dataset_id") and dataset_id(demand) != run.record["dataset_id"]:
            warnings.append(f"{data}: demand differs from the data of run {run.run_id} "
                            "(history after the forecast start is ignored)")
        history = history_frame(demand)
    else:
        warnings.append(f"{data}: not found; no history bootstrap or site split")
    if run.backtests is None:
        warnings.append(f"run {run.run_id} has no ensemble backtests on disk: safety stock from the "
                        "history bootstrap")
    warnings += unknown_items(stock_path, snapshot, forecast_items) + missing
    table = recommend(run.forecasts, snapshot, history=history, backtests=run.backtests, items=run.items,
                      policy=Policy.from_config(cfg), freq=recorded_freq(run.root, run.record))
    summary = summarize(table) | {"stock": str(stock_path)}
    meta = {"run_id": run.run_id, "model_version": str(run.record.get("model_version")),
            "generated_at": utc_now(), "dataset_id": str(run.record.get("dataset_id"))}
    record = amend_run(run.root, run.run_id, run.run_date, KIND, table.to_arrow(), meta, summary)
    return RecommendRun(table, summary, warnings, record,
                        str((run.root / KIND / f"run_date={run.run_date}").resolve()))


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def print_recommendations(res: RecommendRun, top: int) -> None:
    """A rich table of the most urgent rows (critical first), then totals."""
    from ..recommend import orders_text

    colors = {"critical": "bold red", "high": "yellow", "medium": "cyan", "ok": "green"}
    t = Table(title=f"recommendations ({res.table.height} rows, most urgent first)")
    for col in ("urgency", "item", "site", "ABC", "position", "reorder pt", "order", "value", "stock-out in"):
        left = col in {"urgency", "item", "site", "ABC"}
        t.add_column(col, justify="left" if left else "right", no_wrap=True)  # numbers never cut
    for r in res.table.head(top).iter_rows(named=True):
        t.add_row(f"[{colors.get(r['urgency'], '')}]{r['urgency']}[/]", r["item_id"], r["site"] or "-",
                  r["abc_class"], _fmt(r["on_hand"] + r["on_order"]), _fmt(r["reorder_point"]),
                  _fmt(r["order_qty"]), _fmt(r["order_value"]), _fmt(r["days_to_stockout"], 1) + " d"
                  if r["days_to_stockout"] is not None else "-")
    print_table(t)
    s = res.summary
    counts = ", ".join(f"{k} {v}" for k, v in s["urgency"].items())
    out.print(f"urgency: {counts}; {orders_text(s)}", soft_wrap=True, highlight=False)
    out.print(f"written to {res.output}", soft_wrap=True, highlight=False, markup=False)


@app.command("recommend")
def recommend_cmd(
    results: str = typer.Option(None, "--results", help="Results folder with a published forecast run "
                                "(default: paths.output, data/ml_results)."),
    stock: str = typer.Option(None, "--stock", help="Stock snapshot, CSV or Parquet (item_id, on_hand, "
                              "lead_time_days; optional site, on_order, unit_cost, order_cost, "
                              "holding_cost_rate, min_order_qty, pack_size, service_level). Default: "
                              "paths.stock, else stock.parquet (or .csv) next to the demand file."),
    data: str = typer.Option(None, "--data", help="Demand history for the bootstrap and site shares "
                             "(default: the file the run read, else paths.data)."),
    config: str = typer.Option(None, "--config", help="Config TOML (default configs/default.toml).",
                               envvar="NOVA_RAY_CONFIG"),
    top: int = typer.Option(20, "--top", min=0, help="Rows to print (all are written)."),
) -> None:
    """Recommend order quantities from the latest published forecasts, without refitting."""
    cfg = config_or_exit(config, {"output": results, "data": data})
    folder_or_exit(cfg.paths.output, setting_label(cfg, "output", "--results"))
    try:
        with job_lock(cfg.paths.output, create=False):  # it rewrites a table of the published run
            res = run_recommend(cfg, stock, history_required=data is not None)
    except LockedError as exc:
        fail(str(exc), code=3)
        return
    except InputError as exc:
        fail(str(exc))
        return
    warn(res.warnings, 20)
    print_recommendations(res, top)
