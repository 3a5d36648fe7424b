"""Purchasing recommendations from the ensemble forecast: safety stock, reorder point, order quantity,
days until stock-out, urgency and ABC class, per item and site. Pure: Polars/numpy in, Polars out.

Per stock row (item, site), with ``as_of`` the history's last day (the day before the first forecast
date, or later inside a first period left out as incomplete; or a later stock snapshot's day;
docs/recommendations.md):

- Daily path: the ensemble point forecast (periods spread over their days), times the site's share
  of the item's recent demand, extended past the horizon at the mean rate of the last forecast
  week. Intermittent/lumpy items use the recent historical mean rate instead (an MAE-weighted
  ensemble is biased towards zero on them, seasonal naive replays single spikes).
- Lead-time demand F_L = sum of the path over days 1..L; reorder point = F_L + safety stock.
- Safety stock for service level p (``method``, nova_ray/safety_stock.py): ``residual``,
  ``bootstrap`` or ``normal``. Never below zero.
- Order-up-to = reorder point + EOQ (sqrt(2 D S / H)) when order_cost and unit_cost are known,
  else + `review_days` of demand. Position = on_hand (below 0: units owed) + on_order; at or
  below the reorder point order up to the order-up-to level in whole packs, at least min_order_qty.
- Stock-out: the (fractional) day the projected shelf runs empty with demand then going unmet;
  on_order arrives on on_order_due, else after the full lead time (conservative).
- ABC per item by annual value (unit_cost x annual demand; quantity where the cost is missing):
  A = the first 80% of value, B up to 95%, C the rest.
"""


from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from .classify import classify
from .recommend_inputs import (
    Table,
    daily_paths,
    ensemble_items,
    ensemble_lazy,
    history_arrays,
    per_period,
    residual_segments,
    rows_of,
    stock_day,
)
from .replenishment import (
    abc_classes,
    eoq,
    extend_path,
    round_order,
    stockout,
    urgency,
)
from .safety_stock import INTERMITTENT, safety_stock
from .schemas import register

KIND = "recommendations"
URGENCY: tuple[str, ...] = ("critical", "high", "medium", "ok")

SCHEMA = pa.schema([
    ("item_id", pa.string()), ("site", pa.string()), ("abc_class", pa.string()),
    ("demand_class", pa.string()), ("service_level", pa.float64()),
    ("on_hand", pa.float64()), ("on_order", pa.float64()), ("lead_time_days", pa.int32()),
    ("lead_time_demand", pa.float64()), ("safety_stock", pa.float64()), ("reorder_point", pa.float64()),
    ("order_up_to", pa.float64()), ("order_qty", pa.float64()), ("eoq", pa.float64()),
    ("stockout_date", pa.date32()), ("days_to_stockout", pa.float64()), ("urgency", pa.string()),
    ("unit_cost", pa.float64()), ("order_value", pa.float64()), ("method", pa.string()),
    ("notes", pa.string()),
])
register(KIND, SCHEMA)


HISTORY_COLUMNS = ("item_id", "date", "quantity", "site")  # the demand columns recommend reads
FORECAST_COLUMNS = ("item_id", "date", "forecast", "lo_80", "hi_80")  # of the ensemble's forecasts
BACKTEST_COLUMNS = ("item_id", "origin", "date", "forecast", "actual")  # of the ensemble's backtests


def history_frame(demand: Any) -> pl.DataFrame:
    """The columns of a validated demand table (pandas) that `recommend` reads, as Polars (a run
    spills them to disk instead: `nova_ray.io.demand.spill_columns`)."""
    return pl.from_pandas(demand[[c for c in HISTORY_COLUMNS if c in demand.columns]])


