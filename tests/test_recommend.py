"""Recommendations on constructed cases with known answers, and `nova-ray recommend` end to end."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

import nova_ray.cli.recommend  # noqa: F401  (registers the command)
from nova_ray.cli import app
from nova_ray.io.demand import spill_columns
from nova_ray.io.recommendations import amend_run
from nova_ray.io.results import ResultWriter
from nova_ray.recommend import (
    HISTORY_COLUMNS,
    SCHEMA,
    Policy,
    abc_classes,
    eoq,
    extend_path,
    flags,
    history_frame,
    orders_text,
    recommend,
    round_order,
    stockout,
    summarize,
    urgency,
)
from nova_ray.recommend_inputs import Z80, daily_paths, residual_segments
from nova_ray.replenishment import block_bootstrap
from nova_ray.schemas import TABLES

START = date(2024, 1, 1)  # first forecast day; as_of is the day before
NO_UNDERSHOOT = Policy(undershoot=False)


def forecast(paths: dict[str, np.ndarray | float], horizon: int = 30, width: float = 0.0) -> pl.DataFrame:
    rows = []
    for item, v in paths.items():
        v = np.broadcast_to(np.asarray(v, dtype=float), (horizon,))
        for t in range(horizon):
            rows.append({"item_id": item, "date": START + timedelta(days=t), "forecast": v[t],
                         "lo_80": max(v[t] - width, 0.0), "hi_80": v[t] + width,
                         "lo_95": max(v[t] - 2 * width, 0.0), "hi_95": v[t] + 2 * width})
    return pl.DataFrame(rows)


def history(series: dict[str, np.ndarray], sites: dict[str, str] | None = None) -> pl.DataFrame:
    frames = []
    for key, y in series.items():
        n = len(y)
        item = key.split("@")[0]
        df = pl.DataFrame({"item_id": [item] * n,
                           "date": [START - timedelta(days=n - i) for i in range(n)],
                           "quantity": np.asarray(y, dtype=float)})
        if sites is not None:
            df = df.with_columns(site=pl.lit(sites[key]))
        frames.append(df)
    return pl.concat(frames)


def backtests(item: str, actual: np.ndarray, fc: np.ndarray, windows: int = 3, h: int = 30) -> pl.DataFrame:
    """Windows that tile the `windows * h` days before START."""
    rows = []
    first = START - timedelta(days=windows * h)
    for w in range(windows):
        origin = first + timedelta(days=w * h)
        for t in range(h):
            i = w * h + t
            rows.append({"item_id": item, "model": "ensemble", "window": w, "origin": origin,
                         "date": origin + timedelta(days=t), "forecast": float(fc[i]),
                         "actual": float(actual[i])})
    return pl.DataFrame(rows)


def stock(**cols: list) -> pl.DataFrame:
    return pl.DataFrame(cols)


def one(df: pl.DataFrame, item: str = "A", site: str | None = None) -> dict:
    sel = df.filter(pl.col("item_id") == item)
    if site is not None:
        sel = sel.filter(pl.col("site") == site)
    assert sel.height == 1
    return sel.row(0, named=True)


# ---------------------------------------------------------------- pure pieces


def test_round_order_pack_and_minimum() -> None:
    assert round_order(0.0, 10, 25) == 0.0 and round_order(-3, 10, 25) == 0.0
    assert round_order(23, 10) == 30 and round_order(20, 10) == 20
    assert round_order(3, 10, 25) == 30  # the minimum, rounded up to whole packs
    assert round_order(2.2) == 3 and round_order(2.2, None, 5) == 5


def test_eoq() -> None:
    assert eoq(1000, 50, 10, 0.25) == pytest.approx((2 * 1000 * 50 / 2.5) ** 0.5)
    assert eoq(1000, None, 10, 0.25) is None and eoq(1000, 50, None, 0.25) is None
    assert eoq(1000, 50, 0.0, 0.25) is None and eoq(0, 50, 10, 0.25) == 0.0


def test_stockout_arithmetic() -> None:
    f = np.full(30, 2.0)
    assert stockout(f, 10) == 5.0 and stockout(f, 9) == 4.5 and stockout(f, 0) == 0.0
    assert stockout(f, 60) == 30.0 and stockout(f, 61) is None
    # on order arrives at the start of day 4 (lead 3): 10 + 10 last until the end of day 10
    assert stockout(f, 10, on_order=10, arrival_day=3) == 10.0
    # arriving after the stock ran out does not undo the stock-out
    assert stockout(f, 4, on_order=100, arrival_day=5) == 2.0
    # a stock-out is demand going unmet: a shelf that just covers the demand is none
    assert stockout(np.r_[10.0, np.zeros(29)], 10) is None
    assert stockout(np.r_[5.0, 5.0, np.zeros(5), 3.0], 10) == 7.0  # unmet on day 8
    assert stockout(f, -3) == 0.0  # units owed: out now
    assert stockout(np.zeros(30), 0) is None
    assert stockout(np.array([0, 0, 3.0]), 0) == 2.0  # empty shelf, first demand on day 3


def test_urgency_thresholds() -> None:
    p = Policy()
    assert [urgency(d, p) for d in (0, 7, 7.01, 14, 30, 30.5, None)] == \
        ["critical", "critical", "high", "high", "medium", "ok", "ok"]
    # a stock-out before an order placed now can arrive, or on a day already past: critical
    assert urgency(12.2, p, lead=45) == "critical" and urgency(12.2, p, lead=10) == "high"
    assert urgency(11.6, p, past=True) == "critical"
    # an order due is never `ok`
    assert urgency(None, p, order_due=True) == "medium" and urgency(45.0, p, order_due=True) == "medium"


def test_abc_classes() -> None:
    # shares before each item: 0, .5, .75, .9, .95, .975
    assert abc_classes(np.array([10, 100, 5, 50, 30, 5])).tolist() == ["B", "A", "C", "A", "A", "C"]
    assert abc_classes(np.array([0.0, 0.0])).tolist() == ["C", "C"]
    assert abc_classes(np.array([1.0])).tolist() == ["A"]


def test_extend_path_uses_last_week_mean() -> None:
    p = np.r_[np.ones(23), np.full(7, 5.0)]
    assert extend_path(p, 40)[30:].tolist() == [5.0] * 10 and len(extend_path(p, 10)) == 10


def test_block_bootstrap_intermittent_is_non_negative_and_sensible() -> None:
    rng = np.random.default_rng(0)
    y = np.where(rng.random(365) < 0.05, rng.integers(3, 11, 365), 0).astype(float)
    s = block_bootstrap([y], 14, 5000, 7, np.random.default_rng(1))
    assert (s >= 0).all() and s.max() <= np.sort(y)[-14:].sum()
    assert abs(s.mean() - 14 * y.mean()) < 0.15 * 14 * y.mean() + 0.5
    q50, q90, q99 = np.quantile(s, [0.5, 0.9, 0.99])
    assert 0 <= q50 <= q90 <= q99 and q90 > s.mean()
    # spans shorter than a block are real spans of the series
    short = block_bootstrap([np.arange(10.0)], 3, 200, 7, np.random.default_rng(2))
    assert set(short) <= {3 * i + 3 for i in range(8)}


# ---------------------------------------------------------------- recommend()


def test_schema_is_registered_and_followed() -> None:
    assert TABLES["recommendations"] == (SCHEMA, None)
    out = recommend(forecast({"A": 1.0}), stock(item_id=["A"], on_hand=[5.0], lead_time_days=[3]),
                    history=history({"A": np.ones(100)}))
    assert out.columns == SCHEMA.names and out.to_arrow().cast(SCHEMA).num_rows == 1
    assert out.schema == pl.from_arrow(SCHEMA.empty_table()).schema


def test_constant_demand_perfect_forecast() -> None:
    """Residual method: zero errors -> no safety stock; reorder point = rate x lead time."""
    fc = forecast({"A": 10.0})
    bt = backtests("A", np.full(90, 10.0), np.full(90, 10.0))
    st = stock(item_id=["A"], on_hand=[500.0], lead_time_days=[7])
    h = history({"A": np.full(365, 10.0)})
    r = one(recommend(fc, st, history=h, backtests=bt, policy=NO_UNDERSHOOT))
    assert r["method"] == "residual" and r["demand_class"] == "smooth"
    assert r["safety_stock"] == pytest.approx(0.0, abs=1e-9)
    assert r["lead_time_demand"] == pytest.approx(70.0) and r["reorder_point"] == pytest.approx(70.0)
    assert r["order_qty"] == 0.0 and r["days_to_stockout"] is None and r["urgency"] == "ok"
    # the history bootstrap agrees on constant demand
    r = one(recommend(fc, st, history=h, policy=NO_UNDERSHOOT))
    assert r["method"] == "bootstrap" and r["safety_stock"] == pytest.approx(0.0, abs=1e-9)
    assert r["reorder_point"] == pytest.approx(70.0)
    # by default the review-day undershoot adds at most one day of demand
    r = one(recommend(fc, st, history=h, backtests=bt))
    assert 0.0 < r["safety_stock"] <= 10.0


def test_zero_demand_no_order_no_stockout() -> None:
    st = stock(item_id=["A"], on_hand=[0.0], lead_time_days=[10], unit_cost=[5.0], order_cost=[100.0],
               pack_size=[10.0], min_order_qty=[50.0])
    r = one(recommend(forecast({"A": 0.0}), st, history=history({"A": np.zeros(200)})))
    assert r["demand_class"] == "zero" and r["reorder_point"] == 0.0 and r["safety_stock"] == 0.0
    assert r["order_qty"] == 0.0 and r["order_value"] == 0.0 and r["eoq"] == 0.0
    assert r["stockout_date"] is None and r["days_to_stockout"] is None and r["urgency"] == "ok"


def test_large_order_on_order_means_no_new_order() -> None:
    st = stock(item_id=["A"], on_hand=[10.0], on_order=[1000.0], lead_time_days=[5])
    r = one(recommend(forecast({"A": 10.0}), st, history=history({"A": np.full(200, 10.0)})))
    assert r["reorder_point"] > 50 and r["order_qty"] == 0.0
    # the open order is assumed to arrive after the lead time: the shelf is empty after one day
    assert r["days_to_stockout"] == pytest.approx(1.0) and r["urgency"] == "critical"
    assert "before a new order can arrive" in r["notes"]
    assert r["stockout_date"] == START  # as_of + 1 day


def test_lead_time_longer_than_horizon() -> None:
    path = np.r_[np.full(23, 1.0), np.full(7, 5.0)]
    st = stock(item_id=["A"], on_hand=[1000.0], lead_time_days=[45])
    r = one(recommend(forecast({"A": path}), st, history=history({"A": np.full(200, 2.0)}),
                      policy=NO_UNDERSHOOT))
    assert r["lead_time_demand"] == pytest.approx(23 + 35 + 15 * 5)
    assert "lead time 45 d > horizon 30 d" in r["notes"]


def test_stockout_past_a_short_horizon_sets_the_urgency() -> None:
    """A 7-day horizon still projects the shelf over the lead time (and `medium_days`) at the last
    week's rate: 100 on hand at 10/day runs out on day 10, before an order placed now can arrive
    (lead time 20 d): `critical`, not `ok`."""
    st = stock(item_id=["A", "B"], on_hand=[100.0, 250.0], lead_time_days=[20, 3])
    out = recommend(forecast({"A": 10.0, "B": 10.0}, horizon=7), st,
                    history=history({"A": np.full(200, 10.0), "B": np.full(200, 10.0)}), policy=NO_UNDERSHOOT)
    a, b = one(out, "A"), one(out, "B")
    assert a["days_to_stockout"] == pytest.approx(10.0) and a["urgency"] == "critical"
    assert a["stockout_date"] == START + timedelta(days=9)
    assert "stock-out past the 7-day horizon" in a["notes"] and "before a new order can arrive" in a["notes"]
    # `medium_days` (30) is projected even when the lead time is short; past it: no stock-out
    assert b["days_to_stockout"] == pytest.approx(25.0) and b["urgency"] == "medium"
    far = one(recommend(forecast({"A": 10.0}, horizon=7), stock(item_id=["A"], on_hand=[400.0],
                                                                  lead_time_days=[3]),
                        history=history({"A": np.full(200, 10.0)}), policy=NO_UNDERSHOOT))
    assert far["days_to_stockout"] is None and far["urgency"] == "ok"


def test_missing_costs_order_up_to_review_cover() -> None:
    p = Policy(undershoot=False, review_days=14)
    st = stock(item_id=["A"], on_hand=[20.0], lead_time_days=[5], pack_size=[1.0])
    r = one(recommend(forecast({"A": 4.0}), st, history=history({"A": np.full(200, 4.0)}), policy=p))
    assert r["eoq"] is None and r["unit_cost"] is None and r["order_value"] is None
    assert r["reorder_point"] == pytest.approx(20.0)
    assert r["order_up_to"] == pytest.approx(20.0 + 14 * 4.0)
    assert r["order_qty"] == pytest.approx(56.0)  # up to 76 from a position of 20
    assert "no EOQ" in r["notes"] and "ABC by quantity" in r["notes"]


def test_eoq_sets_the_order_up_to_level_with_pack_and_minimum() -> None:
    st = stock(item_id=["A", "B"], on_hand=[0.0, 0.0], lead_time_days=[2, 2], unit_cost=[10.0, 10.0],
               order_cost=[50.0, 50.0], holding_cost_rate=[0.25, 0.25], pack_size=[12.0, 12.0],
               min_order_qty=[0.0, 200.0])
    out = recommend(forecast({"A": 1.0, "B": 1.0}), st, policy=NO_UNDERSHOOT,
                    history=history({"A": np.ones(200), "B": np.ones(200)}))
    a, b = one(out, "A"), one(out, "B")
    q = (2 * 365 * 50 / 2.5) ** 0.5
    assert a["eoq"] == pytest.approx(q) and a["order_up_to"] == pytest.approx(2.0 + q)
    assert a["order_qty"] == 12 * np.ceil((2.0 + q) / 12) and a["order_qty"] % 12 == 0
    assert b["order_qty"] == 12 * np.ceil(200 / 12)  # the minimum in whole packs
    assert a["order_value"] == pytest.approx(a["order_qty"] * 10.0)
    # a currency amount in cents (149 x 204.1 was 30410.899999999998)
    cents = recommend(forecast({"A": 1.0}), stock(item_id=["A"], on_hand=[0.0], lead_time_days=[2],
                                                   unit_cost=[204.1], min_order_qty=[149.0]),
                      policy=NO_UNDERSHOOT, history=history({"A": np.ones(200)}))
    row = one(cents, "A")
    assert row["order_qty"] == 149 and row["order_value"] == 30410.9


def test_higher_service_level_never_lowers_the_reorder_point() -> None:
    rng = np.random.default_rng(42)
    levels = [0.5, 0.8, 0.9, 0.95, 0.98, 0.995]
    seen: set[str] = set()
    for case in range(24):
        kind = case % 3
        lead = int(rng.integers(1, 60))
        if kind == 0:  # residual: noisy backtests
            rate = rng.uniform(1, 50)
            y = rng.poisson(rate, 365).astype(float)
            fc = np.full(90, rate * rng.uniform(0.8, 1.2))
            bt = backtests("A", rng.poisson(rate, 90).astype(float), fc)
        elif kind == 1:  # bootstrap: intermittent history
            y = np.where(rng.random(365) < rng.uniform(0.02, 0.3), rng.integers(1, 20, 365), 0).astype(float)
            rate, bt = y.mean(), None
        else:  # normal: short history, interval width
            rate = rng.uniform(0, 10)
            y, bt = rng.poisson(rate, 10).astype(float), None
        fc, h, rows = forecast({"A": rate}, width=rate * 0.5 + 0.1), history({"A": y}), []
        for p in levels:
            st = stock(item_id=["A"], on_hand=[0.0], lead_time_days=[lead], service_level=[p])
            rows.append(one(recommend(fc, st, history=h, backtests=bt, policy=Policy(bootstrap_seed=case))))
        assert len({r["method"] for r in rows}) == 1
        seen.add(rows[0]["method"])
        rop = np.array([r["reorder_point"] for r in rows])
        assert (np.diff(rop) >= -1e-9).all(), (case, rows[0]["method"], rop)
        assert all(r["safety_stock"] >= 0 for r in rows)
    assert {"residual", "bootstrap", "normal"} <= seen


def test_monotone_for_the_same_row_and_seed() -> None:
    """The same item and site at rising service levels: the bootstrap draws are the same."""
    rng = np.random.default_rng(5)
    y = np.where(rng.random(365) < 0.1, rng.integers(1, 30, 365), 0).astype(float)
    rops = []
    for p in (0.6, 0.8, 0.9, 0.95, 0.99):
        st = stock(item_id=["A"], on_hand=[0.0], lead_time_days=[20], service_level=[p])
        rops.append(one(recommend(forecast({"A": 0.0}), st, history=history({"A": y})))["reorder_point"])
    assert rops == sorted(rops) and rops[-1] > rops[0]


def test_intermittent_uses_bootstrap_with_history_level() -> None:
    rng = np.random.default_rng(3)
    y = np.where(rng.random(365) < 0.05, rng.integers(3, 11, 365), 0).astype(float)
    st = stock(item_id=["A"], on_hand=[0.0], lead_time_days=[14], service_level=[0.95])
    # a zero point forecast (MAE-weighted ensembles do that for intermittent series) is not trusted
    r = one(recommend(forecast({"A": 0.0}), st, history=history({"A": y})))
    assert r["demand_class"] in {"intermittent", "lumpy"} and r["method"] == "bootstrap"
    assert r["lead_time_demand"] == pytest.approx(14 * y.mean())
    assert 0 < r["lead_time_demand"] < r["reorder_point"] <= np.sort(y)[-15:].sum()
    assert r["safety_stock"] >= 0 and "rate from the recent history" in r["notes"]


def test_intermittent_rate_days_follow_a_level_shift() -> None:
    """Demand that doubled half a year ago: with rate_days = 180 the level is the recent one; the
    bootstrap still draws its shape from the whole `history_days` window."""
    rng = np.random.default_rng(5)
    y = np.where(rng.random(365) < 0.06, rng.integers(4, 9, 365), 0).astype(float)
    y[-180:] *= 2.0
    st = stock(item_id=["A"], on_hand=[0.0], lead_time_days=[10], service_level=[0.9])
    whole = one(recommend(forecast({"A": 0.0}), st, history=history({"A": y})))
    recent = one(recommend(forecast({"A": 0.0}), st, history=history({"A": y}), policy=Policy(rate_days=180)))
    assert whole["lead_time_demand"] == pytest.approx(10 * y.mean())
    assert recent["lead_time_demand"] == pytest.approx(10 * y[-180:].mean())
    assert recent["reorder_point"] > whole["reorder_point"]
    assert "last 365 d" in whole["notes"] and "last 180 d" in recent["notes"]


def test_normal_method_only_without_history_or_residuals() -> None:
    st = stock(item_id=["A"], on_hand=[100.0], lead_time_days=[4], service_level=[0.9])
    r = one(recommend(forecast({"A": 5.0}, width=2.0), st, history=history({"A": np.full(10, 5.0)})))
    sigma = 2.0 / 1.2815515655446004
    assert r["method"] == "normal"
    assert r["safety_stock"] == pytest.approx(1.2815515655446004 * sigma * 2.0, rel=1e-6)


def test_too_few_backtest_errors_fall_back_to_bootstrap() -> None:
    bt = backtests("A", np.full(14, 3.0), np.full(14, 3.0), windows=1, h=14)
    st = stock(item_id=["A"], on_hand=[100.0], lead_time_days=[4])
    r = one(recommend(forecast({"A": 3.0}), st, history=history({"A": np.full(100, 3.0)}), backtests=bt))
    assert r["method"] == "bootstrap" and "14 backtest errors < 28" in r["notes"]


def test_backtest_over_forecast_is_not_credited() -> None:
    """A forecast 2/day too high in the backtest gets the safety stock of an unbiased one, not less."""
    rng = np.random.default_rng(9)
    actual = rng.poisson(10, 90).astype(float)
    st = stock(item_id=["A"], on_hand=[500.0], lead_time_days=[7], service_level=[0.9])
    h = history({"A": rng.poisson(10, 365).astype(float)})
    fair = one(recommend(forecast({"A": 10.0}), st, history=h,
                         backtests=backtests("A", actual, np.full(90, actual.mean())), policy=NO_UNDERSHOOT))
    high = one(recommend(forecast({"A": 10.0}), st, history=h, policy=NO_UNDERSHOOT,
                         backtests=backtests("A", actual, np.full(90, actual.mean() + 2))))
    low = one(recommend(forecast({"A": 10.0}), st, history=h, policy=NO_UNDERSHOOT,
                        backtests=backtests("A", actual, np.full(90, actual.mean() - 2))))
    assert fair["method"] == high["method"] == "residual" and fair["safety_stock"] > 0
    assert high["safety_stock"] == pytest.approx(fair["safety_stock"])
    assert low["safety_stock"] == pytest.approx(fair["safety_stock"] + 14, abs=0.5)  # under-forecast: added


def test_days_to_stockout_and_date_in_the_table() -> None:
    st = stock(item_id=["A", "B", "C"], on_hand=[9.0, 100.0, 0.0], lead_time_days=[3, 3, 3])
    out = recommend(forecast({"A": 2.0, "B": 2.0, "C": 2.0}), st,
                    history=history({k: np.full(100, 2.0) for k in "ABC"}))
    a, b, c = one(out, "A"), one(out, "B"), one(out, "C")
    assert a["days_to_stockout"] == 4.5 and a["stockout_date"] == START + timedelta(days=4)
    assert a["urgency"] == "critical"
    assert b["days_to_stockout"] is None and b["stockout_date"] is None and b["urgency"] == "ok"
    assert c["days_to_stockout"] == 0.0 and c["stockout_date"] == START - timedelta(days=1)
    assert out["item_id"].to_list() == ["C", "A", "B"]  # critical first, soonest first


def test_abc_and_service_levels_in_the_table() -> None:
    items = {f"I{i}": float(r) for i, r in enumerate([100, 50, 30, 10, 5, 5])}
    st = stock(item_id=list(items), on_hand=[1e6] * 6, lead_time_days=[5] * 6, unit_cost=[1.0] * 6)
    out = recommend(forecast(items), st, history=history({k: np.full(100, v) for k, v in items.items()}))
    got = dict(zip(out["item_id"], out["abc_class"], strict=True))
    assert got == {"I0": "A", "I1": "A", "I2": "A", "I3": "B", "I4": "C", "I5": "C"}
    sl = dict(zip(out["item_id"], out["service_level"], strict=True))
    assert sl["I0"] == 0.98 and sl["I3"] == 0.95 and sl["I5"] == 0.90
    # value, not quantity: a cheap fast mover ranks below an expensive slow one
    st2 = st.with_columns(unit_cost=pl.Series([0.01, 1, 1, 100, 1, 1]))
    got2 = dict(zip(*recommend(forecast(items), st2, history=history(
        {k: np.full(100, v) for k, v in items.items()}))[["item_id", "abc_class"]], strict=True))
    assert got2["I3"] == "A" and got2["I0"] == "C"


def test_item_forecast_split_by_site_share() -> None:
    h = history({"A@x": np.full(200, 3.0), "A@y": np.full(200, 1.0)}, sites={"A@x": "x", "A@y": "y"})
    st = stock(item_id=["A", "A", "A"], site=["x", "y", "z"], on_hand=[0.0] * 3, lead_time_days=[10] * 3)
    out = recommend(forecast({"A": 4.0}), st, history=h, policy=NO_UNDERSHOOT)
    assert one(out, "A", "x")["lead_time_demand"] == pytest.approx(30.0)
    assert one(out, "A", "y")["lead_time_demand"] == pytest.approx(10.0)
    z = one(out, "A", "z")
    assert z["lead_time_demand"] == 0.0 and z["order_qty"] == 0.0
    assert "no demand history at this site" in z["notes"]
    assert "site share 0.75" in one(out, "A", "x")["notes"]


def test_an_item_split_evenly_over_sites_splits_its_history_too() -> None:
    """A history without sites: each of n stock sites gets 1/n of the item, its forecast and its
    history alike (the intermittent rate and the undershoot read the history): the sites'
    lead-time demand adds up to the item's; their safety stock to sqrt(n) x the item's (their
    demand taken as independent: 1/n of it each, as if they moved together, gave 4 independent
    sites 0.77 service of a 0.95 target)."""
    rng = np.random.default_rng(11)
    lumpy = np.where(rng.random(365) < 0.1, 4.0, 0.0)
    smooth = np.full(365, 10.0)
    bt = backtests("S", np.full(90, 10.0), np.full(90, 10.0))  # perfect backtests: no error
    h = history({"L": lumpy, "S": smooth})
    for item, fc in (("L", 0.0), ("S", 10.0)):
        one_row = stock(item_id=[item], on_hand=[0.0], lead_time_days=[10])
        two = stock(item_id=[item] * 4, site=["a", "b", "c", "d"], on_hand=[0.0] * 4, lead_time_days=[10] * 4)
        whole = one(recommend(forecast({item: fc}), one_row, history=h, backtests=bt), item)
        split = recommend(forecast({item: fc}), two, history=h, backtests=bt)
        assert split.height == 4 and "split evenly over 4 sites" in split["notes"][0]
        assert split["lead_time_demand"].sum() == pytest.approx(whole["lead_time_demand"])
        assert split["lead_time_demand"][0] == pytest.approx(whole["lead_time_demand"] / 4)
        if item == "S":  # the undershoot of a perfect forecast: sqrt(4) = 2x the total, not 4x
            assert whole["safety_stock"] > 0
            assert split["safety_stock"].sum() == pytest.approx(2 * whole["safety_stock"], rel=0.25)
            assert "safety stock x 2.00: the sites' demand taken as independent" in split["notes"][0]


def test_stock_sites_missing_from_the_history_never_zero_the_item() -> None:
    """A history whose sites match none of the item's stock sites (other codes, or blank) splits
    the item evenly over its stock rows; one stock row gets the whole item."""
    h = history({"A@p": np.full(200, 3.0), "A@q": np.full(200, 1.0)}, sites={"A@p": "P01", "A@q": "Q01"})
    st = stock(item_id=["A", "A"], site=["x", "y"], on_hand=[0.0] * 2, lead_time_days=[10] * 2)
    out = recommend(forecast({"A": 4.0}), st, history=h, policy=NO_UNDERSHOOT)
    for site in ("x", "y"):
        r = one(out, "A", site)
        assert r["lead_time_demand"] == pytest.approx(20.0) and r["order_qty"] > 0
        assert "none of its stock sites in the history with demand: split evenly over 2 sites" in r["notes"]
    zero = history({"Z": np.zeros(200)}, sites={"Z": "x"})  # its site is there, without demand
    st = stock(item_id=["Z"], site=["x"], on_hand=[5.0], lead_time_days=[5])
    r = one(recommend(forecast({"Z": 0.0}), st, history=zero, policy=NO_UNDERSHOOT), "Z", "x")
    assert "no demand at this site in the history: the item's whole demand" in r["notes"]
    blank = history({"B": np.full(200, 2.0)}, sites={"B": ""})
    st = stock(item_id=["B"], site=["x"], on_hand=[0.0], lead_time_days=[5])
    r = one(recommend(forecast({"B": 2.0}), st, history=blank, policy=NO_UNDERSHOOT), "B", "x")
    assert r["lead_time_demand"] == pytest.approx(10.0) and "the item's whole demand" in r["notes"]


def test_history_read_in_chunks_of_items_gives_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The history's aggregates, and the recommendations, are built a chunk of items at a time
    (bounded memory; ABC from a first pass over the chunks): the rows do not depend on the chunk
    size (site shares, intermittent rates, ABC by value and, without a unit cost, by quantity)."""
    rng = np.random.default_rng(5)
    series = {f"I{k}@{s}": rng.poisson(0.4 + k, 300).astype(float) for k in range(7) for s in "xy"}
    h = history(series, sites={key: key[-1] for key in series})
    items = [f"I{k}" for k in range(7)]
    st = stock(item_id=items * 2, site=["x"] * 7 + ["y"] * 7, on_hand=[5.0] * 14, lead_time_days=[9] * 14,
               unit_cost=([float(k + 1) for k in range(6)] + [None]) * 2)
    fc = forecast({item: float(k + 1) for k, item in enumerate(items)}, width=2.0)
    whole = recommend(fc, st, history=h, policy=NO_UNDERSHOOT)
    monkeypatch.setattr("nova_ray.recommend.HISTORY_CHUNK", 2)
    assert recommend(fc, st, history=h, policy=NO_UNDERSHOOT).equals(whole)
    assert whole.height == 14 and set(whole["abc_class"]) == {"A", "B", "C"}
    by_qty = whole.filter(pl.col("notes").str.contains("ABC by quantity"))
    assert by_qty["item_id"].unique().to_list() == ["I6"]


