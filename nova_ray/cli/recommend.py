"""`nova-ray recommend`: purchasing recommendations from the latest published forecasts (no refit)."""

from __future__ import annotations

from datetime import date

import typer
from rich.table import Table
from rich.text import Text

from ..io.errors import InputError
from ..io.lock import LockedError, job_lock
from ..recommend_job import RecommendRun, run_recommend
from . import app
from .common import config_or_exit, fail, folder_or_exit, out, print_table, setting_label, warn


def _fmt(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def print_recommendations(res: RecommendRun, top: int) -> None:
    """A rich table of the most urgent rows (critical first), then totals."""
    from ..recommend import flags, orders_text

    colors = {"critical": "bold red", "high": "yellow", "medium": "cyan", "ok": "green"}
    shown = min(top, res.table.height)
    t = Table(title=f"recommendations: the {shown} most urgent of {res.table.height} rows")
    for col in ("urgency", "item", "site", "ABC", "position", "reorder pt", "order", "value", "stock-out in"):
        left = col in {"urgency", "item", "site", "ABC"}
        t.add_column(col, justify="left" if left else "right", no_wrap=True)  # numbers never cut
    t.add_column("flags", justify="left")  # the notes in short (all of them in the notes column)
    for r in res.table.head(top).iter_rows(named=True):
        days = r["days_to_stockout"]
        t.add_row(Text(r["urgency"], style=colors.get(r["urgency"], "")), Text(r["item_id"]),
                  Text(r["site"] or "-"), r["abc_class"], _fmt(r["on_hand"] + r["on_order"]),
                  _fmt(r["reorder_point"]), _fmt(r["order_qty"]), _fmt(r["order_value"]),
                  _fmt(days, 1) + " d" if days is not None else "-", flags(r["notes"]) or "-")
    if shown:
        print_table(t)
    s = res.summary
    counts = ", ".join(f"{k} {v}" for k, v in s["urgency"].items())
    out.print(f"urgency: {counts}; {orders_text(s)}", soft_wrap=True, highlight=False)
    out.print(f"written to {res.output}", soft_wrap=True, highlight=False, markup=False)


@app.command("recommend")
def recommend_cmd(
    results: str = typer.Option(None, "--results", help="Results folder with a published forecast run "
                                "(default: paths.output, data/ml_results)."),
    stock: str = typer.Option(None, "--stock", help="Stock snapshot, CSV, Parquet or .xlsx (item_id, "
                              "on_hand, lead_time_days; optional site, on_order, unit_cost, order_cost, "
                              "holding_cost_rate, min_order_qty, pack_size, service_level, on_order_due). "
                              "Default: paths.stock, else stock.parquet (or .csv) next to the demand file."),
    data: str = typer.Option(None, "--data", help="Demand history for the bootstrap and site shares "
                             "(default: the file the run read, else paths.data)."),
    config: str = typer.Option(None, "--config", help="Config TOML (default configs/default.toml).",
                               envvar="NOVA_RAY_CONFIG"),
    top: int = typer.Option(20, "--top", min=0, help="Rows to print (all are written)."),
    stock_date: str = typer.Option(None, "--stock-date", help="The day the stock snapshot describes (its "
                                   "end), when later than the history's last day: the forecast's days up "
                                   "to it count as consumed and stock-outs count from it (default: the "
                                   "history's last day)."),
) -> None:
    """Recommend order quantities from the latest published forecasts, without refitting."""
    cfg = config_or_exit(config, {"output": results, "data": data})
    day = None
    if stock_date is not None:
        try:
            day = date.fromisoformat(stock_date)
        except ValueError:
            fail(f"--stock-date {stock_date!r}: not a date (yyyy-mm-dd)", code=2)
            return
    folder_or_exit(cfg.paths.output, setting_label(cfg, "output", "--results"), write=True)
    try:
        with job_lock(cfg.paths.output, create=False):  # it rewrites a table of the published run
            res = run_recommend(cfg, stock, history_required=data is not None, stock_date=day)
    except LockedError as exc:
        fail(str(exc), code=3)
        return
    except InputError as exc:
        fail(str(exc), code=exc.exit_code)
        return
    warn(res.warnings, 20)
    print_recommendations(res, top)
