"""An incremental run's use of the model store: the regressors put on the store's scale, the facts
recorded per item (start, length, fingerprints), and which fits are stored after the run (those
fitted cold, not a backfill's, not a failed one)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from .engine import FIT_FAILED
from .factor_history import (
    NO_REGRESSORS,
    FactorCheck,
    FactorRecord,
    Today,
    check,
    on_scale,
    own_scale,
    today_of,
)
from .io.model_store import ModelStore, block_fingerprint_column, block_periods, fingerprint
from .io.results import ResultWriter
from .series import SeriesSet

LOG = logging.getLogger("nova_ray")


def on_store_scale(
    store: ModelStore, series: SeriesSet, scale: tuple[np.ndarray, np.ndarray] | None, whole: bool,
    full_refit: bool,
) -> tuple[SeriesSet, tuple[FactorRecord | None, Today, bool] | None, FactorCheck | None]:
    """The series with its regressors on the store's scale (`factor_history`), unless the run sets
    it: no comparable record, or a run over every item that refits them all (--full-refit: its
    numbers then do not depend on the store's); the stored record, today's regressors on the scale
    used and whether it is the store's; which stored fits are stale for their factors."""
    if series.exog is None or scale is None:
        return series, None, None
    stored, today = store.load_factors(), today_of(series, *scale)
    found = check(stored, today)
    kept = not own_scale(stored, today, found.stale, whole, full_refit)
    if kept:
        assert stored is not None
        series = on_scale(series, *scale, stored.mean, stored.std)
        today = replace(today, mean=stored.mean, std=stored.std)
    return series, (stored, today, kept), found


def item_facts(series: SeriesSet) -> pl.DataFrame:
    """Per item what the model store records of its history: start, length and fingerprints."""
    import pyarrow as pa

    ids = range(len(series))
    prints = [fingerprint(series.starts[i], series.values_of(i)) for i in ids]
    return pl.from_arrow(pa.table({
        "item_id": pa.array([str(x) for x in series.item_ids], pa.string()),
        "start": pa.array(series.starts.astype("datetime64[D]")),
        "n_obs": pa.array(series.lengths().astype(np.int64)),
        "fingerprint": pa.array(prints, pa.string()),
        "blocks": block_fingerprint_column((series.values_of(i) for i in ids), block_periods(series.freq)),
    }))


def save_models(
    store: ModelStore,
    writer: ResultWriter,
    facts: pl.DataFrame,
    warm: dict[str, dict],
    run_date: date,
    versions: dict[str, Any],
    max_age_days: int,
    factors: str | None = None,
) -> bool:
    """Store the model choices and backtests of the items fitted cold in this run (`facts`: see
    `item_facts`); entries past `max_age_days` (items that left the export) are dropped. A
    backfill (a run date before the store's newest fit) stores nothing: its fits on the history
    up to its date would replace those of later nights. `factors`: the key of the regressor
    history the run's fits saw (`factor_history`), recorded with each. Returns whether entries
    were written."""
    if (newest := store.newest_fit()) is not None and newest > run_date:
        LOG.info("model store kept: its newest fit (%s) is after this run's date", newest)
        return False
    # an item whose fit failed as a whole (seasonal naive only, `engine.failed_note`) stores no
    # choice, and its entry is marked failed: it is fitted cold next run, not reused (its stored
    # choice may be what failed) nor kept at naive alone until its periodic refit
    items = writer.checkpointed_items()
    broken = items.filter(pl.col("notes").str.contains(FIT_FAILED, literal=True))["item_id"].to_list()
    if warm:  # a warm item whose stored choice failed: fitted cold next run, not failing again
        tried = pl.col("item_id").is_in(list(warm)) & (pl.col("failed_models").str.len_chars() > 0)
        rows = items.filter(tried)
        broken += [
            item for item, failed in zip(rows["item_id"], rows["failed_models"], strict=True)
            if set(failed.split(",")) & set(warm[item])  # a model it had a stored choice for
        ]
    store.mark_failed(broken)
    items = items.filter(~pl.col("item_id").is_in([*warm, *broken]))
    if items.height == 0:
        return False
    # an item whose models took no regressors (its params have no "exog") records that: its fits
    # hold whatever the factors' history does (they were all fitted cold again when it moved)
    took = pl.col("params").str.json_path_match("$.exog").is_not_null()
    key = pl.when(took).then(pl.lit(factors, dtype=pl.String)).otherwise(pl.lit(NO_REGRESSORS))
    entries = (
        items.select("item_id", "params", "cpu_seconds", "demand_class")
        .join(facts, on="item_id", how="left", maintain_order="left")
        .with_columns(fitted_on=pl.lit(run_date), factors=key)
    )
    # streamed into the store by `save`, never loaded whole
    store.save(
        entries,
        writer.checkpointed_backtests(entries["item_id"].to_list()),
        versions | {"cache_max_age_days": max_age_days},  # its own: what `prune_stale` keeps it for
        drop_before=run_date - timedelta(days=max_age_days),
    )
    return True