def test_history_spilled_to_parquet_gives_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run spills the history, the ensemble's forecasts and its backtests to scratch Parquet
    files and reads them back a chunk of items at a time: the same recommendations as from the
    tables in memory."""
    rng = np.random.default_rng(9)
    series = {f"I{k}@{s}": rng.poisson(0.3 + k, 300).astype(float) for k in range(6) for s in "xy"}
    h = history(series, sites={key: key[-1] for key in series})
    demand = h.to_pandas().astype({"item_id": "category", "site": "category"})
    items = [f"I{k}" for k in range(6)]
    st = stock(item_id=items * 2, site=["x"] * 6 + ["y"] * 6, on_hand=[4.0] * 12, lead_time_days=[8] * 12,
               unit_cost=[float(k + 1) for k in range(6)] * 2)
    fc = forecast({item: float(k + 1) for k, item in enumerate(items)}, width=2.0)
    # backtest errors for half the items (the residual method), shuffled like a run's chunks
    bt = pl.concat([backtests(i, rng.poisson(k + 1, 90).astype(float), np.full(90, k + 1.0))
                    for k, i in enumerate(items[::2])]).sample(fraction=1.0, shuffle=True, seed=3)
    in_memory = history_frame(demand)
    assert isinstance(in_memory, pl.DataFrame)
    whole = recommend(fc, st, history=in_memory, backtests=bt, policy=NO_UNDERSHOOT)
    spilled = spill_columns(demand, HISTORY_COLUMNS, tmp_path / "history.parquet")
    assert isinstance(spilled, pl.LazyFrame) and (tmp_path / "history.parquet").stat().st_size > 0
    fc.reverse().write_parquet(tmp_path / "fc.parquet")
    bt.drop("model").write_parquet(tmp_path / "bt.parquet")
    monkeypatch.setattr("nova_ray.recommend.HISTORY_CHUNK", 4)
    lazy = recommend(pl.scan_parquet(tmp_path / "fc.parquet"), st, history=spilled,
                     backtests=pl.scan_parquet(tmp_path / "bt.parquet"), policy=NO_UNDERSHOOT)
    assert lazy.equals(whole)
    assert whole.height == 12 and whole["lead_time_demand"].sum() > 0
    # the errors decide the safety stock of the smooth items with backtests (I0 is intermittent),
    # unless the site's own history spreads more than the item's errors x its share (sites at half)
    used = whole.filter((pl.col("method") == "residual") | pl.col("notes").str.contains("site's own demand"))
    assert set(used["item_id"]) == {"I2", "I4"} and used.height == 4


def test_weekly_forecast_spread_over_days() -> None:
    fc = pl.DataFrame({"item_id": ["A"] * 4, "date": [START + timedelta(days=7 * k) for k in range(4)],
                       "forecast": [70.0] * 4})
    st = stock(item_id=["A"], on_hand=[35.0], lead_time_days=[10])
    r = one(recommend(fc, st, history=history({"A": np.full(100, 10.0)}), policy=NO_UNDERSHOOT))
    assert r["lead_time_demand"] == pytest.approx(100.0) and r["days_to_stockout"] == pytest.approx(3.5)


def test_a_single_period_spread_over_the_days_of_the_runs_frequency() -> None:
    """One weekly period (horizon 1) is a week of demand, not a day's: with the run's frequency
    the path has 7 days; months spread over their own lengths."""
    fc = pl.DataFrame({"item_id": ["A"], "date": [START], "forecast": [70.0]})
    st = stock(item_id=["A"], on_hand=[35.0], lead_time_days=[20])
    r = one(recommend(fc, st, history=history({"A": np.full(100, 10.0)}), policy=NO_UNDERSHOOT, freq="W"))
    assert r["lead_time_demand"] == pytest.approx(200.0) and r["days_to_stockout"] == pytest.approx(3.5)
    firsts = [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    months = pl.DataFrame({"item_id": ["M"] * 3, "date": firsts, "forecast": [310.0, 290.0, 310.0]})
    _, path, _ = daily_paths(months, "M")["M"]
    assert len(path) == 31 + 29 + 31 and np.allclose(path, 10.0)
    _, guessed, _ = daily_paths(months)["M"]  # without the frequency: days to the next period
    assert len(guessed) == 31 + 29 + 29


def test_a_one_off_spike_does_not_set_the_safety_stock_of_a_smooth_item() -> None:
    """A smooth item of ~10 a day with one day of 5000 in its last backtest window: the safety stock
    sees that one-off at the outlier fence, its error too (it came out ~1000 days of demand);
    with cap_outliers off the spike counts as it is, and peaks that recur are demand, not capped."""
    rng = np.random.default_rng(11)
    y = rng.poisson(10, 400).astype(float)
    y[-10] = 5000.0
    fc = np.full(90, 10.0)
    kw = dict(history=history({"A": y}), backtests=backtests("A", y[-90:], fc), policy=NO_UNDERSHOOT)
    st = stock(item_id=["A"], on_hand=[300.0], lead_time_days=[14])
    capped = one(recommend(forecast({"A": 10.0}), st, **kw))
    assert capped["method"] == "residual" and capped["safety_stock"] < 300, capped["safety_stock"]
    assert "1 one-off history day(s) above 5 x" in capped["notes"]
    # the one-off's backtest error counts at the fence, as its history day does: the safety stock
    # is about that of the same history without it (at 5x the fence it was ~3.8 times that)
    calm = y.copy()
    calm[-10] = 10.0
    without = one(recommend(forecast({"A": 10.0}), st, history=history({"A": calm}),
                            backtests=backtests("A", calm[-90:], fc), policy=NO_UNDERSHOOT))
    assert capped["safety_stock"] < 1.5 * without["safety_stock"], (capped, without)
    as_is = Policy(undershoot=False, cap_outliers=False)
    raw = one(recommend(forecast({"A": 10.0}), st, **kw | {"policy": as_is}))
    assert raw["safety_stock"] > 1000
    y[-40], y[-70], y[-100] = 5000.0, 5000.0, 5000.0  # four a year: demand to cover
    kw = dict(history=history({"A": y}), backtests=backtests("A", y[-90:], fc), policy=NO_UNDERSHOOT)
    recurring = one(recommend(forecast({"A": 10.0}), st, **kw))
    assert recurring["safety_stock"] > 1000 and "one-off" not in recurring["notes"]


def test_a_period_partly_past_is_not_projected_again() -> None:
    """Daily rows up to 2026-12-04 under quarterly periods: the incomplete Q4 is left out of the
    fit and forecast, but the stock snapshot is the history's last day's, so the stock-out counts
    from 2026-12-05 over the rest of Q4 (it counted from 2026-09-30: a date in the past)."""
    q = [date(2026, 10, 1), date(2027, 1, 1), date(2027, 4, 1)]
    fc = pl.DataFrame({"item_id": ["A"] * 3, "date": q, "forecast": [920.0, 900.0, 910.0]})
    days = [date(2026, 12, 4) - timedelta(days=k) for k in range(400)][::-1]
    hist = pl.DataFrame({"item_id": ["A"] * 400, "date": days, "quantity": [10.0] * 400})
    st = stock(item_id=["A"], on_hand=[300.0], lead_time_days=[14])
    r = one(recommend(fc, st, history=hist, policy=NO_UNDERSHOOT, freq="Q"))
    assert r["stockout_date"] == date(2027, 1, 3) and r["days_to_stockout"] == pytest.approx(30.0)
    assert r["lead_time_demand"] == pytest.approx(140.0)


def test_per_period_history_is_spread_over_its_days() -> None:
    """Monthly rows dated on the 1st (per-period totals): each month's total is spread over its
    days for the bootstrap, as the forecast is; taken as one day's demand followed by 30 empty
    days, the safety stock of a steady item came out 5-14x too high."""
    firsts = [date(2023, 1, 1) + timedelta(days=0)]
    while len(firsts) < 24:
        d = firsts[-1]
        firsts.append(date(d.year + d.month // 12, d.month % 12 + 1, 1))
    rng = np.random.default_rng(3)
    per_month = [310.0 + rng.normal(0, 15) for _ in firsts]
    monthly = pl.DataFrame({"item_id": ["A"] * 24, "date": firsts, "quantity": per_month})
    fc = pl.DataFrame({"item_id": ["A"] * 3, "date": [date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)],
                       "forecast": [310.0, 280.0, 310.0]})
    st = stock(item_id=["A"], on_hand=[1000.0], lead_time_days=[14])
    r = one(recommend(fc, st, history=monthly, policy=NO_UNDERSHOOT, freq="M"))
    assert r["method"] == "bootstrap" and r["stockout_date"] is None
    # about a fortnight of ~10/day with a small spread: tens of units, not a month's worth
    assert 0.0 < r["safety_stock"] < 40.0, r["safety_stock"]


def test_per_period_history_bootstraps_whole_periods() -> None:
    """A lumpy item exported as monthly totals: its lead-time demand is drawn from whole months
    (a part of a month for the rest), not from 7-day blocks of months spread flat, which drew
    each week from another month and gave about half the safety stock needed (30 days: 21 where
    the daily process needs 45; 14 days: 15 where it needs 32). Here, from 12 months: 36 and 23
    where the 7-day blocks give 19 and 13 (and the daily process needs 45 and 32)."""
    rng = np.random.default_rng(5)
    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(731)]  # 2024-01-01 .. 2025-12-31
    q = (rng.random(731) < 0.05) * rng.poisson(20, 731).astype(float)
    daily = pl.DataFrame({"item_id": "X", "date": days, "quantity": q})
    monthly = (daily.with_columns(pl.col("date").dt.truncate("1mo")).group_by("item_id", "date")
               .agg(pl.col("quantity").sum()).sort("date"))
    rate = float(q.mean())
    fc = pl.DataFrame({"item_id": "X", "date": [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)],
                       "forecast": [rate * 31, rate * 28, rate * 31]})
    items = pl.DataFrame({"item_id": ["X"], "demand_class": ["lumpy"]})
    for lead in (14, 30):  # what the daily process needs: its lead-time sums' 95% quantile less their mean
        sums = ((rng.random((20000, lead)) < 0.05) * rng.poisson(20, (20000, lead))).sum(axis=1)
        need = float(np.quantile(sums, 0.95) - sums.mean())
        st = stock(item_id=["X"], on_hand=[0.0], lead_time_days=[lead], service_level=[0.95])
        r = one(recommend(fc, st, history=monthly, items=items, freq="M"), "X")  # undershoot on (default)
        assert r["method"] == "bootstrap"
        assert 0.6 * need < r["safety_stock"] < 1.3 * need, (lead, r["safety_stock"], need)


@pytest.mark.parametrize(("freq", "pandas_freq", "periods", "lead"),
                         [("M", "MS", 36, 30), ("W", "W-MON", 104, 14), ("Q", "QS", 12, 30)])
def test_totals_dated_on_the_period_end_are_spread_like_those_on_its_start(
    freq: str, pandas_freq: str, periods: int, lead: int
) -> None:
    """Totals dated on the day that closes their period (month ends, Sundays, quarter ends) are
    per-period rows as much as those dated on its first day: the same safety stock. Taken as one
    day's demand each, a monthly item of ~300 got ~830 instead of ~37, a weekly one ~105 for ~30."""
    rng = np.random.default_rng(3)
    starts = pd.date_range("2021-01-04", periods=periods, freq=pandas_freq)
    ends = pd.Series(starts).shift(-1, fill_value=starts[-1] + pd.tseries.frequencies.to_offset(pandas_freq))
    ends = ends - pd.Timedelta(days=1)
    q = rng.poisson(300 if freq != "W" else 70, periods).astype(float)
    first = pd.Timestamp(ends.iloc[-1]).date() + timedelta(days=1)
    fc = pl.DataFrame({"item_id": "A", "date": [first], "forecast": [float(q.mean())]})
    st = stock(item_id=["A"], on_hand=[100.0], lead_time_days=[lead])
    out = []
    for dates in (starts, ends):
        hist = pl.DataFrame({"item_id": "A", "date": [d.date() for d in dates], "quantity": q})
        out.append(one(recommend(fc, st, history=hist, freq=freq, policy=NO_UNDERSHOOT)))
    on_start, on_end = out
    assert on_end["method"] == on_start["method"] == "bootstrap"
    assert on_end["safety_stock"] == pytest.approx(on_start["safety_stock"])
    assert on_end["stockout_date"] == on_start["stockout_date"]
    daily = q.mean() / (7 if freq == "W" else 30 if freq == "M" else 91)
    assert on_end["safety_stock"] < 2.5 * daily * lead, (on_end["safety_stock"], daily * lead)