@dataclass(frozen=True)
class Policy:
    """Inventory policy settings; the same names as the config's [recommend] section."""

    service_level_a: float = 0.98
    service_level_b: float = 0.95
    service_level_c: float = 0.90
    holding_cost_rate: float = 0.25  # per year, used when the stock row has none
    critical_days: int = 7
    high_days: int = 14
    medium_days: int = 30
    review_days: int = 14  # order-up-to cover when EOQ cannot be computed
    abc_a: float = 0.80
    abc_b: float = 0.95
    min_residual_days: int = 28  # fewer daily backtest errors: bootstrap of the history
    bootstrap_samples: int = 2000
    block_days: int = 7
    history_days: int = 365
    rate_days: int = 365  # level of intermittent and lumpy items: mean of the last rate_days
    min_history_days: int = 28
    bootstrap_seed: int = 7
    undershoot: bool = True
    excess_days: int = 180  # a position this many days of demand above the order-up-to level is excess
    cap_outliers: bool = True  # [forecast] cap_outliers: smooth/erratic items' one-off spikes capped

    @classmethod
    def from_config(cls, cfg: Any) -> Policy:
        """From ``cfg.recommend`` when the config has that section (and ``cfg.forecast.cap_outliers``),
        else the defaults."""
        section = getattr(cfg, "recommend", None)
        if section is None:
            return cls()
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in dataclasses.asdict(section).items() if k in names}
        forecast = getattr(cfg, "forecast", None)
        if forecast is not None and hasattr(forecast, "cap_outliers"):
            kw["cap_outliers"] = bool(forecast.cap_outliers)
        return cls(**kw)

    def service_level(self, abc: str) -> float:
        """The target cycle service level of ABC class `abc`."""
        return {"A": self.service_level_a, "B": self.service_level_b}.get(abc, self.service_level_c)


# ---------------------------------------------------------------- table preparation


HISTORY_CHUNK = 200  # items per history query: bounds the memory of its group-bys


def _run_classes(items: pl.DataFrame | None) -> dict[str, str]:
    """Demand class per item from the run's items table (empty without one)."""
    if items is None or items.height == 0 or "demand_class" not in items.columns:
        return {}
    return dict(zip(items["item_id"].cast(pl.String).to_list(), items["demand_class"].to_list(), strict=True))


def _classes(
    known: dict[str, str], arrays: dict[tuple[str, str], np.ndarray], chunk: list[str]
) -> dict[str, str]:
    """Demand class of the `chunk`'s items: from `known`, else classified from their history."""
    out = {i: known[i] for i in chunk if i in known}
    for (item, site), y in arrays.items():
        if site == "" and item not in out:
            out[item] = classify(y) if len(y) else "zero"
    return out


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


# ---------------------------------------------------------------- the recommendation


@dataclass
class StockRow:
    """One stock row on its way to a recommendation."""

    stock: dict[str, Any]
    cls: str
    share: float
    path: np.ndarray  # expected daily demand at the site over the forecast horizon
    sigma: np.ndarray | None  # daily standard deviation from the 80% interval
    history: np.ndarray  # recent daily demand at the site (or of the item)
    notes: list[str]
    history_given: bool = True  # False: the run had no demand history to read
    period: str | None = None  # the history's rows are per period (W, M, Q, Y) totals, spread
    as_of: date | None = None  # the history's last day
    even: bool = False  # the item split evenly over its stock sites (no site history to share it by)

    @property
    def annual(self) -> float:
        return float(self.path.mean()) * 365.0 if len(self.path) else 0.0


