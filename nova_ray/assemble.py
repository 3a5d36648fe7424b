"""Model results to output tables: the ensemble joined to the model forecasts and backtests, and
the per-class accuracy summary."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from .engine import BatchResult
from .ensemble import combine, learn_weights
from .result_rows import BACKTEST_TABLE, FORECAST_TABLE, ITEMS_TABLE


def _frame(tables: list[pa.Table], schema: pa.Schema) -> pl.DataFrame:
    tables = [t for t in tables if t.num_rows]
    return pl.from_arrow(pa.concat_tables(tables) if tables else schema.empty_table())


def combine_items(
    fc: pl.DataFrame, bt: pl.DataFrame, items: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Model forecasts + ensemble, backtests + ensemble, weights, the item table, ensemble forecasts."""
    # the LSTM joins the items' model lists after the fact
    lstm_done = fc.filter(pl.col("model") == "lstm")["item_id"].unique() if fc.height else []
    if len(lstm_done):
        items = items.with_columns(
            models=pl.when(pl.col("item_id").is_in(lstm_done.to_list()))
            .then(pl.concat_str(pl.col("models"), pl.lit("lstm"), separator=",").str.strip_chars_start(","))
            .otherwise(pl.col("models"))
        )
    # rows in a fixed order, whatever order the checkpoints came in (batch files carry random
    # names): the weights, the ensemble and the metrics then sum in the same order, bit for bit
    fc = fc.sort("item_id", "model", "date")
    bt = bt.sort("item_id", "model", "window", "date")
    weights = learn_weights(fc, bt)
    ens_fc, ens_bt = combine(fc, bt, weights)
    fc = pl.concat([fc, ens_fc], how="vertical_relaxed").sort("item_id", "model", "date")
    bt = pl.concat([bt, ens_bt], how="vertical_relaxed") if ens_bt.height else bt
    return fc, bt, weights, items, ens_fc


def assemble(
    results: list[BatchResult],
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """`combine_items` over in-memory batch results."""
    return combine_items(
        _frame([r.forecasts for r in results], FORECAST_TABLE),
        _frame([r.backtests for r in results], BACKTEST_TABLE),
        _frame([r.items for r in results], ITEMS_TABLE),
    )


def best_by_class(metrics: pl.DataFrame, items: pl.DataFrame) -> tuple[dict[str, dict], dict[str, float]]:
    """Per demand class the single model with the lowest median MASE (and the ensemble's), and the
    ensemble's overall error: what the run summary reports."""
    if metrics.height == 0:
        return {}, {}
    per = (
        metrics.group_by("item_id", "model")
        .agg(pl.col("mase").mean())
        .join(items.select("item_id", "demand_class"), on="item_id")
    )
    agg = per.group_by("demand_class", "model").agg(
        pl.col("mase").median().alias("mase"), pl.len().alias("items")
    )
    best: dict[str, dict] = {}
    for cls, g in agg.group_by("demand_class"):
        singles = g.filter(pl.col("model") != "ensemble").drop_nulls("mase").sort("mase")
        ens = g.filter(pl.col("model") == "ensemble")["mase"]
        if singles.height:
            best[str(cls[0])] = {
                "model": singles["model"][0],
                "mase": singles["mase"][0],
                "ensemble_mase": ens[0] if len(ens) else None,
                "items": int(singles["items"][0]),
            }
    e = metrics.filter(pl.col("model") == "ensemble")
    ens_err = {
        k: float(v)
        for k, v in {
            "mase": e["mase"].median(),
            "smape": e["smape"].mean(),
            "coverage_80": e["coverage_80"].mean(),
        }.items()
        if v is not None
    }
    return best, ens_err