def test_paths_and_residual_segments_per_item_from_sorted_columns() -> None:
    """Rows in any order, several items: each item's daily path (weekly periods spread) and its
    backtest errors per window, windows that tile joined, a gap starting a new segment, a
    non-daily window and rows without an actual left out."""
    d = [START + timedelta(days=k) for k in range(12)]
    fc = pl.DataFrame({
        "item_id": ["B", "A", "B", "A", "C", "C"],
        "date": [d[1], d[1], d[0], d[0], d[0], d[7]],
        "forecast": [2.0, 1.0, 4.0, -3.0, 14.0, 7.0],
        "lo_80": [0.0] * 6, "hi_80": [2 * Z80] * 6,
    })
    paths = daily_paths(fc)
    assert list(paths) == ["A", "B", "C"]
    assert paths["A"][0] == START and paths["A"][1].tolist() == [0.0, 1.0]
    assert paths["A"][2].tolist() == [1.0, 1.0]
    assert paths["B"][1].tolist() == [4.0, 2.0]
    assert paths["C"][1].tolist() == [2.0] * 7 + [1.0] * 7 and len(paths["C"][2]) == 14
    rows = [  # item, origin, date index, forecast, actual
        ("A", 0, 0, 1.0, 2.0), ("A", 0, 1, 1.0, 3.0), ("A", 1, 2, 1.0, 1.0),  # tiles: joined
        ("A", 2, 5, 2.0, 1.0), ("A", 2, 6, 2.0, None),  # after a gap; the null row dropped
        ("B", 0, 0, 0.0, 5.0), ("B", 0, 7, 0.0, 5.0),  # not daily: left out
        ("B", 1, 8, 1.0, 4.0),
    ]
    bt = pl.DataFrame({
        "item_id": [r[0] for r in rows][::-1], "origin": [d[r[1]] for r in rows][::-1],
        "date": [d[r[2]] for r in rows][::-1], "forecast": [r[3] for r in rows][::-1],
        "actual": [r[4] for r in rows][::-1],
    })
    segs = residual_segments(bt)
    assert list(segs) == ["A", "B"]
    assert [s.tolist() for s in segs["A"]] == [[1.0, 2.0, 0.0], [-1.0]]
    assert [s.tolist() for s in segs["B"]] == [[3.0]]
    assert residual_segments(bt.clear()) == {} and daily_paths(fc.clear()) == {}


