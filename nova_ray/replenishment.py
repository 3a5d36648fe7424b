"""Pure replenishment pieces: the projected stock-out day, urgency, EOQ, order rounding, ABC
classes, the block bootstrap of lead-time errors and the review undershoot. numpy in, numbers
out; `recommend.py` puts them together per stock row."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .recommend import Policy


def extend_path(path: np.ndarray, days: int, tail: int = 7) -> np.ndarray:
    """`path` extended (or cut) to `days` values; beyond its end at the mean of its last `tail` values."""
    path = np.asarray(path, dtype=float)
    if days <= len(path):
        return path[:days]
    rate = float(path[-tail:].mean()) if len(path) else 0.0
    return np.concatenate([path, np.full(days - len(path), rate)])


def stockout(path: np.ndarray, on_hand: float, on_order: float = 0.0,
             arrival_day: int | None = None) -> float | None:
    """Days until the projected on-hand reaches zero with demand then going unmet, or None within
    the path.

    Day t (1-based) consumes path[t-1]; `on_order` arrives at the start of day arrival_day + 1.
    E.g. 10 on hand at 2/day -> 5.0 (empty at the end of day 5, demand unmet on day 6); 10 on
    hand for a path [10, 0, 0] -> None (emptied, but no demand goes unmet); a negative on hand
    (units owed) -> 0.0 at the first day with demand. A shelf emptied on the path's last day
    counts when that day has demand (the path goes on at its rate).
    """
    f = np.asarray(path, dtype=float)
    n = len(f)
    if n == 0:
        return None
    f = np.append(f, f[-1])  # the day after the path, only to see whether demand goes on
    t = np.arange(1, n + 2)
    avail = on_hand + (on_order * (t > arrival_day) if arrival_day is not None else 0.0)
    cum = np.cumsum(f)
    hit = np.flatnonzero((cum > avail + 1e-9) & (f > 0))  # the first day with demand unmet
    if len(hit) == 0:
        return None
    i = int(hit[0])
    if i == n:  # unmet only after the path: a stock-out at its end if the shelf was empty then
        return float(n) if cum[n - 1] >= (avail[n - 1] if np.ndim(avail) else avail) - 1e-9 else None
    before = cum[i - 1] if i else 0.0
    avail_i = float(avail[i]) if np.ndim(avail) else float(avail)
    return float(i + min(1.0, max(0.0, avail_i - before) / f[i]))


def urgency(days: float | None, policy: Policy, lead: float = 0.0, order_due: bool = False,
            past: bool = False) -> str:
    """critical / high / medium / ok by days until stock-out (None: none in sight): critical within
    `critical_days`, before an order placed now can arrive (`days` < `lead`, the lead time: only an
    expedited order helps) or on a day already `past` (a history older than the run); high within
    `high_days`; medium within `medium_days` or when an order is due (the position is at or below
    the reorder point); else ok."""
    if days is not None and (days <= policy.critical_days or days < lead or past):
        return "critical"
    if days is not None and days <= policy.high_days:
        return "high"
    if (days is not None and days <= policy.medium_days) or order_due:
        return "medium"
    return "ok"


def eoq(annual_demand: float, order_cost: float | None, unit_cost: float | None,
        holding_rate: float | None) -> float | None:
    """sqrt(2 D S / H) with H = unit_cost x holding_rate; None when a cost is unknown or zero."""
    if order_cost is None or unit_cost is None or holding_rate is None:
        return None
    h = unit_cost * holding_rate
    if h <= 0 or order_cost <= 0:
        return None
    return math.sqrt(2.0 * max(annual_demand, 0.0) * order_cost / h)


def round_order(qty: float, pack_size: float | None = None, min_order_qty: float | None = None) -> float:
    """A positive need rounded up to whole packs (pack 1 when missing), then at least the minimum order."""
    if qty <= 1e-9:
        return 0.0
    pack = pack_size if pack_size and pack_size > 0 else 1.0
    q = math.ceil(qty / pack - 1e-9) * pack
    if min_order_qty and q < min_order_qty:
        q = math.ceil(min_order_qty / pack - 1e-9) * pack
    return float(q)


def abc_classes(values: np.ndarray, a: float = 0.80, b: float = 0.95) -> np.ndarray:
    """'A' for the items making up the first `a` of the total, 'B' up to `b`, else 'C' (ties by order)."""
    v = np.maximum(np.asarray(values, dtype=float), 0.0)
    out = np.full(len(v), "C", dtype=object)
    total = v.sum()
    if total <= 0:
        return out
    order = np.argsort(-v, kind="stable")
    before = (np.cumsum(v[order]) - v[order]) / total
    out[order] = np.where(before < a - 1e-12, "A", np.where(before < b - 1e-12, "B", "C"))
    return out


def block_bootstrap(segments: list[np.ndarray], lead: int, samples: int, block: int,
                    rng: np.random.Generator, circular: bool = False) -> np.ndarray:
    """`samples` sums over `lead` days, each built from random `block`-day runs of the segments.

    Blocks never straddle two segments; a lead time within one block samples real `lead`-day spans.
    `circular`: a block may run past a segment's end into its start, so that every day is drawn
    as often (without it a segment's last days are in few blocks: a spike on a history's last day
    was drawn a seventh as often, and the rescaling to the forecast's level then inflated every
    sample, the reorder point 5x).
    """
    segs = [np.asarray(s, dtype=float) for s in segments if len(s)]
    if lead <= 0 or not segs:
        return np.zeros(samples)
    b = max(1, min(block, max(len(s) for s in segs)))
    cs_parts, starts, offset = [], [], 0
    for s in segs:
        if circular and len(s) >= b:
            s = np.concatenate([s, s[: b - 1]])  # every day starts a block
        if len(s) >= b:
            starts.append(offset + np.arange(len(s) - b + 1))
        cs_parts.append(np.concatenate([[0.0], np.cumsum(s)]))
        offset += len(s) + 1
    cs = np.concatenate(cs_parts)
    valid = np.concatenate(starts)
    k = math.ceil(lead / b)
    st = valid[rng.integers(0, len(valid), size=(samples, k))]
    sums = cs[st + b] - cs[st]
    last = lead - (k - 1) * b
    sums[:, -1] = cs[st[:, -1] + last] - cs[st[:, -1]]
    return sums.sum(axis=1)


def period_bootstrap(totals: np.ndarray, period_days: float, lead: int, samples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """`samples` sums over `lead` days from whole periods' totals (a history given per week, month
    or quarter): lead / period_days periods, each total drawn at random; the last fraction f of a
    period from one more total T as f x mean + sqrt(f) x (T - mean), at least 0 (days within a
    period taken as independent: the variance of f of a period is f times a period's). Days
    spread evenly over their period and drawn in 7-day blocks from different periods averaged a
    month's spike away (a lumpy item's safety stock about half what it needs)."""
    t = np.asarray(totals, dtype=float)
    if lead <= 0 or len(t) == 0 or period_days <= 0:
        return np.zeros(samples)
    whole, frac = divmod(lead / period_days, 1.0)
    k = int(whole) + (frac > 1e-9)
    draws = t[rng.integers(0, len(t), size=(samples, k))]
    if frac > 1e-9:
        m = float(t.mean())
        draws[:, -1] = np.maximum(0.0, frac * m + math.sqrt(frac) * (draws[:, -1] - m))
    return draws.sum(axis=1)


def undershoot(y: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """How far the position falls below the reorder point on the review day that triggers an order:
    V x D*, D* a daily demand drawn in proportion to its size, V uniform(0, 1) (renewal overshoot)."""
    y = np.asarray(y, dtype=float)
    w = np.clip(y, 0.0, None)
    if len(y) == 0 or w.sum() <= 0:
        return np.zeros(samples)
    d = rng.choice(w, size=samples, p=w / w.sum())
    return rng.random(samples) * d


def quantile(x: np.ndarray, p: float) -> float:
    """The p-quantile (linear interpolation; monotone in p)."""
    return float(np.quantile(x, p)) if len(x) else 0.0