def recommend(forecast: Table, stock: pl.DataFrame,
              history: Table | None = None,
              backtests: Table | None = None, items: pl.DataFrame | None = None,
              policy: Policy | None = None, freq: str | None = None, today: date | None = None,
              series_start: date | None = None, snapshot: date | None = None) -> pl.DataFrame:
    """One recommendation row per stock row whose item has an ensemble forecast (table kind
    ``recommendations``, columns of SCHEMA), most urgent first. Rows of unknown items are skipped
    (see nova_ray.io.stock.unknown_items for the warnings).

    forecast: item_id, date, forecast[, lo_80, hi_80][, model] (only model 'ensemble' is used).
    stock: validated snapshot (nova_ray.io.stock.read_stock); missing optional columns are allowed.
    history: item_id, date, quantity[, site] (daily demand) for the bootstrap and site shares.
    backtests: item_id, origin, date, forecast, actual[, model] of the ensemble.
    items: item_id, demand_class (the run's items table); else classified from the history.
    freq: the forecasts' frequency (D, W, M, Q, Y): each period spread over its days; None: the
    days between forecast dates.
    today: the run's date: a stock-out projected before it (a history that ends weeks earlier) is
    critical; None: not checked.
    series_start: every item's history starts on this day at the latest (`[forecast]
    series_start = "file"`: an export that lists items only on the days they were used).
    snapshot: the day the stock snapshot describes (its end), when later than the history's last
    day: the forecast's days up to it count as consumed (None: the history's last day).
    Forecasts, history and backtests may be LazyFrames (tables spilled to Parquet): they are read
    a chunk of items at a time, as are the per-item arrays built from them.
    """
    policy = policy or Policy()
    fc_rows = ensemble_lazy(forecast)
    forecast_items, first_day = ensemble_items(fc_rows)
    if first_day is None or stock.height == 0:
        return pl.from_arrow(SCHEMA.empty_table())
    period = per_period(history, freq)
    as_of = stock_day(first_day, history, period)
    hist_end, as_of = as_of, max(as_of, snapshot or as_of)  # the history's last day, the stock's
    bt_rows = ensemble_lazy(backtests)
    if bt_rows is not None and not {"actual", "origin"} <= set(bt_rows.collect_schema().names()):
        bt_rows = None  # not the errors the residual method needs
    stock_rows = _stock_frame(stock).filter(pl.col("item_id").is_in(forecast_items)).to_dicts()
    by_item: dict[str, list[dict[str, Any]]] = {}
    for r in stock_rows:
        by_item.setdefault(r["item_id"], []).append(r)
    known = sorted(by_item)
    run_classes = _run_classes(items)
    chunks = [known[k : k + HISTORY_CHUNK] for k in range(0, len(known), HISTORY_CHUNK)]

    def prepared(chunk: list[str]) -> list[StockRow]:
        """The chunk's stock rows prepared from its forecasts and history (only the chunk's are read)."""
        fc = rows_of(fc_rows, chunk)
        arrays, shares, hist_site = history_arrays(history, hist_end, policy.history_days, chunk, period,
                                                   series_start)
        paths = {k: _after(p, as_of) for k, p in (daily_paths(fc, freq) if fc is not None else {}).items()}
        rows = _prepare([r for i in chunk for r in by_item[i]], paths, arrays, shares, hist_site,
                        _classes(run_classes, arrays, chunk), policy, history is not None)
        for r in rows:
            r.period, r.as_of = period, hist_end
        return rows

    def segments_of(chunk: list[str]) -> dict[str, list[np.ndarray]]:
        bt = rows_of(bt_rows, chunk)
        return residual_segments(bt) if bt is not None else {}

    def annual(rows: list[StockRow]) -> list[tuple[str, float, float | None]]:
        return [(r.stock["item_id"], r.annual, _num(r.stock["unit_cost"])) for r in rows]

    # ABC ranks every item by its annual value: a first pass over the chunks keeps only those
    # values, the second prepares each chunk again and recommends, so the history of all items
    # (~15 KB per item and site), their forecast paths and backtest errors are never held at
    # once; a single chunk is prepared once
    kept = prepared(chunks[0]) if len(chunks) == 1 else None
    values = annual(kept) if kept is not None else [a for c in chunks for a in annual(prepared(c))]
    abc, no_cost = _abc(values, policy)
    out = []
    for c in chunks:
        segments = segments_of(c)
        for r in kept if kept is not None else prepared(c):
            if r.stock["item_id"] in no_cost:
                r.notes.append("ABC by quantity (no unit_cost)")
            out.append(_recommend_row(r, abc[r.stock["item_id"]], segments.get(r.stock["item_id"]), as_of,
                                      policy, today))
    if not out:
        return pl.from_arrow(SCHEMA.empty_table())
    return sort_recommendations(pl.from_arrow(pa.Table.from_pylist(out, schema=SCHEMA)))


def _after(path: tuple[date, np.ndarray, np.ndarray | None], as_of: date
           ) -> tuple[date, np.ndarray, np.ndarray | None]:
    """A daily path from the day after `as_of` (the days up to it dropped: consumed already). A
    history that passed the forecast's last day leaves its last week's rate, never no demand."""
    first, mean, sig = path
    skip = (as_of - first).days + 1
    if skip <= 0:
        return path
    if skip >= len(mean) and len(mean):
        rate = extend_path(mean, len(mean) + 1)[-1:]
        spread = None if sig is None else np.sqrt(extend_path(sig**2, len(sig) + 1)[-1:])
        return as_of + timedelta(days=1), rate, spread
    return as_of + timedelta(days=1), mean[skip:], sig[skip:] if sig is not None else None