def test_unknown_items_skipped_and_other_models_ignored() -> None:
    fc = pl.concat([forecast({"A": 1.0}).with_columns(model=pl.lit("ensemble")),
                    forecast({"A": 99.0}).with_columns(model=pl.lit("naive"))])
    st = stock(item_id=["A", "ZZ"], on_hand=[100.0, 1.0], lead_time_days=[5, 5])
    out = recommend(fc, st, history=history({"A": np.ones(100)}), policy=NO_UNDERSHOOT)
    assert out["item_id"].to_list() == ["A"] and one(out)["lead_time_demand"] == pytest.approx(5.0)
    empty = recommend(fc, st.filter(pl.col("item_id") == "ZZ"))
    assert empty.height == 0 and empty.schema == out.schema


def test_summary_lists_critical_first() -> None:
    st = stock(item_id=["A", "B"], on_hand=[100.0, 1.0], lead_time_days=[5, 5], unit_cost=[2.0, 3.0])
    out = recommend(forecast({"A": 1.0, "B": 1.0}), st,
                    history=history({"A": np.ones(100), "B": np.ones(100)}))
    s = summarize(out)
    assert s["urgency"]["critical"] == 1 and s["most_urgent"][0]["item_id"] == "B"
    assert s["orders"] == 1 and s["order_value"] == pytest.approx(one(out, "B")["order_value"])


