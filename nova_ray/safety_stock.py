"""The safety stock of one stock row, by method (docs/recommendations.md, *Safety stock*):
``residual`` (block bootstrap of the ensemble's daily backtest errors over the lead time, the site's
own history when that spreads more), ``bootstrap`` (the history's lead-time sums: 7-day blocks of
daily rows, whole periods of per-period rows, rescaled to the forecast's level) or ``normal`` (the
forecast's intervals, for a short history); one-off spikes capped first. numpy in, a number out."""

from __future__ import annotations

import math
import zlib
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np

from .cleaning import CAPPED_CLASSES, fence
from .recommend_inputs import period_totals
from .replenishment import block_bootstrap, extend_path, period_bootstrap, quantile, undershoot

if TYPE_CHECKING:
    from .recommend import Policy, StockRow

INTERMITTENT = frozenset({"intermittent", "lumpy", "zero"})  # their level is the history's rate


def _rng(seed: int, item: str, site: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(f"{item}\x1f{site}".encode())])


def safety_stock(r: StockRow, p: float, lead: int, ltd: float, full: np.ndarray,
                 segs: list[np.ndarray] | None, policy: Policy) -> tuple[float, str]:
    """(safety stock >= 0, method) for service level `p` over `lead` days (the row's notes say
    which data set it, where that is not the default)."""
    n_resid = sum(len(x) for x in segs) if segs else 0
    use_resid = r.cls not in INTERMITTENT and n_resid >= policy.min_residual_days
    rng = _rng(policy.bootstrap_seed, r.stock["item_id"], r.stock["site"])
    n = policy.bootstrap_samples
    history, segs = _capped(r, segs, policy)
    if lead <= 0:  # no lead time, but a day between reviews: the undershoot below the reorder point
        # (a reorder point of 0 let the shelf run dry on nine days in ten at 10 a day)
        ss = quantile(undershoot(history, n, rng), p) if policy.undershoot else 0.0
        return max(0.0, ss), "residual" if use_resid else "bootstrap"
    if use_resid:
        assert segs is not None
        errors = block_bootstrap(segs, lead, n, policy.block_days, rng) * r.share
        bias = float(np.concatenate(segs).mean()) * lead * r.share
        if bias < 0:  # an over-forecast in the backtest is not credited against the safety stock
            errors -= bias
        if policy.undershoot:
            errors += undershoot(history, n, rng)
        ss = max(0.0, quantile(errors, p))
        if r.share < 1.0 and len(history) >= policy.min_history_days:
            # the item's errors x the share treat the sites as moving together; sites that do
            # not (4 independent sites: 12 against the 20 needed) keep their own history's spread
            own = _history_ss(r, history, p, lead, ltd, policy, rng)
            if own > ss:
                r.notes.append(f"site's own demand spread: safety stock {own:.4g} from its history, above "
                               f"{ss:.4g} from the item's backtest errors x its share {r.share:.2f}")
                return own, "bootstrap"
        return ss, "residual"
    if segs is not None and r.cls not in INTERMITTENT:
        r.notes.append(f"{n_resid} backtest errors < {policy.min_residual_days}: bootstrap of the history"
                       if n_resid else "no daily backtest errors: bootstrap of the history")
    if len(history) >= policy.min_history_days:
        return _history_ss(r, history, p, lead, ltd, policy, rng), "bootstrap"
    if r.sigma is None:
        r.notes.append("no backtest errors, history or intervals: safety stock 0")
        return 0.0, "normal"
    r.notes.append(f"history {len(r.history)} d < {policy.min_history_days} d: normal approximation"
                   if r.history_given else "no demand history given: normal approximation")
    var = extend_path(r.sigma**2, len(full))[:lead].sum()
    return max(0.0, NormalDist().inv_cdf(p) * math.sqrt(var)), "normal"


MIN_PERIODS = 4  # whole periods of a per-period history that its bootstrap draws from, at least


def _history_ss(r: StockRow, history: np.ndarray, p: float, lead: int, ltd: float, policy: Policy,
                rng: np.random.Generator) -> float:
    """Safety stock from a bootstrap of the history's `lead`-day sums, rescaled to the lead-time
    demand `ltd` (the forecast's level, the history's shape): 7-day blocks of daily rows, whole
    periods of a history given per period (`period_bootstrap`)."""
    n = policy.bootstrap_samples
    totals, length = period_totals(history, r.as_of, r.period) if r.period and r.as_of else (None, 0.0)
    if totals is not None and len(totals) >= MIN_PERIODS:
        samples = period_bootstrap(totals, length, lead, n, rng)
    else:
        samples = block_bootstrap([history], lead, n, policy.block_days, rng, circular=True)
    m = float(samples.mean())
    samples *= ltd / m if m > 0 else 0.0
    if policy.undershoot:
        samples += undershoot(history, n, rng) * (ltd / m if m > 0 else 0.0)
    return max(0.0, quantile(samples, p) - ltd)


ONE_OFF = 5.0  # x the outlier fence: a day this far out ...
MAX_ONE_OFFS = 2  # ... on at most this many days of the history window is a one-off, not demand


def _capped(r: StockRow, segs: list[np.ndarray] | None, policy: Policy
            ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """The row's history and backtest errors with a smooth or erratic item's one-offs capped: days
    above ONE_OFF x the models' outlier fence (nova_ray/cleaning.py), on at most MAX_ONE_OFFS days
    of the window, are set to the fence, and such days' backtest errors to a day at the fence's.
    One day of 5000 for an item of 10 a day, in 42 days of backtest errors, set a safety stock of
    ~1000 days of demand. Values above the fence that recur (an erratic item's peaks, 2-17 a year
    on the demo's items, at most 3.2x the fence) are demand: capping them too cost the inventory
    simulation 3.3 points of cycle service. Intermittent and lumpy items, and `cap_outliers` off:
    as they are."""
    if not policy.cap_outliers or r.cls not in CAPPED_CLASSES or not len(r.history):
        return r.history, segs
    limit = fence(r.history)
    far = r.history > ONE_OFF * limit
    if not np.isfinite(limit) or not 0 < int(far.sum()) <= MAX_ONE_OFFS:
        return r.history, segs
    history = np.where(far, limit, r.history)
    r.notes.append(f"{int(far.sum())} one-off history day(s) above {ONE_OFF:g} x {limit:.4g} capped for "
                   "the safety stock")
    if segs and r.share > 0:  # errors of the item's demand, the site's share of it
        # a one-off day's error (its actual above ONE_OFF x the fence, its forecast below the fence)
        # is over (ONE_OFF - 1) x the fence: set to the error of a day at the fence against the
        # mean level, as if its actual had been capped too
        # (capped at ONE_OFF x the fence, one 2000 kg day in the backtest still made the safety
        # stock 3.8 times that of the same history without it)
        at_fence = max(0.0, limit - float(history.mean())) / r.share  # a day at the fence, a mean forecast
        segs = [np.where(e > (ONE_OFF - 1) * limit / r.share, at_fence, e) for e in segs]
    return history, segs