def _prepare(stock_rows: list[dict[str, Any]], paths: dict[str, tuple[date, np.ndarray, np.ndarray | None]],
             arrays: dict[tuple[str, str], np.ndarray], shares: dict[str, dict[str, float]], hist_site: bool,
             classes: dict[str, str], policy: Policy, history_given: bool = True) -> list[StockRow]:
    """Each stock row's expected daily demand at its site (site share, intermittent level).

    Site shares come from the history's sites when it has any of the item's stock sites; else the
    item's demand (forecast and history alike) is split evenly over its stock rows: a history
    without sites, or whose site names match none of the stock's, never zeroes an item."""
    n_sites: dict[str, int] = {}
    matched: set[str] = set()  # items with a stock site that has demand in the history
    for r in stock_rows:
        n_sites[r["item_id"]] = n_sites.get(r["item_id"], 0) + 1
        if r["site"] and hist_site and shares.get(r["item_id"], {}).get(r["site"], 0.0) > 0.0:
            matched.add(r["item_id"])
    rows = []
    for r in stock_rows:
        item, site = r["item_id"], r["site"]
        notes: list[str] = []
        _, mean, sig = paths[item]
        share = 1.0
        per_site = bool(site and hist_site and item in matched)
        if per_site:
            share = shares[item].get(site, 0.0)
            if share == 0.0:
                notes.append("no demand history at this site: site share 0")
            elif share < 1.0:
                notes.append(f"site share {share:.2f} of the item's history")
        elif site and n_sites[item] > 1:
            share = 1.0 / n_sites[item]
            why = _unmatched(item, site, hist_site, shares, n_sites[item])
            notes.append(f"{why}: split evenly over {n_sites[item]} sites")
        elif site and hist_site:
            notes.append(f"{_unmatched(item, site, hist_site, shares, 1)}: the item's whole demand")
        cls = classes.get(item, "smooth")
        y = arrays.get((item, site if per_site else ""), np.zeros(0))
        if not per_site and share < 1.0:  # the item's history, split like its forecast
            y = y * share
        path = mean * share
        if cls in INTERMITTENT and len(y) >= policy.min_history_days:
            rate = float(y[-policy.rate_days:].mean())
            notes.append(f"{cls}: rate from the recent history {rate:.3g}/day "
                         f"(last {min(len(y), policy.rate_days)} d; forecast {path.mean():.3g}/day)")
            path = np.full(len(mean), rate)
        sigma = None if sig is None else sig * share
        even = not per_site and share < 1.0
        rows.append(StockRow(r, cls, share, path, sigma, y, notes, history_given, even=even))
    return rows


def _unmatched(item: str, site: str, hist_site: bool, shares: dict[str, dict[str, float]],
               n_sites: int) -> str:
    """Why a stock row gets no site share of its own: what the history says of the item's sites."""
    if not hist_site:
        return "no site in the history"
    if n_sites > 1:  # none of the item's stock sites has demand there
        return "none of its stock sites in the history with demand"
    known = site in shares.get(item, {})
    return "no demand at this site in the history" if known else "site not in the history"


def _abc(annual: list[tuple[str, float, float | None]], policy: Policy) -> tuple[dict[str, str], set[str]]:
    """ABC class per item from its rows' (item, annual demand, unit cost): by annual value, or by
    annual quantity for items with a missing unit_cost (returned as the second element)."""
    qty: dict[str, float] = {}
    value: dict[str, float] = {}
    no_cost: set[str] = set()
    for item, a, cost in annual:
        qty[item] = qty.get(item, 0.0) + a
        value[item] = value.get(item, 0.0) + a * (cost or 0.0)
        if cost is None:
            no_cost.add(item)
    abc: dict[str, str] = {}
    for pool, v in ((sorted(set(qty) - no_cost), value), (sorted(no_cost), qty)):
        classes = abc_classes(np.array([v[i] for i in pool]), policy.abc_a, policy.abc_b)
        abc.update({i: str(c) for i, c in zip(pool, classes, strict=True)})
    return abc, no_cost