def test_order_value_without_unit_costs_is_unknown_not_zero() -> None:
    """`orders 2 worth 0.00` was what a stock file without unit_cost gave; the value is unknown
    then, and covers only the items with a cost when some have none."""
    hist = history({"A": np.ones(100), "B": np.ones(100), "C": np.ones(100)})
    fc = forecast({"A": 1.0, "B": 1.0, "C": 1.0})
    low = dict(item_id=["A", "B", "C"], on_hand=[1.0, 1.0, 1.0], lead_time_days=[5, 5, 5])
    none = summarize(recommend(fc, stock(**low), history=hist))
    assert none["orders"] == 3 and none["orders_valued"] == 0
    assert orders_text(none) == "orders 3 (value unknown: no unit_cost)"
    some = summarize(recommend(fc, stock(**low, unit_cost=[2.0, None, 4.0]), history=hist))
    assert some["orders_valued"] == 2
    assert orders_text(some) == f"orders 3 worth {some['order_value']:,.2f} for 2 of 3 with a unit_cost"
    every = summarize(recommend(fc, stock(**low, unit_cost=[2.0, 3.0, 4.0]), history=hist))
    assert orders_text(every) == f"orders 3 worth {every['order_value']:,.2f}" and every["order_value"] > 0
    assert orders_text({"orders": 0, "order_value": 0.0, "orders_valued": 0}) == "orders 0"
    assert orders_text({"orders": 2, "order_value": 5.0}) == "orders 2 worth 5.00"  # an older record


def test_policy_from_config() -> None:
    from dataclasses import make_dataclass

    section = make_dataclass("Recommend", [("service_level_a", float, 0.99), ("critical_days", int, 3)])()
    cfg = type("Cfg", (), {"recommend": section})()
    assert Policy.from_config(cfg) == Policy(service_level_a=0.99, critical_days=3)
    assert Policy.from_config(object()) == Policy()


# ---------------------------------------------------------------- published run and CLI

runner = CliRunner()


@pytest.fixture()
def published(tmp_path: Path) -> dict[str, Path]:
    """A published run (written by ResultWriter) for three items, their history and a stock file."""
    root = tmp_path / "results"
    fc = forecast({"A": 2.0, "B": 5.0, "C": 0.5}, horizon=14)
    hist = history({"A": np.full(120, 2.0), "B": np.full(120, 5.0), "C": np.r_[np.zeros(100), np.ones(20)]})
    hist = hist.with_columns(site=pl.lit("S1"))
    items = pl.DataFrame({"item_id": ["A", "B", "C"], "demand_class": ["smooth", "smooth", "intermittent"]})
    w = ResultWriter(root, "20240101-abc", START, {"run_id": "20240101-abc", "model_version": "0.1.0+x",
                                                   "generated_at": "2024-01-01T00:00:00+00:00",
                                                   "dataset_id": "d1"})
    w.write("forecasts", fc.with_columns(model=pl.lit("ensemble")).to_arrow())
    w.write("forecasts", fc.with_columns(model=pl.lit("naive"), forecast=pl.lit(100.0)).to_arrow())
    from nova_ray.result_rows import ITEMS_TABLE

    w.write("items", pl.DataFrame({c: [None] * 3 for c in ITEMS_TABLE.names}).with_columns(
        items).to_arrow().cast(ITEMS_TABLE))
    data = tmp_path / "demand.parquet"
    w.commit({"run_id": "20240101-abc"}, {"items": 3, "data_path": str(data), "freq": "D"})
    hist.write_parquet(data)
    good = tmp_path / "stock.csv"
    good.write_text("item_id,site,on_hand,lead_time_days,unit_cost\nA,S1,1,5,10\nB,S1,500,5,1\n"
                    "C,S1,0,3,2\nZZ,S1,1,1,1\n")
    return {"root": root, "data": data, "stock": good, "tmp": tmp_path}


