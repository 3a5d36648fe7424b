"""The ensemble, in Polars: per-item weights learned from backtest errors, conformal intervals.

Weights: inverse backtest MAE per item and model, models far worse than the item's best (or
failed) left out, shrunk towards equal weights when the evidence (number of windows) is thin, and
equal when no window holds any demand (no evidence at all).
Intervals: empirical quantiles of the ensemble's own backtest residuals (split conformal, with the
finite-sample correction), falling back to weighted model bounds when there are too few residuals
(the 95% band, with enough residuals for the 80% only, is that band widened as a normal's); a band
starts at 0 when the backtest actuals are 0 more often than its lower tail; each backtest window is
scored with intervals from the other windows only (leave-one-window-out), and the forecast's band
is built the way those are (the held-out count decides between conformal and fallback).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import polars as pl

from .models import LEVELS

NAME = "ensemble"
FAR_WORSE = 2.0  # models whose backtest MAE exceeds this multiple of the best are dropped
SHRINK_WINDOWS = 2.0  # lambda = windows / (windows + SHRINK_WINDOWS)
MIN_RESIDUALS = 20
REGIME = "n_held_out"  # per item: the fewest residuals a backtest window's band was built from
VALUE_COLS = ["forecast"] + [f"{s}_{lv}" for lv in LEVELS for s in ("lo", "hi")]


def learn_weights(forecasts: pl.DataFrame, backtests: pl.DataFrame) -> pl.DataFrame:
    """(item_id, model, weight, backtest_mae, windows): non-negative weights summing to 1 per item."""
    source = forecasts if forecasts.height else backtests  # backtests alone under --only-metrics
    fitted = source.select("item_id", "model").unique()
    if backtests.height:
        errs = backtests.group_by("item_id", "model").agg(
            (pl.col("actual") - pl.col("forecast")).abs().mean().alias("backtest_mae"),
            pl.col("window").n_unique().alias("windows"),
            (pl.col("actual") != 0).any().alias("demand"),
        )
    else:
        errs = pl.DataFrame(
            schema={
                "item_id": pl.String,
                "model": pl.String,
                "backtest_mae": pl.Float64,
                "windows": pl.UInt32,
                "demand": pl.Boolean,
            }
        )
    # in a fixed row order: the sums over each item's models below then add up in the same order
    # every run (a join's output order is not fixed, and the last bits of a sum depend on it)
    df = fitted.join(errs, on=["item_id", "model"], how="left").sort("item_id", "model")
    best = pl.col("backtest_mae").min().over("item_id")
    # backtest windows without any demand tell the models apart only by how close to 0 they stay:
    # a lumpy item's seasonal naive (0 every day) took every weight with an error of 0, and the
    # published forecast was 0 for an item that takes 160 units now and then; no evidence: equal
    has_bt = (pl.col("backtest_mae").is_not_null().any() & pl.col("demand").any()).over("item_id")
    df = df.with_columns(
        keep=pl.when(has_bt)
        .then(pl.col("backtest_mae").is_not_null() & (pl.col("backtest_mae") <= FAR_WORSE * best + 1e-12))
        .otherwise(True)
    ).filter(pl.col("keep"))
    inv = 1.0 / (pl.col("backtest_mae") + 1e-6 * (1 + best))
    n_models = pl.len().over("item_id")
    lam = pl.col("windows").max().over("item_id").fill_null(0).cast(pl.Float64)
    lam = lam / (lam + SHRINK_WINDOWS)
    df = df.with_columns(
        raw=pl.when(has_bt).then(inv / inv.sum().over("item_id")).otherwise(1.0 / n_models)
    ).with_columns(weight=lam * pl.col("raw") + (1 - lam) / n_models)
    df = df.with_columns(weight=pl.col("weight") / pl.col("weight").sum().over("item_id"))
    return df.select(
        "item_id", "model", "weight", "backtest_mae", pl.col("windows").fill_null(0).cast(pl.Int32)
    ).sort("item_id", "model")


def _combine(table: pl.DataFrame, weights: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The weighted mean of the models' rows per `keys`, over the models a row has (weights renormalised:
    a model missing from one backtest window took its weight's share of that window's forecast to 0)."""
    joined = table.join(weights.select("item_id", "model", "weight"), on=["item_id", "model"], how="inner")
    joined = joined.sort([*keys, "model"])  # each sum over the models in one order, every run
    return (
        joined.group_by(keys, maintain_order=True)
        .agg(
            [((pl.col(c) * pl.col("weight")).sum() / pl.col("weight").sum()).alias(c) for c in VALUE_COLS]
            + ([pl.col("actual").first(), pl.col("scale").first()] if "actual" in table.columns else [])
        )
        .with_columns(model=pl.lit(NAME))
    )


