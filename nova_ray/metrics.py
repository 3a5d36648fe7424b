"""Forecast error metrics as Polars expressions, one expression each (actual vs forecast columns)."""

from __future__ import annotations

import polars as pl

A, F = pl.col("actual"), pl.col("forecast")


def mae() -> pl.Expr:
    return (A - F).abs().mean().alias("mae")


def rmse() -> pl.Expr:
    return ((A - F) ** 2).mean().sqrt().alias("rmse")


def smape() -> pl.Expr:
    """Symmetric MAPE in percent (0..200); periods where both are zero count as zero error."""
    den = A.abs() + F.abs()
    return (pl.when(den > 0).then(200 * (A - F).abs() / den).otherwise(0.0)).mean().alias("smape")


def mape() -> pl.Expr:
    """MAPE in percent over periods with non-zero actuals; null when there are none."""
    return (100 * ((A - F) / A).abs()).filter(A != 0).mean().alias("mape")


def mase() -> pl.Expr:
    """MAE scaled by the in-sample seasonal-naive MAE (column `scale`); null when that is zero."""
    scale = pl.col("scale").first()
    return pl.when(scale > 0).then((A - F).abs().mean() / scale).otherwise(None).alias("mase")


def bias() -> pl.Expr:
    """Mean forecast minus actual: positive means over-forecasting."""
    return (F - A).mean().alias("bias")


def coverage(level: int) -> pl.Expr:
    """Share of actuals inside the `level`% interval."""
    lo, hi = pl.col(f"lo_{level}"), pl.col(f"hi_{level}")
    return ((A >= lo) & (A <= hi)).cast(pl.Float64).mean().alias(f"coverage_{level}")


def wape() -> pl.Expr:
    """Sum of absolute errors over the sum of actuals; null when demand is zero."""
    s = A.abs().sum()
    return pl.when(s > 0).then((A - F).abs().sum() / s).otherwise(None).alias("wape")


ALL = (mae, rmse, smape, mape, mase, bias, wape)


def evaluate(backtests: pl.DataFrame, by: tuple[str, ...] = ("item_id", "model", "window")) -> pl.DataFrame:
    """One row per group with every metric and the 80/95% coverage."""
    exprs = [f() for f in ALL] + [coverage(80), coverage(95), pl.len().alias("n")]
    return backtests.group_by(list(by), maintain_order=True).agg(exprs).sort(list(by))