def test_cli_writes_recommendations_into_the_run(published: dict[str, Path]) -> None:
    root = published["root"]
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(published["stock"]),
                              "--data", str(published["data"])])
    assert res.exit_code == 0, res.output
    part = root / "recommendations" / "run_date=2024-01-01"
    df = pl.read_parquet(part)
    assert sorted(df["item_id"]) == ["A", "B", "C"] and df["urgency"][0] == "critical"
    table = __import__("pyarrow.parquet", fromlist=["x"]).read_table(next(part.glob("*.parquet")))
    meta = table.schema.metadata
    assert meta[b"run_id"] == b"20240101-abc" and meta[b"kind"] == b"recommendations"
    ptr = json.loads((root / "metadata" / "last_updated.json").read_text())
    rec = json.loads((root / "metadata" / "runs" / "20240101-abc.json").read_text())
    assert ptr["row_counts"]["recommendations"] == 3 and rec["row_counts"]["forecasts"] > 0
    assert rec["summary"]["recommendations"]["urgency"]["critical"] >= 1
    assert ptr["partitions"]["recommendations"] == "recommendations/run_date=2024-01-01"
    assert "critical" in res.output and res.output.index("critical") < res.output.index(" ok ")
    assert "'ZZ'" in res.output and "not in the forecast" in res.output  # a warning, not an error
    assert "no ensemble backtests" in res.output
    # a second run replaces the partition
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(published["stock"]),
                              "--data", str(published["data"]), "--top", "1"])
    assert res.exit_code == 0 and len(list(part.glob("*.parquet"))) == 1
    assert "recommendations: the 1 most urgent of 3 rows" in res.output  # was "(3 rows, most urgent first)"
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(published["stock"]),
                              "--data", str(published["data"]), "--top", "0"])
    assert res.exit_code == 0 and "most urgent" not in res.output and "urgency: critical" in res.output
    assert not (root / ".staging").exists() and not (root / ".trash").exists()
    assert (root / "forecasts" / "run_date=2024-01-01" / "model=naive").exists()


def test_cli_refuses_a_run_whose_forecasts_hold_another_run(published: dict[str, Path]) -> None:
    """A run of the date killed while its tables were swapped in leaves another run's forecasts
    under the latest run's pointer: `report` and `runs` said so, but `recommend` computed orders
    from them (another horizon, other numbers) and wrote them as the latest run's, exit 0."""
    import pyarrow.parquet as pq

    root = published["root"]
    (f,) = (root / "forecasts" / "run_date=2024-01-01" / "model=ensemble").glob("*.parquet")
    table = pq.read_table(f)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"run_id": b"20240101-other"}), f)
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(published["stock"]),
                              "--data", str(published["data"])])
    assert res.exit_code == 2, res.output
    msg = " ".join(res.output.split())
    assert "forecasts/run_date=2024-01-01/model=ensemble/" in msg
    assert "holds run 20240101-other, not the latest run 20240101-abc" in msg
    assert "rerun `nova-ray run --date 2024-01-01`" in msg
    assert not (root / "recommendations").exists()