def _residual_bounds(bt: pl.DataFrame) -> pl.DataFrame:
    """Per item: residual count and the residual quantiles that make each interval bound, the
    split-conformal ranks of the item's own residual count (so an item's intervals do not depend
    on the other items computed with it): for level 1 - a, the floor((n + 1) a / 2)-th smallest
    residual and the ceil((n + 1) (1 - a / 2))-th, clamped to the residuals there are; with at
    least `min_residuals(level)` of them they cover at least 1 - a of a new exchangeable residual."""
    n = pl.col("n_resid").cast(pl.Float64)
    bounds = []
    for lv in LEVELS:
        a = 1 - lv / 100
        ranks = {  # 1-based ranks in the sorted residuals
            f"q_lo_{lv}": ((n + 1) * a / 2).floor(),
            f"q_hi_{lv}": ((n + 1) * (1 - a / 2)).ceil(),
        }
        for name, rank in ranks.items():
            at = pl.min_horizontal(pl.max_horizontal(rank - 1, pl.lit(0.0)), n - 1).cast(pl.Int64)
            bounds.append(pl.col("_r").list.get(at).alias(name))
    return (
        bt.with_columns(r=pl.col("actual") - pl.col("forecast"))
        .group_by("item_id")
        .agg(
            # windows without any demand: their residuals (all at or below 0) would put the band
            # at 0..forecast; none, and the models' own bounds stand
            pl.when((pl.col("actual") != 0).any()).then(pl.len()).otherwise(0).alias("n_resid"),
            pl.col("r").sort().alias("_r"),
            (pl.col("actual") == 0).mean().alias("zero_share"),
        )
        .with_columns(bounds)
        .drop("_r")
    )


def min_residuals(level: float) -> int:
    """The fewest residuals that give conformal bounds at `level` percent: MIN_RESIDUALS, and
    enough that the upper rank ceil((n + 1)(1 - a/2)) is a residual, n >= 2/a - 1 (39 for 95%).
    With fewer the bound would be the largest residual, covering (n - 1)/(n + 1) (91% at 20)."""
    a = 1 - level / 100
    return max(MIN_RESIDUALS, math.ceil(round(2 / a, 9)) - 1)