def _recommend_row(r: StockRow, abc: str, segs: list[np.ndarray] | None, as_of: date,
                   policy: Policy, today: date | None = None) -> dict[str, Any]:
    """Safety stock, reorder point, order-up-to, order quantity and stock-out for one row."""
    s, notes = r.stock, r.notes
    p = _num(s["service_level"]) or policy.service_level(abc)
    lead = int(s["lead_time_days"])
    horizon = len(r.path)
    if lead == 0:  # an ERP's 0 is often "not maintained": said, as it all but zeroes the reorder point
        cover = ", a safety stock for the day to the next review" if policy.undershoot else " or safety stock"
        notes.append(f"lead time 0 d: no lead-time demand{cover} (is the lead time maintained?)")
    if lead > horizon:
        notes.append(f"lead time {lead} d > horizon {horizon} d: extended at the last-week mean rate")
    full = extend_path(r.path, max(lead + policy.review_days, horizon))
    ltd = float(full[:lead].sum())
    ss, method = safety_stock(r, p, lead, ltd, full, segs, policy)
    if r.even and ss > 0:
        # the item's spread x the share assumes the sites move together; nothing says they do, and
        # sites of independent demand need the item's x sqrt(share) (4 sites: 0.77 service of 0.95)
        ss /= math.sqrt(r.share)
        notes.append(f"safety stock x {1 / math.sqrt(r.share):.2f}: the sites' demand taken as independent")
    rop = ltd + ss
    unit_cost = _num(s["unit_cost"])
    q_eoq = eoq(r.annual, _num(s["order_cost"]), unit_cost,
                _num(s["holding_cost_rate"]) or policy.holding_cost_rate)
    if q_eoq is None:
        notes.append(f"no EOQ (order_cost or unit_cost missing or 0): cover {policy.review_days} d of demand")
        cover = float(full[lead : lead + policy.review_days].sum())
    else:
        cover = q_eoq
    on_hand, on_order = float(s["on_hand"]), _num(s["on_order"]) or 0.0
    position = on_hand + on_order
    arrival = lead  # open orders arrive at the end of the lead time, unless the snapshot says when
    due = s.get("on_order_due")
    if due is not None and on_order > 0:
        arrival = max(0, (due - as_of).days - 1)  # day t is as_of + t: in at the start of day (due - as_of)
        late = " (overdue: taken as arriving the next day)" if due <= as_of else ""
        notes.append(f"on order due {due}{late}")
    qty, target = 0.0, rop + cover
    if on_order > 0 and arrival > lead:
        # due after an order placed now would arrive: it does not protect the lead time (a supplier's
        # delay left the position above the reorder point, no order, and the shelf empty for weeks);
        # an order now bridges to it, the demand until it comes and the safety stock
        position = on_hand
        target = min(target, float(extend_path(r.path, arrival)[:arrival].sum()) + ss)
        notes.append(f"on order due after the lead time (day {arrival + 1} > {lead + 1}): not counted "
                     "against the reorder point; an order bridges to it")
    if position <= rop + 1e-9:
        qty = round_order(target - position, _num(s["pack_size"]), _num(s["min_order_qty"]))
    position = on_hand + on_order
    # projected past the horizon (at the rate that extends the path) over the lead time and review
    # period, and at least the `medium_days` that urgency looks at: a short horizon never hides one
    days = stockout(extend_path(r.path, max(len(full), policy.medium_days)), on_hand, on_order, arrival)
    if on_hand < 0:  # units owed already: out now, whatever the path
        days = 0.0
        notes.append(f"on hand {on_hand:g}: {-on_hand:g} owed (backorders) count against the position")
    if days is not None and days > horizon:
        notes.append(f"stock-out past the {horizon}-day horizon: projected at the last-week mean rate")
    if days is not None and days < lead:
        notes.append(f"stock-out expected before a new order can arrive (lead time {lead} d)")
    rate = r.annual / 365.0
    if rate > 0 and position - (rop + cover) > policy.excess_days * rate:
        notes.append(f"excess stock: position {position:g} is {position / rate:.0f} days of demand, "
                     f"{(position - rop - cover) / rate:.0f} above the order-up-to level")
    if r.history_given and on_hand > 0 and len(r.history) >= IDLE_DAYS and not r.history.any():
        notes.append(f"no demand in the last {len(r.history)} d: {on_hand:g} on hand idle (excess stock?)")
    elif r.history_given and 0 < len(r.history) < NEW_DAYS:
        notes.append(f"{len(r.history)} d of history (from its first row): a new item, or an export "
                     "without its earlier days? ([forecast] series_start = \"file\" starts every item "
                     "at the file's first date)")
    out_day = as_of + timedelta(days=math.ceil(days)) if days is not None else None
    # (an empty shelf, 0 days, is out now: its day is the history's last, not a date past)
    past = days is not None and days > 0 and today is not None and out_day is not None and out_day < today
    if past:
        notes.append(f"stock-out projected for {out_day}, before the run date {today} (stock as of {as_of})")
    return {
        "item_id": s["item_id"], "site": s["site"], "abc_class": abc, "demand_class": r.cls,
        "service_level": p, "on_hand": on_hand, "on_order": on_order, "lead_time_days": lead,
        "lead_time_demand": ltd, "safety_stock": ss, "reorder_point": rop, "order_up_to": rop + cover,
        "order_qty": qty, "eoq": q_eoq,
        "stockout_date": out_day, "days_to_stockout": days,
        "urgency": urgency(days, policy, lead, qty > 0, past), "unit_cost": unit_cost,
        "order_value": round(qty * unit_cost, 2) if unit_cost is not None else None, "method": method,
        "notes": "; ".join(notes),
    }


