"""Inventory benchmark: nova-ray's recommendations against a naive reorder-point rule, simulated.

    python benchmarks/inventory.py [--items 60] [--days 1095] [--holdout 120] [--cpus 2]
                                   [--models naive,ets,theta,croston,tsb] [--horizon 30] [--work DIR]
                                   [--refresh DAYS]

1. Demo data (seed 7); the final `--holdout` days are held back.
2. nova-ray forecasts the history before the hold-out with the pipeline's own pieces (load_series,
   run_engine on local Ray, assemble: exactly what `run_forecast` computes, kept in memory so the
   ensemble's backtests are at hand), then `recommend` gives reorder point and order-up-to level.
3. Naive rule from the raw history (last 365 days): reorder point = mean x L + 2 std x sqrt(L);
   order-up-to = reorder point + EOQ (D = mean x 365) or + `review_days` of mean demand when costs
   are missing -- the same order-up-to/EOQ rule as nova-ray.
4. Every policy is simulated day by day over the hold-out from the same on-hand (above every
   policy's reorder point by the recent mean daily demand, nothing on order): demand of the day is
   served from stock (lost sales), then the position (on hand + on order) is reviewed; at or
   below the reorder point an order up to the order-up-to level (whole packs, at least the
   minimum) is placed and arrives after the lead time, before the demand of day t + L + 1.
5. Policies: nova-ray with the ABC service levels; nova-ray with 0.977 for every item (what the
   naive rule's z = 2 means for a normal distribution); the naive rule. Then nova-ray with one
   service level for every item, swept, gives the stock it needs at the naive rule's service.

`--refresh DAYS` re-forecasts every DAYS days of the hold-out from the history up to that day and
both policies take their new parameters from then on (orders in flight stay), as a user who
re-runs nova-ray would; the naive rule is recomputed from its last 365 days at the same days.

Simplifications: by default one forecast at the start of the hold-out (past the horizon the last
forecast week's mean rate) and fixed parameters over the hold-out; one site per item.

Metrics (pooled over items): cycle service level = share of order cycles (placement to arrival,
orders arriving within the hold-out) without unmet demand; target = the cycle-weighted mean of the
items' service levels; fill rate = served / demanded units; average stock value = mean over days
of sum(on hand x unit cost); stock-outs = item-days with unmet demand.
"""

from __future__ import annotations

import argparse
import atexit
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

FLAT = 0.977  # the naive rule's z = 2 as a normal service level, for a like-for-like comparison
SWEEP = (0.80, 0.85, 0.90, 0.93, 0.95, 0.977, 0.99)


@dataclass
class Params:
    """One item's policy: reorder point, order-up-to level and ordering rules."""

    rop: float
    up_to: float
    lead: int
    pack: float | None
    moq: float | None


@dataclass
class SimResult:
    cycles: int = 0
    cycles_ok: int = 0
    demand: float = 0.0
    served: float = 0.0
    stockout_days: int = 0
    stock_value: np.ndarray | None = None
    orders: int = 0