def test_cli_a_subset_run_is_not_said_to_differ_from_its_data(published: dict[str, Path]) -> None:
    """A run over some items (`--items`) records the dataset id of their rows: `recommend`
    compared it with the whole file's and warned every morning that the demand differed."""
    from nova_ray.io.demand import dataset_id, read_demand

    tmp, data = published["tmp"], published["data"]
    subset = read_demand(data)
    subset = subset[subset["item_id"].isin(["A", "B"])].reset_index(drop=True)
    root = tmp / "subset"
    w = ResultWriter(root, "20240101-sub", START, {"run_id": "20240101-sub", "model_version": "0.1.0+x",
                                                    "generated_at": "2024-01-01T00:00:00+00:00",
                                                    "dataset_id": dataset_id(subset)})
    fc = forecast({"A": 2.0, "B": 5.0}, horizon=14).with_columns(model=pl.lit("ensemble"))
    w.write("forecasts", fc.to_arrow())
    w.commit({"run_id": "20240101-sub", "dataset_id": dataset_id(subset)}, {"items": 2, "freq": "D"})
    args = ["recommend", "--results", str(root), "--stock", str(published["stock"]), "--data", str(data)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "demand differs" not in res.output
    changed = tmp / "changed.parquet"  # the subset's rows changed: still said
    pl.read_parquet(data).with_columns(quantity=pl.col("quantity") + 1).write_parquet(changed)
    res = runner.invoke(app, [*args[:-1], str(changed)])
    assert res.exit_code == 0 and "demand differs from the data of run 20240101-sub" in res.output


def test_cli_order_value_says_when_unit_costs_are_missing(published: dict[str, Path]) -> None:
    no_cost = published["tmp"] / "no-cost.csv"
    no_cost.write_text("item_id,site,on_hand,lead_time_days\nA,S1,1,5\nB,S1,500,5\nC,S1,0,3\n")
    args = ["recommend", "--results", str(published["root"]), "--data", str(published["data"])]
    res = runner.invoke(app, [*args, "--stock", str(no_cost)])
    assert res.exit_code == 0, res.output
    assert "; orders 2 (value unknown: no unit_cost)" in res.output and "worth" not in res.output
    part_cost = published["tmp"] / "part-cost.csv"
    part_cost.write_text("item_id,site,on_hand,lead_time_days,unit_cost\nA,S1,1,5,10\nB,S1,500,5,1\n"
                         "C,S1,0,3,\n")
    res = runner.invoke(app, [*args, "--stock", str(part_cost)])
    assert res.exit_code == 0 and "for 1 of 2 with a unit_cost" in res.output, res.output


def test_cli_refuses_a_history_past_the_forecast(published: dict[str, Path]) -> None:
    """A demand file that goes on past the run's forecast (a nightly export overwritten in place):
    its days count as consumed, and one that reaches the forecast's last day leaves nothing to
    project (it gave every row zero demand, no order and `ok`): exit 2, nothing written."""
    root, data = published["root"], published["tmp"] / "newer.parquet"
    old = pl.read_parquet(published["data"])
    days = pl.date_range(START, START + timedelta(days=13), eager=True)
    extra = pl.DataFrame({"item_id": ["A"] * 14, "date": days, "quantity": [2.0] * 14, "site": ["S1"] * 14})
    pl.concat([old, extra.head(5)], how="diagonal_relaxed").write_parquet(data)
    args = ["recommend", "--results", str(root), "--stock", str(published["stock"]), "--data", str(data)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "the forecast's days up to its end count as consumed, 9 days are left" in said
    pl.concat([old, extra], how="diagonal_relaxed").write_parquet(data)
    before = (root / "metadata" / "last_updated.json").read_text()
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    said = " ".join(res.output.split())
    assert f"{data}: the history ends 2024-01-14, on or after the last forecast day 2024-01-14" in said
    assert (root / "metadata" / "last_updated.json").read_text() == before


def test_cli_stock_date_counts_from_the_snapshots_day(published: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`--stock-date`: a snapshot taken days after the history's end (recommend re-run with a new
    stock file): the forecast's days up to it are consumed already, not subtracted again from
    its on_hand, and stock-outs count from it; one past the forecast's end is refused. Without
    it, days after the history's end, a warning says so (the days between counted twice)."""
    from nova_ray import clock

    root = published["root"]
    args = ["recommend", "--results", str(root), "--stock", str(published["stock"]), "--data",
            str(published["data"])]
    monkeypatch.setattr(clock, "today", lambda: START)  # the night after the history's last day
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "the stock is taken as of" not in res.output
    part = root / "recommendations" / "run_date=2024-01-01"
    plain = one(pl.read_parquet(part), "A")
    monkeypatch.setattr(clock, "today", lambda: START + timedelta(days=5))  # a new snapshot, 5 days on
    res = runner.invoke(app, args)
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and one(pl.read_parquet(part), "A") == plain, res.output
    assert (f"{published['stock']}: the stock is taken as of 2023-12-31, the history's last day, 6 days "
            "before today: a snapshot taken since counts the demand of the days between twice; give its "
            "day with --stock-date") in said
    res = runner.invoke(app, [*args, "--stock-date", str(START + timedelta(days=4))])
    assert res.exit_code == 0, res.output
    assert "the stock is taken as of" not in res.output
    later = one(pl.read_parquet(part), "A")
    assert plain["days_to_stockout"] == later["days_to_stockout"] == 0.5  # 1 on hand at 2 a day
    assert plain["stockout_date"] == START and later["stockout_date"] == START + timedelta(days=5)
    res = runner.invoke(app, [*args, "--stock-date", str(START + timedelta(days=13))])
    said = " ".join(res.output.split())
    assert res.exit_code == 2
    assert "--stock-date 2024-01-14, on or after the last forecast day 2024-01-14: nothing left" in said
    res = runner.invoke(app, [*args, "--stock-date", "14/01/2024"])
    assert res.exit_code == 2 and "--stock-date '14/01/2024': not a date (yyyy-mm-dd)" in res.output
    # a snapshot of a day before the history's end is taken as of that end, as without the flag:
    # said (it was silent), since the days between are not taken off its stock
    res = runner.invoke(app, [*args, "--stock-date", str(START - timedelta(days=6))])
    said = " ".join(res.output.split())
    assert res.exit_code == 0 and one(pl.read_parquet(part), "A")["stockout_date"] == START, res.output
    assert ("--stock-date 2023-12-26 is before the history's last day 2023-12-31: the stock is taken as of "
            "2023-12-31 (the demand of the 5 days between is not taken off it)") in said


def test_a_history_past_the_forecast_keeps_its_last_weeks_rate() -> None:
    """The pure function, given a history past the forecast's end, projects the forecast's last
    week's rate on (never no demand)."""
    hist = history({"A": np.full(200, 10.0)}).with_columns(pl.col("date") + timedelta(days=45))
    row = one(recommend(forecast({"A": 10.0}), stock(item_id=["A"], on_hand=[50.0], lead_time_days=[14]),
                        history=hist, policy=NO_UNDERSHOOT))
    assert row["lead_time_demand"] == pytest.approx(140.0) and row["urgency"] == "critical"
    assert row["days_to_stockout"] == pytest.approx(5.0) and row["order_qty"] > 0


def test_open_orders_due_date() -> None:
    """A long lead time with a healthy open order: taken to arrive at the end of the lead time, the
    order leaves the shelf empty first (critical, expedite); with `on_order_due` it arrives when
    the snapshot says and the row needs no action. An overdue order is taken as arriving the
    next day, and said."""
    fc, hist = forecast({"A": 10.0}), history({"A": np.full(120, 10.0)})
    base = dict(item_id=["A"], on_hand=[150.0], lead_time_days=[60], on_order=[600.0])
    blind = one(recommend(fc, stock(**base), history=hist, policy=NO_UNDERSHOOT))
    assert blind["urgency"] == "critical" and blind["days_to_stockout"] == pytest.approx(15.0)
    assert blind["order_qty"] == 0.0  # the position is above the reorder point: nothing to order
    due = one(recommend(fc, stock(**base, on_order_due=[START + timedelta(days=10)]), history=hist,
                        policy=NO_UNDERSHOOT))
    assert due["urgency"] == "ok" and due["days_to_stockout"] is None  # 750 last 75 days: past L + review
    assert f"on order due {START + timedelta(days=10)}" in due["notes"]
    late = one(recommend(fc, stock(**base, on_order_due=[START - timedelta(days=3)]), history=hist,
                         policy=NO_UNDERSHOOT))
    assert late["urgency"] == "ok" and late["days_to_stockout"] is None and "overdue" in late["notes"]


def test_an_open_order_due_after_the_lead_time_does_not_stop_an_order() -> None:
    """A supplier's delay: 1000 units due on day 60, lead time 7, 1 a day. The open order counted
    against the reorder point, so the row said "no order" (and "excess") while the shelf ran dry
    for 40 days. It protects nothing before it arrives: with the shelf at the reorder point an
    order is due, sized to bridge to the late order (capped at the order-up-to level)."""
    fc, hist = forecast({"A": 1.0}, horizon=90), history({"A": np.ones(200)})
    base = dict(item_id=["A"], lead_time_days=[7], on_order=[1000.0])

    def row(on_hand: float, due_day: int) -> dict:
        st = stock(**base, on_hand=[on_hand], on_order_due=[START + timedelta(days=due_day - 1)])
        return one(recommend(fc, st, history=hist, policy=NO_UNDERSHOOT))

    calm = row(20.0, 60)  # 20 days of stock: an order is due only once the shelf is at the reorder point
    assert calm["order_qty"] == 0.0 and calm["days_to_stockout"] == pytest.approx(20.0)
    assert "on order due after the lead time (day 60 > 8): not counted against the reorder" in calm["notes"]
    low = row(3.0, 43)  # at the reorder point (7): up to the order-up-to level (7 + 14 d of cover)
    assert low["urgency"] == "critical" and low["order_qty"] == pytest.approx(21.0 - 3.0)
    soon = row(5.0, 12)  # due on day 12, after the lead time, sooner than the cover lasts: bridged
    assert soon["order_qty"] == pytest.approx(11.0 - 5.0)  # days 1-11's demand and no safety stock
    early = row(5.0, 6)  # due within the lead time: it counts, as before (no order)
    assert early["order_qty"] == 0.0 and "not counted" not in early["notes"]


def test_a_spike_on_the_history_s_last_day_weighs_as_one_on_any_other() -> None:
    """One use of 100 units in a year of an intermittent part: its reorder point was 661 with the
    use on the history's last day and ~140 with it 6+ days before (7-day blocks drew the last
    days rarely, and the rescaling to the forecast's level then inflated every sample). Blocks
    now wrap around the history: the same reorder point wherever the use falls."""
    items = pl.DataFrame({"item_id": ["S"], "demand_class": ["intermittent"]})
    rops = []
    for before in (0, 1, 3, 100):
        y = np.zeros(365)
        y[-1 - before] = 100.0
        st = stock(item_id=["S"], on_hand=[0.0], lead_time_days=[30], service_level=[0.95])
        rops.append(one(recommend(forecast({"S": 0.3}), st, history=history({"S": y}), items=items),
                        "S")["reorder_point"])
    assert max(rops) < 1.15 * min(rops) and max(rops) < 200, rops


def test_sites_split_evenly_get_the_safety_stock_of_independent_demand() -> None:
    """Four warehouses of independent demand (Poisson 2.5 a day each), a history without sites,
    lead time 30, target 0.95: each site's reorder point is the 0.95 quantile of its own 30-day
    demand (89), not the item's safety stock / 4 (82, a 0.77 service)."""
    rng = np.random.default_rng(3)
    total = sum(rng.poisson(2.5, 365).astype(float) for _ in range(4))
    st = stock(item_id=["A"] * 4, site=["S1", "S2", "S3", "S4"], on_hand=[100.0] * 4, lead_time_days=[30] * 4,
               service_level=[0.95] * 4)
    rop = one(recommend(forecast({"A": 10.0}, horizon=60), st, history=history({"A": total}),
                        policy=NO_UNDERSHOOT), "A", "S1")["reorder_point"]
    need = float(np.quantile(rng.poisson(2.5, (20000, 30)).sum(1), 0.95))
    assert need - 2 < rop < need + 4, (rop, need)


def test_excess_stock_is_flagged() -> None:
    """A position far above the order-up-to level (more than `excess_days` of demand) is flagged,
    with how many days of demand it holds; a normal one is not."""
    fc, hist = forecast({"A": 2.0, "B": 2.0}), history({"A": np.full(120, 2.0), "B": np.full(120, 2.0)})
    st = stock(item_id=["A", "B"], on_hand=[1000.0, 60.0], lead_time_days=[10, 10])
    recs = recommend(fc, st, history=hist, policy=NO_UNDERSHOOT)
    a, b = one(recs, "A"), one(recs, "B")
    assert "excess stock: position 1000 is 500 days of demand" in a["notes"] and flags(a["notes"]) == "excess"
    assert "excess" not in b["notes"]


def test_negative_on_hand_is_owed() -> None:
    """An ERP's negative stock (backorders) is read, not refused (one row stopped the whole night):
    the units owed count against the position and the item is out now."""
    fc = forecast({"A": 2.0})
    hist = history({"A": np.full(120, 2.0)})
    row = one(recommend(fc, stock(item_id=["A"], on_hand=[-3.0], lead_time_days=[5]), history=hist,
                        policy=NO_UNDERSHOOT))
    assert row["days_to_stockout"] == 0.0 and row["urgency"] == "critical"
    assert row["order_qty"] == pytest.approx(math.ceil(row["order_up_to"] + 3.0))
    assert "3 owed (backorders)" in row["notes"]


def test_site_safety_stock_keeps_the_sites_own_spread() -> None:
    """Four sites with independent demand: the item's backtest errors x a site's share (0.25) treat
    the sites as moving together and gave a site ~12 units of safety stock where ~20 are needed
    (the 95% quantile of Poisson(140) minus 140); the site's own history keeps its spread."""
    rng = np.random.default_rng(5)
    sites = {f"A@s{k}": rng.poisson(10.0, 365).astype(float) for k in range(4)}
    hist = history(sites, sites={key: key[-2:] for key in sites})
    actual = rng.poisson(40.0, 90).astype(float)
    bt = backtests("A", actual, np.full(90, 40.0))
    st = stock(item_id=["A"] * 4, site=[f"s{k}" for k in range(4)], on_hand=[500.0] * 4,
               lead_time_days=[14] * 4, service_level=[0.95] * 4)
    recs = recommend(forecast({"A": 40.0}), st, history=hist, backtests=bt, policy=NO_UNDERSHOOT)
    assert recs.height == 4
    for row in recs.iter_rows(named=True):
        assert 16.0 < row["safety_stock"] < 26.0, row
        assert "site's own demand spread" in row["notes"] and row["method"] == "bootstrap"
    # one site (share 1): the item's errors as before
    one_site = recommend(forecast({"A": 40.0}), st.head(1), history=hist.filter(pl.col("site") == "s0"),
                         backtests=bt, policy=NO_UNDERSHOOT)
    assert one(one_site)["method"] == "residual"


def test_cli_bad_stock_exits_2_and_writes_nothing(published: dict[str, Path]) -> None:
    root = published["root"]
    before = (root / "metadata" / "last_updated.json").read_text()
    bad = published["tmp"] / "bad.csv"
    bad.write_text("item_id,on_hand,lead_time_days,on_order\nA,1,5,0\nB,1,5,-2\n")
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(bad),
                              "--data", str(published["data"])])
    assert res.exit_code == 2
    assert f"{bad}: line 3: on_order -2 in column 'on_order' must be >= 0" in " ".join(res.output.split())
    assert not (root / "recommendations").exists()
    assert (root / "metadata" / "last_updated.json").read_text() == before