IDLE_DAYS = 90  # a history window this long without demand: the stock on hand is idle
NEW_DAYS = 90  # an item with a shorter history is flagged as new

# a row's notes as short flags, for the terminal and the report (the notes say the rest)
FLAGS = (
    ("d of history (from its first row)", "new"),
    ("normal approximation", "short history"),
    ("no demand in the last", "idle stock"),
    ("excess stock:", "excess"),
    ("one-off", "one-off capped"),
    ("before a new order can arrive", "expedite"),
    ("before the run date", "date past"),
    ("rate from the recent history", "history rate"),
    ("site share 0", "no site demand"),
    ("safety stock 0", "no safety stock"),
    ("lead time 0 d", "no lead time"),
)


def flags(notes: str | None) -> str:
    """The short flags of a row's `notes` ("new, short history"), "" when none apply."""
    text = notes or ""
    return ", ".join(flag for said, flag in FLAGS if said in text)


def _stock_frame(stock: pl.DataFrame) -> pl.DataFrame:
    """The stock snapshot with every optional column present (nulls where absent)."""
    cols = {"site": pl.String, "on_order": pl.Float64, "unit_cost": pl.Float64, "order_cost": pl.Float64,
            "holding_cost_rate": pl.Float64, "min_order_qty": pl.Float64, "pack_size": pl.Float64,
            "service_level": pl.Float64, "on_order_due": pl.Date}
    df = stock.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in cols.items()
                             if c not in stock.columns])
    return df.with_columns(pl.col("item_id").cast(pl.String), pl.col("site").cast(pl.String).fill_null(""),
                           pl.col("on_hand").cast(pl.Float64), pl.col("lead_time_days").cast(pl.Int64),
                           *[pl.col(c).cast(t) for c, t in cols.items() if c != "site"])


def sort_recommendations(df: pl.DataFrame) -> pl.DataFrame:
    """Most urgent first: urgency, days to stock-out, then order value (largest first)."""
    rank = pl.col("urgency").replace_strict({u: i for i, u in enumerate(URGENCY)}, default=len(URGENCY))
    return df.sort([rank, "days_to_stockout", "order_value", "item_id", "site"],
                   descending=[False, False, True, False, False], nulls_last=True)


def summarize(recs: pl.DataFrame, top: int = 10) -> dict[str, Any]:
    """Counts by urgency, ABC and method, orders and their value, and the most urgent rows."""
    counts = {u: int((recs["urgency"] == u).sum()) if recs.height else 0 for u in URGENCY}
    orders = recs.filter(pl.col("order_qty") > 0) if recs.height else recs
    head = sort_recommendations(recs).head(top) if recs.height else recs
    return {
        "rows": recs.height,
        "urgency": counts,
        "abc": {c: int((recs["abc_class"] == c).sum()) for c in "ABC"} if recs.height else {},
        "methods": dict(sorted(recs.group_by("method").len().iter_rows())) if recs.height else {},
        "orders": orders.height,
        "order_value": float(orders["order_value"].fill_null(0.0).sum()) if orders.height else 0.0,
        "orders_valued": int(orders["order_value"].is_not_null().sum()) if orders.height else 0,
        "most_urgent": [
            {"item_id": r["item_id"], "site": r["site"], "urgency": r["urgency"],
             "days_to_stockout": r["days_to_stockout"], "order_qty": r["order_qty"]}
            for r in head.iter_rows(named=True)
        ],
    }


def orders_text(summary: dict[str, Any]) -> str:
    """`orders N worth V` for a summary of `summarize`, saying when the value leaves out orders
    of items without a unit_cost (their value is unknown, not 0)."""
    n, value = summary["orders"], summary["order_value"]
    valued = summary.get("orders_valued", n)  # a record written before the count: all valued
    if n == 0:
        return "orders 0"
    if valued == 0:
        return f"orders {n} (value unknown: no unit_cost)"
    if valued < n:
        return f"orders {n} worth {value:,.2f} for {valued} of {n} with a unit_cost"
    return f"orders {n} worth {value:,.2f}"
