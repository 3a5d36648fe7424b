"""The report's HTML: charts (matplotlib PNGs embedded as base64), inline CSS, no JavaScript.
`render_report` is pure: tables in, HTML text out."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import polars as pl

from .. import __version__
from .runs import (
    HISTORY_DAYS,
    MIN_HISTORY_POINTS,
    PERIOD_UNIT,
    URGENCY_ORDER,
    RunTables,
    fmt,
    item_errors,
    leaderboard,
    pct,
    run_items,
    select_items,
    sort_recommendations,
)

ENSEMBLE_COLOR = "#1f4e79"
MODEL_COLORS = {
    "naive": "#7f7f7f",
    "arima": "#d62728",
    "ets": "#2ca02c",
    "theta": "#9467bd",
    "prophet": "#ff7f0e",
    "lstm": "#e377c2",
    "croston": "#8c564b",
    "tsb": "#17becf",
}
OTHER_COLORS = ("#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5")


def _model_colors(models: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    extra = iter(OTHER_COLORS * 4)
    for m in sorted(models):
        out[m] = MODEL_COLORS.get(m) or next(extra, "#999999")
    return out


def item_chart(
    item: str, history: pl.DataFrame | None, forecasts: pl.DataFrame, freq: str = "D", title: str = ""
) -> bytes:
    """PNG: recent history, the ensemble with its 80%/95% bands, the single models as thin lines."""
    import matplotlib.dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    unit = PERIOD_UNIT.get(freq, "period")
    fig = Figure(figsize=(11.5, 3.9), dpi=100)
    fig.subplots_adjust(left=0.065, right=0.845, top=0.9, bottom=0.13)  # fixed: one draw, legend on the right
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    fc = forecasts.sort("date")
    ens = fc.filter(pl.col("model") == "ensemble")
    start = fc["date"].min() if fc.height else None
    if history is not None and history.height:
        h = history.filter(pl.col("item_id") == item).sort("date")
        if start is not None:
            h = h.filter(pl.col("date") < start)
        if h.height:
            period_days = {"D": 1, "W": 7, "M": 31, "Q": 92, "Y": 366}.get(freq, 1)
            cutoff = h["date"].max() - timedelta(days=max(HISTORY_DAYS, MIN_HISTORY_POINTS * period_days) - 1)
            h = h.filter(pl.col("date") >= cutoff)
            d, q = h["date"].to_list(), h["quantity"].to_list()
            if sum(v == 0 for v in q) >= 0.3 * len(q):  # intermittent: stems read better than a zigzag
                ax.vlines(d, 0, q, color="#333333", lw=1.3, label="actual demand", zorder=3)
                nz = [(a, v) for a, v in zip(d, q, strict=True) if v > 0]
                ax.plot([a for a, _ in nz], [v for _, v in nz], "o", color="#333333", ms=2.5, zorder=3)
            else:
                ax.plot(d, q, color="#333333", lw=1.0, marker="o", ms=2.2, label="actual demand", zorder=3)
    if ens.height:
        d = ens["date"].to_list()
        if {"lo_95", "hi_95"} <= set(ens.columns):
            ax.fill_between(
                d,
                ens["lo_95"].to_list(),
                ens["hi_95"].to_list(),
                color=ENSEMBLE_COLOR,
                alpha=0.12,
                lw=0,
                label="95% interval",
            )
        if {"lo_80", "hi_80"} <= set(ens.columns):
            ax.fill_between(
                d,
                ens["lo_80"].to_list(),
                ens["hi_80"].to_list(),
                color=ENSEMBLE_COLOR,
                alpha=0.25,
                lw=0,
                label="80% interval",
            )
        ax.plot(
            d, ens["forecast"].to_list(), color=ENSEMBLE_COLOR, lw=2.4, label="ensemble forecast", zorder=5
        )
    singles = sorted(m for m in fc["model"].unique().to_list() if m != "ensemble") if fc.height else []
    colors = _model_colors(singles)
    for m in singles:
        s = fc.filter(pl.col("model") == m)
        ax.plot(
            s["date"].to_list(),
            s["forecast"].to_list(),
            color=colors[m],
            lw=1.0,
            alpha=0.85,
            label=m,
            zorder=4,
        )
    if start is not None:
        ax.axvline(start, color="#888888", lw=0.8, ls="--", zorder=2)
        ax.annotate(
            "forecast →",
            xy=(start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )
    locator = mdates.AutoDateLocator(minticks=5, maxticks=12)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("date")
    ax.set_ylabel(f"demand (units/{unit})")
    # as written: an item code with two `$` (an ERP's) was read as mathtext, and crashed the report
    ax.set_title(title or item, loc="left", fontsize=11, fontweight="bold", parse_math=False)
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8.5, frameon=False, borderaxespad=0)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


# ----------------------------------------------------------------------------- HTML

CSS = """
:root { --ink: #1d2733; --muted: #5d6b7a; --line: #dfe4ea; --accent: #1f4e79; --bg: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); margin: 0; background: #fff; }
header { background: var(--accent); color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .85; }
nav { padding: 10px 32px; border-bottom: 1px solid var(--line); background: var(--bg); }
nav a { margin-right: 18px; color: var(--accent); text-decoration: none; font-weight: 600; }
main { padding: 8px 32px 40px; max-width: 1500px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 24px 0 4px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0; }
.card { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 10px 16px;
        min-width: 140px; }
.card .v { font-size: 20px; font-weight: 700; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .03em; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; position: sticky; top: 0; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { background: none; color: var(--muted); font-weight: 500; width: 230px; }
tr.best td { font-weight: 700; }
tr.ens td { background: #eef4fb; }
tr.cls td { border-top: 2px solid var(--line); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.u-critical { background: #c62828; color: #fff; } .u-high { background: #ef6c00; color: #fff; }
.u-medium { background: #fbc02d; color: #222; } .u-ok { background: #2e7d32; color: #fff; }
.warn { background: #fff4e5; border-left: 4px solid #ef6c00; padding: 8px 12px; margin: 8px 0; }
.muted { color: var(--muted); }
.chart { margin: 4px 0 2px; }
.chart img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.facts { color: var(--muted); font-size: 13px; margin: 2px 0 6px; }
.facts b { color: var(--ink); font-weight: 600; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid var(--line); display: inline-block; }
.scroll td { white-space: nowrap; }
footer { color: var(--muted); padding: 16px 32px; border-top: 1px solid var(--line); font-size: 12px; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(
    head: Sequence[tuple[str, bool]],
    rows: Iterable[Sequence[str]],
    cls: str = "",
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; `head` is (label, numeric) per column; cells are already-escaped HTML."""
    th = "".join(f'<th class="n">{_e(h)}</th>' if num else f"<th>{_e(h)}</th>" for h, num in head)
    body = []
    for i, r in enumerate(rows):
        rc = row_classes[i] if row_classes and i < len(row_classes) and row_classes[i] else ""
        tds = "".join(f'<td class="n">{c}</td>' if head[j][1] else f"<td>{c}</td>" for j, c in enumerate(r))
        body.append(f'<tr class="{rc}">{tds}</tr>' if rc else f"<tr>{tds}</tr>")
    c = f' class="{cls}"' if cls else ""
    return f"<table{c}><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _demo_note(demo: bool, given: bool) -> str:
    """What the overview adds to the demand file's name when the run forecast the demo data: the
    file is the demo's, or (the report's --data) another one whose history the charts show."""
    if not demo:
        return ""
    return " (the run forecast the generated DEMO data, not this file)" if given else (
        " (DEMO data: generated, not real demand)")


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="v">{_e(value)}</div><div class="k">{_e(label)}</div></div>'


def _badge(urgency: Any) -> str:
    u = str(urgency or "")
    return f'<span class="badge u-{_e(u)}">{_e(u)}</span>' if u in URGENCY_ORDER else _e(u or "–")


def _history_end(record: dict) -> str:
    """The history's last day, and how long before the run date when it is not the day before:
    stale demand, which the run warned of, looks current otherwise."""
    end, day = record.get("history_end"), record.get("run_date")
    if not end:
        return "–"
    try:
        gap = (date.fromisoformat(str(day)) - date.fromisoformat(str(end))).days
    except ValueError:
        return str(end)
    return f"{end} ({gap} days before the run date)" if gap > 1 else str(end)


def _overview(run: RunTables, generated_at: str) -> str:
    rec, s = run.record, run.record.get("summary") or {}
    failed = []
    if run.items is not None and "failed_models" in run.items.columns:
        failed = run.items.filter(pl.col("failed_models").fill_null("").str.len_chars() > 0)
        failed = [f"{i} ({m})" for i, m in failed.select("item_id", "failed_models").iter_rows()]
    n_items = s.get("items", len(run_items(run)))
    models = s.get("models") or (
        sorted(run.forecasts["model"].unique().to_list()) if run.forecasts is not None else []
    )
    cards = [
        _card("items", fmt(n_items, 0)),
        _card("models", fmt(len([m for m in models if m != "ensemble"]), 0)),
        _card("items with a failed model", fmt(s.get("failures", len(failed)), 0)),
        _card("wall time", f"{fmt(s.get('wall_seconds'), 1)} s"),
    ]
    err = s.get("ensemble_error") or {}
    if err.get("mase") is not None:
        cards.append(_card("ensemble MASE (median over item-windows)", fmt(err["mase"])))
    if run.recommendations is not None and run.recommendations.height:
        recs = run.recommendations
        if "order_qty" in recs.columns:  # rows with an order to place (a large on_order needs none)
            recs = recs.filter(pl.col("order_qty") > 0)
        c = dict(recs["urgency"].value_counts().iter_rows())
        cards.append(_card("critical / high orders", f"{c.get('critical', 0)} / {c.get('high', 0)}"))
    rows: list[tuple[str, str]] = [
        ("run id", _e(run.run_id)),
        ("run date", _e(rec.get("run_date", "–"))),
        ("history ends", _e(_history_end(rec))),
        ("run generated at", _e(rec.get("generated_at", "–"))),
        ("report generated at", _e(generated_at)),
        ("data set id", _e(rec.get("dataset_id", "–"))),
        ("demand data", _e((run.data_path or "–") + _demo_note(bool(s.get("demo_data")), run.data_given))),
        ("model version", _e(rec.get("model_version", "–"))),
        ("frequency", _e(f"{run.freq} (units/{PERIOD_UNIT.get(run.freq, 'period')})")),
        ("items", _e(fmt(n_items, 0))),
        ("models", _e(", ".join(models) or "–")),
        ("items with a failed model", _e(", ".join(failed) or "none")),
        ("fell back to seasonal naive", _e(", ".join(s.get("fallbacks") or []) or "none")),
        ("backend", _e(s.get("backend", "–"))),
        ("wall time", _e(f"{fmt(s.get('wall_seconds'), 1)} s (task CPU {fmt(s.get('cpu_seconds'), 1)} s)")),
    ]
    if err:
        rows.append(
            (
                "ensemble backtest",
                _e(
                    f"MASE {fmt(err.get('mase'))} (median) · sMAPE {fmt(err.get('smape'), 1)} (mean) · "
                    f"80% coverage {pct(err.get('coverage_80'))}, over item-windows (the leaderboard: "
                    "per item, then the median)"
                ),
            )
        )
    for cls, b in sorted((s.get("best_by_class") or {}).items()):
        ens = b.get("ensemble_mase")
        rows.append(
            (
                f"best model for {cls}",
                _e(
                    f"{b.get('model')} (MASE {fmt(b.get('mase'))}"
                    + (f"; ensemble {fmt(ens)})" if ens is not None else ")")
                ),
            )
        )
    rows.append(
        ("rows", _e(", ".join(f"{k} {v:,}" for k, v in (rec.get("row_counts") or {}).items()) or "–"))
    )
    rows.append(("results folder", _e(run.root)))
    kv = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    warn = "".join(f'<div class="warn">{_e(w)}</div>' for w in run.warnings)
    return (
        f'<section id="overview"><h2>Run overview</h2>{warn}<div class="cards">{"".join(cards)}</div>'
        f'<table class="kv"><tbody>{kv}</tbody></table></section>'
    )


def _item_section(run: RunTables, selected: list[tuple[str, list[str]]]) -> str:
    parts = ['<section id="items"><h2>Items</h2>']
    unit = PERIOD_UNIT.get(run.freq, "period")
    shown = f"last {HISTORY_DAYS} days" + (
        "" if run.freq == "D" else f", at least {MIN_HISTORY_POINTS} {unit}s"
    )
    parts.append(
        f'<p class="muted">Recent demand ({shown}) and the forecast in units/{unit}: the '
        "ensemble (thick line) with its 80% and 95% prediction intervals (shaded), and every single model "
        "as a thin line. Selected: critical and high urgency items, and the 3 worst and 3 best items by "
        "ensemble backtest MASE (or the items asked for with --items).</p>"
    )
    if not selected:
        parts.append('<p class="muted">No items to show.</p></section>')
        return "".join(parts)
    parts.append("<p>" + " · ".join(f'<a href="#item-{_e(i)}">{_e(i)}</a>' for i, _ in selected) + "</p>")
    errors = {r["item_id"]: r for r in item_errors(run.metrics).iter_rows(named=True)}
    info = {r["item_id"]: r for r in run.items.iter_rows(named=True)} if run.items is not None else {}
    recs: dict[str, list[dict[str, Any]]] = {}
    if run.recommendations is not None:
        for r in sort_recommendations(run.recommendations).iter_rows(named=True):
            recs.setdefault(r["item_id"], []).append(r)
    weights: dict[str, list[tuple[str, float]]] = {}
    if run.weights is not None:
        for r in run.weights.sort("item_id", "weight", descending=[False, True]).iter_rows(named=True):
            weights.setdefault(r["item_id"], []).append((r["model"], r["weight"]))
    for item, why in selected:
        fc = run.forecasts.filter(pl.col("item_id") == item) if run.forecasts is not None else None
        it, err = info.get(item, {}), errors.get(item, {})
        facts = [f"<b>{_e(', '.join(why))}</b>"]
        if it.get("demand_class"):
            facts.append(
                f"demand class <b>{_e(it['demand_class'])}</b> (ADI {fmt(it.get('adi'), 2)}, "
                f"CV² {fmt(it.get('cv2'), 2)})"
            )
        if err:
            facts.append(
                f"ensemble backtest MASE <b>{fmt(err.get('mase'))}</b>, sMAPE {fmt(err.get('smape'), 1)}, "
                f"80% coverage {pct(err.get('coverage_80'))}"
            )
        if weights.get(item):
            facts.append("weights " + ", ".join(f"{_e(m)} {fmt(w)}" for m, w in weights[item]))
        for r in recs.get(item, []):
            stock = (
                f"{_badge(r.get('urgency'))} {_e(r.get('site') or '')}: on hand {fmt(r.get('on_hand'), 0)}, "
                f"reorder point {fmt(r.get('reorder_point'), 0)}, order {fmt(r.get('order_qty'), 0)}"
            )
            if r.get("days_to_stockout") is not None:
                stock += f", stock-out in {fmt(r.get('days_to_stockout'), 1)} days"
            facts.append(stock)
        if it.get("failed_models"):
            facts.append(f"failed models: {_e(it['failed_models'])}")
        title = f"{item} · {it.get('demand_class') or ''}".rstrip(" ·")
        parts.append(f'<h3 id="item-{_e(item)}">{_e(title)}</h3>')
        parts.append(f'<div class="facts">{" · ".join(facts)}</div>')
        if fc is not None and fc.height:
            png = item_chart(item, run.history, fc, run.freq, title)
            alt = f"{item}: recent demand and forecast (units/{unit})"
            parts.append(
                f'<div class="chart"><img alt="{_e(alt)}" width="1150" height="390" '
                f'src="data:image/png;base64,{base64.b64encode(png).decode()}"></div>'
            )
        else:
            parts.append('<p class="muted">No forecast for this item in this run.</p>')
    parts.append("</section>")
    return "".join(parts)


def _leaderboard_section(run: RunTables) -> str:
    board = leaderboard(run.metrics, run.items)
    head = '<section id="leaderboard"><h2>Model leaderboard by demand class</h2>'
    if board.height == 0:
        return head + '<p class="muted">No backtest metrics in this run.</p></section>'
    note = (
        '<p class="muted">Backtest errors per item averaged over the rolling-origin windows, then the median '
        "over the items of the class (MASE, sMAPE) or the mean (interval coverage; nominal 80% and 95%). "
        "Bold: the best single model of the class; shaded: the ensemble.</p>"
    )
    rows, classes, prev = [], [], None
    best: dict[str, str] = {}
    for r in board.filter(pl.col("model") != "ensemble").drop_nulls("median_mase").iter_rows(named=True):
        best.setdefault(r["demand_class"], r["model"])
    for r in board.iter_rows(named=True):
        cls = r["demand_class"]
        rows.append(
            [
                _e(cls if cls != prev else ""),
                _e(r["model"]),
                fmt(r["items"], 0),
                fmt(r["median_mase"]),
                fmt(r["median_smape"], 1),
                pct(r["coverage_80"]),
                pct(r["coverage_95"]),
            ]
        )
        marks = ["cls" if cls != prev and prev is not None else ""]
        marks.append("ens" if r["model"] == "ensemble" else "best" if best.get(cls) == r["model"] else "")
        classes.append(" ".join(m for m in marks if m))
        prev = cls
    head_cols = [
        ("demand class", False),
        ("model", False),
        ("items", True),
        ("median MASE", True),
        ("median sMAPE", True),
        ("80% coverage", True),
        ("95% coverage", True),
    ]
    return head + note + _table(head_cols, rows, row_classes=classes) + "</section>"


def _weights_section(run: RunTables, max_rows: int) -> str:
    head = '<section id="weights"><h2>Ensemble weights</h2>'
    if run.weights is None or run.weights.height == 0:
        return head + '<p class="muted">No ensemble weights in this run.</p></section>'
    models = sorted(run.weights["model"].unique().to_list())
    errors = {r["item_id"]: r["mase"] for r in item_errors(run.metrics).iter_rows(named=True)}
    classes = (
        {r["item_id"]: r["demand_class"] for r in run.items.iter_rows(named=True)}
        if run.items is not None and "demand_class" in run.items.columns
        else {}
    )
    w: dict[str, dict[str, float]] = {}
    windows: dict[str, int] = {}
    for r in run.weights.iter_rows(named=True):
        w.setdefault(r["item_id"], {})[r["model"]] = r["weight"]
        windows[r["item_id"]] = max(windows.get(r["item_id"], 0), r.get("windows") or 0)
    items = sorted(w)
    rows = [
        [
            _e(i),
            _e(classes.get(i, "–")),
            *(fmt(w[i].get(m)) if m in w[i] else "" for m in models),
            fmt(windows.get(i), 0),
            fmt(errors.get(i)),
        ]
        for i in items[:max_rows]
    ]
    cols = [
        ("item", False),
        ("demand class", False),
        *((m, True) for m in models),
        ("windows", True),
        ("ensemble MASE", True),
    ]
    note = (
        '<p class="muted">Per item, the share of each model in the ensemble forecast (inverse backtest MAE, '
        "models more than 2× worse than the item's best left out); empty: not used.</p>"
    )
    more = (
        f'<p class="muted">First {max_rows:,} of {len(items):,} items.</p>' if len(items) > max_rows else ""
    )
    return head + note + f'<div class="scroll">{_table(cols, rows)}</div>' + more + "</section>"


REC_COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("urgency", "urgency", None),
    ("item_id", "item", None),
    ("site", "site", None),
    ("abc_class", "ABC", None),
    ("demand_class", "demand class", None),
    ("on_hand", "on hand", 0),
    ("on_order", "on order", 0),
    ("lead_time_days", "lead time (days)", 0),
    ("lead_time_demand", "lead-time demand", 1),
    ("safety_stock", "safety stock", 1),
    ("reorder_point", "reorder point", 1),
    ("order_qty", "order qty", 0),
    ("order_value", "order value", 2),
    ("days_to_stockout", "days to stock-out", 1),
    ("stockout_date", "stock-out date", None),
    ("service_level", "service level", None),
    ("method", "method", None),
    ("notes", "notes", None),
)


def _recommendations_section(run: RunTables, max_rows: int) -> str:
    head = '<section id="recommendations"><h2>Purchasing recommendations</h2>'
    recs = run.recommendations
    if recs is None or recs.height == 0:
        return head + '<p class="muted">This run has no recommendations (no stock snapshot).</p></section>'
    recs = sort_recommendations(recs)
    cols = [c for c in REC_COLUMNS if c[0] in recs.columns]
    rows = []
    for r in recs.head(max_rows).iter_rows(named=True):
        cells = []
        for name, _, digits in cols:
            v = r.get(name)
            if name == "urgency":
                cells.append(_badge(v))
            elif name == "service_level":
                cells.append(pct(v, 1))
            elif digits is not None:
                cells.append(fmt(v, digits))
            else:
                cells.append(_e(v if v is not None else "–"))
        rows.append(cells)
    numeric = {n for n, _, d in cols if d is not None} | {"service_level"}
    note = (
        '<p class="muted">Sorted by urgency, then days to stock-out. Quantities in units; the order quantity '
        "is rounded to the pack size.</p>"
    )
    more = (
        f'<p class="muted">First {max_rows:,} of {recs.height:,} rows.</p>' if recs.height > max_rows else ""
    )
    table = _table([(label, n in numeric) for n, label, _ in cols], rows)
    return head + note + f'<div class="scroll">{table}</div>' + more + "</section>"


def render_report(
    run: RunTables, items: list[str] | None = None, generated_at: str | None = None, max_rows: int = 1000
) -> str:
    """The whole report as one HTML document (charts embedded; no scripts, no network)."""
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    selected = select_items(run, items)
    sections = [
        _overview(run, generated_at),
        _item_section(run, selected),
        _leaderboard_section(run),
        _weights_section(run, max_rows),
    ]
    nav = [
        ("overview", "Overview"),
        ("items", "Items"),
        ("leaderboard", "Leaderboard"),
        ("weights", "Weights"),
    ]
    if run.recommendations is not None:
        sections.append(_recommendations_section(run, max_rows))
        nav.append(("recommendations", "Recommendations"))
    links = "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in nav)
    title = f"nova-ray report · run {run.run_id}"
    sub = (
        f"run date {run.record.get('run_date', '–')} · data set {run.record.get('dataset_id', '–')} · "
        f"generated {generated_at}"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><p>{_e(sub)}</p></header><nav>{links}</nav>"
        f"<main>{''.join(sections)}</main>"
        f"<footer>nova-ray {_e(__version__)} · report generated {_e(generated_at)} from "
        f"{_e(run.root)}</footer>"
        "</body></html>\n"
    )


def write_report(html_text: str, out: str | Path) -> Path:
    """Write the report next to its final path, then rename (a reader never sees half a file)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        tmp.write_text(html_text, encoding="utf-8")
        tmp.replace(out)
    except BaseException:  # `--out` a folder, a full disk: no temp file left beside it
        tmp.unlink(missing_ok=True)
        raise
    return out