def _apply_bounds(table: pl.DataFrame, resid: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Replace each level's interval bounds by forecast + residual quantiles where there are
    enough residuals for that level (`min_residuals`); the levels stay nested."""
    cols = table.columns
    out = table.join(resid, on=keys, how="left")
    n = pl.col("n_resid").fill_null(0)
    if REGIME in resid.columns:  # the held-out windows' count decides the construction (`combine`);
        # an item with one window has none held out (null): its band stays that of its residuals.
        # Held-out windows without demand count 0 (the models' bands), not "none held out": read
        # as that, all the item's residuals made a conformal band that no backtest window had
        n = pl.when(pl.col(REGIME).is_not_null()).then(pl.col(REGIME)).otherwise(n)
    out = out.with_columns(
        [
            pl.when(n >= min_residuals(lv))
            .then((pl.col("forecast") + pl.col(f"q_{s}_{lv}")).clip(lower_bound=0.0))
            .otherwise(pl.col(f"{s}_{lv}"))
            .alias(f"{s}_{lv}")
            for lv in LEVELS
            for s in ("lo", "hi")
        ]
    )
    out = out.with_columns(
        [pl.min_horizontal(f"lo_{lv}", "forecast").alias(f"lo_{lv}") for lv in LEVELS]
        + [pl.max_horizontal(f"hi_{lv}", "forecast").alias(f"hi_{lv}") for lv in LEVELS]
    )
    inner, outer = sorted(LEVELS)[0], sorted(LEVELS)[-1]  # a conformal 80% band may pass the models' 95%
    # residuals enough for the inner band only (12 steps x 3 windows: 36 < 39): the outer band
    # is the inner one widened as a normal's would be, or the models' when wider (it was the
    # models' alone, often barely wider than the conformal 80%)
    widen = _z(outer) / _z(inner)
    inner_only = (n >= min_residuals(inner)) & (n < min_residuals(outer))
    f = pl.col("forecast")
    out = out.with_columns(
        pl.when(inner_only)
        .then(pl.min_horizontal(f"lo_{outer}", (f - (f - pl.col(f"lo_{inner}")) * widen).clip(0.0)))
        .otherwise(pl.min_horizontal(f"lo_{outer}", f"lo_{inner}"))
        .alias(f"lo_{outer}"),
        pl.when(inner_only)
        .then(pl.max_horizontal(f"hi_{outer}", f + (pl.col(f"hi_{inner}") - f) * widen))
        .otherwise(pl.max_horizontal(f"hi_{outer}", f"hi_{inner}"))
        .alias(f"hi_{outer}"),
    )
    # a day without demand is likelier than the band's lower tail (an intermittent item: 0 on 90%
    # of days): the band starts at 0. Shifted by a forecast that moves day to day, the residual
    # quantiles left 0 out of the 95% band of an item that sells on one day in thirty
    zeros = pl.col("zero_share").fill_null(0.0)
    return out.with_columns(
        [pl.when(zeros >= (1 - lv / 100) / 2).then(0.0).otherwise(f"lo_{lv}").alias(f"lo_{lv}")
         for lv in LEVELS]
    ).select(cols)


def _z(level: float) -> float:
    """The standard normal quantile of a central `level` percent band's upper end."""
    return NormalDist().inv_cdf(1 - (1 - level / 100) / 2)


def combine(
    forecasts: pl.DataFrame, backtests: pl.DataFrame, weights: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ensemble forecasts and ensemble backtests, with conformal intervals where residuals allow.

    The forecast's intervals use the residuals of every backtest window. Each backtest window's own
    intervals use only the other windows' residuals, so the reported backtest coverage is honest.
    """
    fc = _combine(forecasts, weights, ["item_id", "date"])
    bt = (
        _combine(backtests, weights, ["item_id", "window", "origin", "date"])
        if backtests.height
        else backtests.head(0)
    )
    if bt.height:
        parts, held_out = [], []
        for (w,), rows in bt.group_by("window", maintain_order=True):
            # windows a step shorter than the horizon apart share days: a window's band then holds
            # residuals of days it scores, and its coverage reads high (README, Backtest)
            others = bt.filter(pl.col("window") != w)
            resid = _residual_bounds(others) if others.height else _residual_bounds(others.head(0))
            parts.append(_apply_bounds(rows, resid, ["item_id"]))
            scored = rows.select("item_id").unique()  # the items this window scores: their held-out count
            # null where the item has no other window; 0 where its other windows have no demand
            held_out.append(scored.join(resid.select("item_id", "n_resid"), on="item_id", how="left"))
        # the forecast's band is built as its backtests' are (the reported coverage measures it):
        # from the item's every residual, but conformal at a level only where each window's band,
        # from the other windows' residuals, is too (42 residuals made a conformal 95% band while
        # each window's 28 made the 80% one widened, reported as 0.97 coverage, realised 0.80)
        regime = pl.concat(held_out).group_by("item_id").agg(pl.col("n_resid").min().alias(REGIME))
        fc = _apply_bounds(fc, _residual_bounds(bt).join(regime, on="item_id", how="left"), ["item_id"])
        bt = pl.concat(parts)
    return fc.select(forecasts.columns), bt.select(backtests.columns) if bt.height else bt