def simulate(
    demand: np.ndarray, on_hand: float, p: Params | list[Params], unit_cost: float, refresh: int = 0
) -> SimResult:
    """Daily review, lost sales; an order placed at the end of day t arrives before the demand of t+L+1.
    A list of Params: the k-th applies from day k x `refresh` on (re-forecast every `refresh` days)."""
    from nova_ray.recommend import round_order

    schedule = p if isinstance(p, list) else [p]
    p = schedule[0]
    days = len(demand)
    arrivals = np.zeros(days + p.lead + 2)
    short = np.zeros(days, dtype=bool)
    orders: list[int] = []
    res = SimResult(stock_value=np.zeros(days))
    stock, on_order = float(on_hand), 0.0
    for t in range(days):
        if refresh and t % refresh == 0:
            p = schedule[min(t // refresh, len(schedule) - 1)]
        stock += arrivals[t]
        on_order -= arrivals[t]
        d = float(demand[t])
        served = min(stock, d)
        stock -= served
        res.demand += d
        res.served += served
        if d - served > 1e-9:
            short[t] = True
            res.stockout_days += 1
        if stock + on_order <= p.rop + 1e-9:
            q = round_order(p.up_to - stock - on_order, p.pack, p.moq)
            if q > 0:
                arrivals[t + p.lead + 1] += q
                on_order += q
                orders.append(t)
        res.stock_value[t] = stock * unit_cost
    res.orders = len(orders)
    for t in orders:  # lead times are per item, the same in every schedule entry
        if t + p.lead + 1 <= days:  # the cycle ends inside the hold-out
            res.cycles += 1
            res.cycles_ok += int(not short[t + 1 : t + p.lead + 1].any())
    return res


def naive_params(y: np.ndarray, stock: dict, review_days: int, holding_default: float) -> Params:
    """mean x L + 2 std x sqrt(L) from the raw daily history; same order-up-to/EOQ rule as nova-ray."""
    from nova_ray.recommend import eoq

    lead = int(stock["lead_time_days"])
    mu, sd = float(y.mean()), float(y.std())
    rop = mu * lead + 2.0 * sd * math.sqrt(lead)
    rate = stock["holding_cost_rate"] or holding_default
    q = eoq(mu * 365.0, stock["order_cost"], stock["unit_cost"], rate)
    return Params(rop, rop + (q if q is not None else mu * review_days), lead, stock["pack_size"],
                  stock["min_order_qty"])


def forecast(train_path: Path, work: Path, args: argparse.Namespace) -> tuple[pl.DataFrame, ...]:
    """Ensemble forecasts, ensemble backtests and the items table for the training history (cached)."""
    files = [work / f"{n}.parquet" for n in ("ens_fc", "ens_bt", "items")]
    if all(f.exists() for f in files):
        return tuple(pl.read_parquet(f) for f in files)
    from nova_ray.assemble import assemble
    from nova_ray.config import load_config
    from nova_ray.fit_stage import Silent, run_engine
    from nova_ray.pipeline import engine_spec, load_series

    cfg = load_config(None, {"data": str(train_path), "horizon": args.horizon, "models": args.models,
                             "num_cpus": args.cpus, "output": str(work / "results")}, env={}, dotenv=None)
    series, _ = load_series(cfg, None)
    t0 = time.perf_counter()
    results, backend, _ = run_engine(series, engine_spec(cfg), cfg, Silent(), use_ray=True)
    _, bt, _, items, ens_fc = assemble(results)
    print(f"forecast: {len(series)} items on {backend} in {time.perf_counter() - t0:.0f} s")
    ens_bt = bt.filter(pl.col("model") == "ensemble")
    for df, f in zip((ens_fc, ens_bt, items), files, strict=True):
        df.write_parquet(f)
    return ens_fc, ens_bt, items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--holdout", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--models", default="naive,ets,theta,croston,tsb")
    ap.add_argument("--bootstrap-only", action="store_true",
                    help="ignore the ensemble backtests (what `nova-ray recommend` does without them)")
    ap.add_argument("--no-undershoot", action="store_true",
                    help="Policy(undershoot=False): textbook reorder points")
    ap.add_argument("--work", type=Path, default=None, help="work folder; forecasts found there are reused")
    ap.add_argument("--refresh", type=int, default=0,
                    help="re-forecast and re-recommend every N days of the hold-out, from the history up to "
                         "that day (both policies); 0: one forecast at the start")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from nova_ray.demo import generate_demo
    from nova_ray.recommend import Policy, recommend

    work = args.work or Path(tempfile.mkdtemp(prefix="nova-ray-inventory-"))
    if not args.work:
        atexit.register(shutil.rmtree, work, True)
    else:  # data and forecasts are reused only for the arguments that made them
        work = work / (f"items{args.items}-days{args.days}-seed{args.seed}-holdout{args.holdout}-"
                       f"h{args.horizon}-{args.models.replace(',', '+')}-refresh{args.refresh}")
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "demo" / "demand.parquet").exists():
        generate_demo(work / "demo", items=args.items, days=args.days, seed=args.seed)
    demand = pl.read_parquet(work / "demo" / "demand.parquet")
    cutoff = demand["date"].max() - timedelta(days=args.holdout)
    train = demand.filter(pl.col("date") <= cutoff)
    test = demand.filter(pl.col("date") > cutoff)
    refresh = args.refresh if 0 < args.refresh < args.holdout else 0
    seg_starts = list(range(0, args.holdout, refresh)) if refresh else [0]
    policy = Policy(undershoot=not args.no_undershoot)
    stock = pl.read_parquet(work / "demo" / "stock.parquet")
    recent = train.filter(pl.col("date") > cutoff - timedelta(days=90)).group_by("item_id").agg(
        pl.col("quantity").mean().alias("mu90"))
    stock = stock.join(recent, on="item_id").with_columns(on_order=pl.lit(0.0))
    srows = {r["item_id"]: r for r in stock.to_dicts()}

    # one forecast per segment, from the history up to the segment's first day
    segments = []
    for k, s0 in enumerate(seg_starts):
        hist = demand.filter(pl.col("date") <= cutoff + timedelta(days=s0))
        seg_work = work if k == 0 else work / f"refresh{s0}"
        seg_work.mkdir(parents=True, exist_ok=True)
        path = seg_work / "train.parquet"
        hist.write_parquet(path)
        fc, bt_k, it = forecast(path, seg_work, args)
        segments.append((hist, fc, None if args.bootstrap_only else bt_k, it, cutoff + timedelta(days=s0)))
    train = segments[0][0]

    def nova_all(service_level: float | None) -> list[pl.DataFrame]:
        st = stock if service_level is None else stock.with_columns(service_level=pl.lit(service_level))
        return [recommend(fc, st, history=h, backtests=b, items=it, policy=policy)
                for h, fc, b, it, _ in segments]

    def to_params(dfs: list[pl.DataFrame]) -> dict[str, list[Params]]:
        out: dict[str, list[Params]] = {}
        for df in dfs:
            for r in df.iter_rows(named=True):
                out.setdefault(r["item_id"], []).append(
                    Params(r["reorder_point"], r["order_up_to"], r["lead_time_days"],
                           srows[r["item_id"]]["pack_size"], srows[r["item_id"]]["min_order_qty"]))
        return out

    t0 = time.perf_counter()
    abc_all = nova_all(None)
    t_rec = (time.perf_counter() - t0) / len(segments)
    abc = abc_all[0]
    flat = f"nova-ray p={FLAT}"
    flat_all = nova_all(FLAT)
    recs = {"nova-ray": abc, flat: flat_all[0]}
    y_test = {k[0]: g.sort("date")["quantity"].to_numpy() for k, g in test.group_by("item_id")}
    params = {"nova-ray": to_params(abc_all), flat: to_params(flat_all)}
    params["naive"] = {}
    for h, *_, day in segments:
        recent_hist = {k[0]: g.sort("date")["quantity"].to_numpy()
                       for k, g in h.filter(pl.col("date") > day - timedelta(days=365)).group_by("item_id")}
        for i, s in srows.items():
            params["naive"].setdefault(i, []).append(
                naive_params(recent_hist[i], s, policy.review_days, policy.holding_cost_rate))
    classes = dict(zip(abc["item_id"], abc["demand_class"], strict=True))
    # the same start for every policy: above every reorder point by the recent mean daily demand
    start = {i: float(math.ceil(max(params[n][i][0].rop for n in params) + srows[i]["mu90"]))
             for i in classes}

    def run(pol: dict[str, list[Params]], target: dict[str, float] | None = None
            ) -> tuple[SimResult, dict, float]:
        tot = SimResult(stock_value=np.zeros(args.holdout))
        by_class: dict[str, list[int]] = {}
        weighted = 0.0
        for item, cls in classes.items():
            res = simulate(y_test[item], start[item], pol[item], srows[item]["unit_cost"], refresh)
            tot.cycles += res.cycles
            tot.cycles_ok += res.cycles_ok
            tot.demand += res.demand
            tot.served += res.served
            tot.stockout_days += res.stockout_days
            tot.orders += res.orders
            tot.stock_value += res.stock_value
            c = by_class.setdefault(cls, [0, 0])
            c[0] += res.cycles
            c[1] += res.cycles_ok
            weighted += res.cycles * (target or {}).get(item, float("nan"))
        return tot, by_class, weighted / tot.cycles if tot.cycles else float("nan")

    def csl(t: SimResult) -> float:
        return t.cycles_ok / t.cycles if t.cycles else float("nan")

    def value(t: SimResult) -> float:
        return float(t.stock_value.mean())

    names = list(params)
    sims = {n: run(params[n], dict(zip(recs[n]["item_id"], recs[n]["service_level"], strict=True))
                   if n in recs else None) for n in names}
    totals = {n: sims[n][0] for n in names}
    mode = " (bootstrap only)" if args.bootstrap_only else ""
    every = f", re-forecast every {refresh} days" if refresh else ", one forecast"
    table = Table(title=f"inventory: {len(classes)} items, hold-out {args.holdout} days, models "
                        f"{args.models}, horizon {args.horizon}{every}{mode}")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    for n in names[:-1]:
        table.add_column(f"{n} / naive", justify="right")
    rows: list[tuple[str, list[float], str]] = [
        ("cycle service level", [csl(totals[n]) for n in names], "{:.3f}"),
        ("target (cycle-weighted)", [sims[n][2] for n in names], "{:.3f}"),
        ("fill rate", [totals[n].served / totals[n].demand for n in names], "{:.3f}"),
        ("average stock value", [value(totals[n]) for n in names], "{:,.0f}"),
        ("stock-outs (item-days)", [totals[n].stockout_days for n in names], "{:,.0f}"),
        ("order cycles", [totals[n].cycles for n in names], "{:,.0f}"),
        ("orders placed", [totals[n].orders for n in names], "{:,.0f}"),
    ]
    for label, vals, fmt in rows:
        cells = ["-" if isinstance(v, float) and math.isnan(v) else fmt.format(v) for v in vals]
        ratios = [f"{v / vals[-1]:.3f}" if vals[-1] and not math.isnan(vals[-1]) else "-" for v in vals[:-1]]
        table.add_row(label, *cells, *ratios)
    for cls in ("smooth", "erratic", "intermittent", "lumpy"):
        cells = []
        for n in names:
            c = sims[n][1].get(cls, [0, 0])
            cells.append(f"{c[1] / c[0]:.3f} ({c[0]})" if c[0] else "-")
        table.add_row(f"  CSL {cls} (cycles)", *cells, *[""] * (len(names) - 1))
    console = Console()
    console.print(table)

    # stock needed for a given service: nova-ray with one service level for all items, swept
    nv = totals["naive"]
    frontier = Table(title="nova-ray with one service level for every item (same start, same simulation)")
    for col in ("service level", "cycle service", "fill rate", "average stock value", "vs naive stock"):
        frontier.add_column(col, justify="right")
    points = []
    for p in SWEEP:
        t = run(to_params(nova_all(p)))[0]
        points.append((csl(t), value(t)))
        frontier.add_row(f"{p:.3f}", f"{csl(t):.3f}", f"{t.served / t.demand:.3f}", f"{value(t):,.0f}",
                         f"{value(t) / value(nv):.3f}")
    console.print(frontier)
    # the second test on simulated policies only: the least stock among the swept nova-ray
    # policies whose cycle service is at least the naive rule's
    reach = [(p, c, v) for p, (c, v) in zip(SWEEP, points, strict=True) if c >= csl(nv)]
    if reach:
        p, c, v = min(reach, key=lambda r: r[2])
        print(f"least stock at >= the naive rule's cycle service (simulated): service level {p:.3f} -> "
              f"cycle service {c:.3f} vs {csl(nv):.3f}, average stock {v / value(nv) - 1:+.1%} vs naive; "
              f"lower stock at equal or better service: {v < value(nv)}")
    else:
        print(f"no swept nova-ray policy reaches the naive rule's cycle service {csl(nv):.3f}")
    pts = sorted(points)
    xs, ys = np.array([x for x, _ in pts]), np.array([y for _, y in pts])
    at_naive = float(np.interp(csl(nv), xs, ys)) if xs[0] <= csl(nv) <= xs[-1] else float("nan")

    methods = dict(sorted(abc.group_by("method").len().iter_rows()))
    print(f"safety-stock methods: {methods}; recommend() took {t_rec:.2f} s for {len(classes)} items")
    for n in names[:-1]:
        gap = csl(totals[n]) - sims[n][2]
        print(f"{n}: service within 2 points of its target: {abs(gap) <= 0.02} (gap {gap:+.3f}); "
              f"stock vs naive {value(totals[n]) / value(nv) - 1:+.1%} at "
              f"{csl(totals[n]) - csl(nv):+.3f} cycle service")
    if not math.isnan(at_naive):
        print(f"at the naive rule's cycle service ({csl(nv):.3f}) nova-ray needs {at_naive:,.0f} average "
              f"stock ({at_naive / value(nv) - 1:+.1%} vs naive; interpolated on the sweep)")


if __name__ == "__main__":
    main()