def test_cli_without_a_published_run_exits_2(tmp_path: Path, published: dict[str, Path]) -> None:
    res = runner.invoke(app, ["recommend", "--results", str(tmp_path / "none"), "--stock",
                              str(published["stock"]), "--data", str(published["data"])])
    assert res.exit_code == 2 and "no published run" in res.output
    res = runner.invoke(app, ["recommend", "--results", str(published["root"]), "--data",
                              str(published["data"]), "--stock", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "file not found" in res.output


def test_cli_reads_the_history_the_run_read_by_default(published: dict[str, Path]) -> None:
    """Without --data, `recommend` reads the demand file named in the run's record (as `report`
    does), not `paths.data`: the same rows as with --data."""
    root, args = published["root"], ["--stock", str(published["stock"])]
    res = runner.invoke(app, ["recommend", "--results", str(root), *args, "--data", str(published["data"])])
    assert res.exit_code == 0, res.output
    explicit = pl.read_parquet(root / "recommendations" / "run_date=2024-01-01")
    res = runner.invoke(app, ["recommend", "--results", str(root), *args],
                        env={"NOVA_RAY_DATA": str(published["tmp"] / "elsewhere.parquet")})
    assert res.exit_code == 0, res.output
    assert "not found" not in res.output
    assert pl.read_parquet(root / "recommendations" / "run_date=2024-01-01").equals(explicit)


def test_cli_stock_of_other_items_exits_2_and_keeps_the_recommendations(published: dict[str, Path]) -> None:
    root, data = published["root"], str(published["data"])
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(published["stock"]),
                              "--data", data])
    assert res.exit_code == 0, res.output
    part = root / "recommendations" / "run_date=2024-01-01"
    before = pl.read_parquet(part)
    other = published["tmp"] / "other.csv"
    other.write_text("item_id,on_hand,lead_time_days\nNOPE,1,1\nX-1,2,2\n")
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(other), "--data", data])
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"{other}: none of its 2 items is in the forecast (the file has 'NOPE', 'X-1'" in text
    assert "written to" not in text and pl.read_parquet(part).equals(before)
    partial = published["tmp"] / "partial.csv"
    partial.write_text("item_id,on_hand,lead_time_days\nA,1,5\n")
    res = runner.invoke(app, ["recommend", "--results", str(root), "--stock", str(partial), "--data", data])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "2 forecast item(s) have no stock row and get no recommendation: B, C" in text


def test_amend_run_leaves_other_runs_pointer_alone(published: dict[str, Path]) -> None:
    root = published["root"]
    ptr = (root / "metadata" / "last_updated.json").read_text()
    tbl = pl.from_arrow(SCHEMA.empty_table()).to_arrow()
    rec = amend_run(root, "20231231-old", "2023-12-31", "recommendations", tbl, {"run_id": "20231231-old"})
    assert "recommendations" not in rec["row_counts"] and "recommendations" not in rec["partitions"]
    assert not (root / "recommendations" / "run_date=2023-12-31").exists()  # empty: no file
    assert (root / "metadata" / "last_updated.json").read_text() == ptr
    with pytest.raises(ValueError):
        amend_run(root, "20240101-abc", "2024-01-01", "forecasts", tbl, {})


def test_amended_run_can_be_synced(published: dict[str, Path]) -> None:
    from nova_ray.io.publish import find_run

    res = runner.invoke(app, ["recommend", "--results", str(published["root"]), "--stock",
                              str(published["stock"]), "--data", str(published["data"])])
    assert res.exit_code == 0, res.output
    run = find_run(published["root"])  # checks partitions, run ids in the files, and row counts
    assert run.row_counts["recommendations"] == 3


def test_an_amended_run_synced_again_never_changes_a_published_file(published: dict[str, Path]) -> None:
    """Recommendations recomputed after the sync (a new stock snapshot) and synced again: the new
    table goes to a file of its own name, the one the current manifest names stays as it was."""
    from nova_ray.io.publish import sync_run
    from nova_ray.serve.store import RunStore

    target = published["tmp"] / "shared"
    target.mkdir()  # sync never creates its target
    args = ["recommend", "--results", str(published["root"]), "--data", str(published["data"])]
    assert runner.invoke(app, [*args, "--stock", str(published["stock"])]).exit_code == 0
    sync_run(published["root"], target)
    first = {p: p.read_bytes() for p in target.rglob("*.parquet")}
    (rec_file,) = [p for p in first if "recommendations" in p.parts[-3]]
    restocked = published["tmp"] / "restocked.csv"
    restocked.write_text("item_id,site,on_hand,lead_time_days,unit_cost\nA,S1,900,5,10\nB,S1,900,5,1\n"
                         "C,S1,900,3,2\n")
    assert runner.invoke(app, [*args, "--stock", str(restocked)]).exit_code == 0
    report = sync_run(published["root"], target)
    assert report.uploaded == 1 and report.skipped == len(first) - 1
    assert all(p.read_bytes() == data for p, data in first.items())  # nothing overwritten
    store = RunStore(str(target))
    assert store.refresh() and store.current is not None
    recs = store.current.kinds["recommendations"].table
    assert set(recs.column("urgency").to_pylist()) == {"ok"} and rec_file.exists()


def test_a_failed_swap_keeps_the_runs_old_table(published: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                 held_elsewhere) -> None:
    """Failing between moving the old table aside and moving the new one in, amend_run puts the old
    one back (the run never has none); while another job holds the results folder, `recommend`
    waits for no one: it exits 3 and writes nothing."""
    import os

    from nova_ray.io import recommendations as amend_mod

    root = published["root"]
    args = ["recommend", "--results", str(root), "--stock", str(published["stock"]), "--data",
            str(published["data"])]
    assert runner.invoke(app, args).exit_code == 0
    part = root / "recommendations" / "run_date=2024-01-01"
    before = pl.read_parquet(part)
    replace, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new table's move into place
            raise OSError("disk full")
        replace(src, dst)

    monkeypatch.setattr(amend_mod.os, "replace", failing)
    table = before.with_columns(order_qty=pl.lit(0.0)).to_arrow()
    with pytest.raises(OSError, match="disk full"):
        amend_run(root, "20240101-abc", "2024-01-01", "recommendations", table, {"run_id": "20240101-abc"})
    monkeypatch.setattr(amend_mod.os, "replace", replace)
    assert pl.read_parquet(part).equals(before)
    with held_elsewhere(root):
        res = runner.invoke(app, args)
    assert res.exit_code == 3 and "another nova-ray job is running" in res.output
    assert pl.read_parquet(part).equals(before)


def test_a_stockout_before_the_run_date_is_critical() -> None:
    """A history that ends weeks before the run: a stock-out projected on a day already past is
    critical, with a note naming both dates; without the run date the urgency is by days alone."""
    st = stock(item_id=["A"], on_hand=[116.0], lead_time_days=[3])
    kw = dict(history=history({"A": np.full(200, 10.0)}), policy=NO_UNDERSHOOT)
    late = one(recommend(forecast({"A": 10.0}), st, today=START + timedelta(days=24), **kw))
    assert late["stockout_date"] == START + timedelta(days=11) and late["urgency"] == "critical"
    assert "before the run date 2024-01-25" in late["notes"]
    same = one(recommend(forecast({"A": 10.0}), st, **kw))
    assert same["urgency"] == "high" and "run date" not in same["notes"]


def test_idle_and_new_items_are_noted_and_flagged() -> None:
    """Stock with no demand in the last year is noted as idle; an item with weeks of history as
    new (its export may lack its earlier days); the notes read as short flags."""
    from nova_ray.recommend import flags

    y_idle = np.zeros(400)
    y_idle[:20] = 5.0  # demand once, over a year before
    st = stock(item_id=["IDLE", "NEW"], on_hand=[40.0, 5.0], lead_time_days=[10, 10])
    out = recommend(forecast({"IDLE": 0.0, "NEW": 1.0}), st,
                    history=history({"IDLE": y_idle, "NEW": np.ones(46)}), policy=NO_UNDERSHOOT)
    idle, new = one(out, "IDLE"), one(out, "NEW")
    assert "no demand in the last 365 d: 40 on hand idle" in idle["notes"] and idle["urgency"] == "ok"
    assert "46 d of history (from its first row)" in new["notes"]
    assert flags(idle["notes"]).startswith("idle stock") and flags(new["notes"]).startswith("new")
    assert flags("history 10 d < 28 d: normal approximation; stock-out expected before a new order can "
                 "arrive (lead time 45 d)") == "short history, expedite"
    assert flags("") == "" and flags(None) == ""
    zero = one(recommend(forecast({"A": 2.0}), stock(item_id=["A"], on_hand=[5.0], lead_time_days=[0]),
                         history=history({"A": np.full(200, 2.0)}), policy=NO_UNDERSHOOT))
    assert zero["reorder_point"] == 0
    assert "lead time 0 d: no lead-time demand or safety stock (" in zero["notes"]
    assert "no lead time" in flags(zero["notes"])
    # with the review's undershoot (the default): an order placed tonight comes before tomorrow's
    # demand, but the shelf must hold until the next review; a reorder point of 0 ran it dry
    y = np.random.default_rng(3).poisson(10.0, 200).astype(float)
    daily = one(recommend(forecast({"A": 10.0}), stock(item_id=["A"], on_hand=[5.0], lead_time_days=[0],
                                                        service_level=[0.95]), history=history({"A": y})))
    assert daily["lead_time_demand"] == 0 and 10 < daily["reorder_point"] < 17 and daily["order_qty"] > 0
    assert "lead time 0 d: no lead-time demand, a safety stock for the day to the next" in daily["notes"]
