"""The forecast pipeline: read, fan out, ensemble, evaluate, write. The CLI calls `run_forecast`."""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import __version__, clock
from .assemble import best_by_class, combine_items
from .checks import (
    export_gaps,
    horizon_beyond_history,
    horizon_problem,
    stale_history,
    too_short_to_backtest,
    unchanged_data,
)
from .config import Config, ConfigError, job_paths_problem
from .distributed import reachable_cluster, wait_for_shutdown
from .engine import EngineSpec
from .factor_history import FactorRecord, Today, merged
from .fit_stage import (
    COLD_LISTED,
    LSTM_STATE_FILE,
    FitResult,
    Progress,
    Silent,
    StageTimer,
    cold_reasons,
    fit_stage,
)
from .global_lstm import FINAL_PART, is_part
from .incremental import item_facts, on_store_scale, save_models
from .io.demand import spill_columns
from .io.lock import job_lock
from .io.model_store import ModelStore, lstm_readable
from .io.results import ResultWriter, has_stage, utc_now
from .io.source import location
from .io.spill import Spill
from .memory import frozen_heap, release_memory
from .metrics import evaluate
from .provenance import config_hash, model_versions
from .recommend import BACKTEST_COLUMNS, FORECAST_COLUMNS, HISTORY_COLUMNS, Policy, recommend, summarize
from .recommend import KIND as RECOMMENDATIONS
from .result_rows import BACKTEST_TABLE, FORECAST_TABLE, ITEMS_TABLE
from .run_inputs import attach_exog, engine_spec, load_demand, load_series, load_stock
from .run_log import run_log
from .series import SeriesSet, per_period_rows
from .tmpdirs import owned_prefix, sweep


@dataclass
class RunSummary:
    """What a run did, for the summary table and the run record."""

    run_id: str
    run_date: str
    output: str
    items: int
    models: list[str]
    failures: int
    fallbacks: list[str]
    wall_seconds: float
    rows: dict[str, int]
    backend: str
    cpu_seconds: float = 0.0
    workers: list[str] = field(default_factory=list)
    best_by_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    ensemble_error: dict[str, float] = field(default_factory=dict)
    resumed_items: int = 0
    warm_items: int = 0
    # why the other items were fitted cold: {reason: {"count": n, "items": the first COLD_LISTED}}
    cold_items: dict[str, dict[str, Any]] = field(default_factory=dict)
    lstm: str = ""  # "cold" (trained with its backtest), "warm" (stored network reused or fine-tuned) or ""
    recommendations: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    log_path: str = ""
    exog: dict[str, Any] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per progress stage
    demo_data: bool = False  # the input was the generated demo data set, not real demand
    freq: str = "D"  # the periods forecast (D, W, M, Q, Y)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def incremental(self) -> str:
        """One line: how many items reused their stored model choices, and why the others did not
        (a few item codes each; the log lists COLD_LISTED)."""
        parts = [f"{self.warm_items} items reused stored model choices"]
        if self.lstm == "warm":
            parts[0] += " (LSTM too)"
        elif self.lstm == "cold" and self.warm_items:  # the global network trained afresh for all
            parts[0] += " (the LSTM trained cold)"
        if self.resumed_items:
            parts.append(f"{self.resumed_items} resumed from the interrupted run's checkpoints")
        for why, c in self.cold_items.items():
            shown = c["items"][:3]
            more = f", +{c['count'] - len(shown)} more" if c["count"] > len(shown) else ""
            parts.append(f"{c['count']} fitted cold: {why} ({', '.join(shown)}{more})")
        return "; ".join(parts)


LOG = logging.getLogger("nova_ray")


@frozen_heap()  # the run's collections (`release_memory`) skip the imports' objects
def run_forecast(
    cfg: Config,
    items: list[str] | None = None,
    progress: Progress | None = None,
    use_ray: bool = True,
    run_date: date | None = None,
    only: str | None = None,
    resume: bool | None = False,
    full_refit: bool = False,
    publish: bool = True,
    until: date | None = None,
) -> RunSummary:
    """The whole forecast: validate input, fit on Ray, ensemble, write partitioned Parquet atomically.

    Batch results are checkpointed as they arrive (the driver keeps none of them), the ensemble is
    computed in chunks of items from the checkpoints, and everything is published in one swap.
    `resume=True` continues an interrupted run of the same input, config and date from its
    checkpoints (a warning when there is none); `resume=None` does so silently when there is one
    (the daily job). `only="forecasts"` skips metrics; `only="metrics"` runs the backtests alone.

    Incremental: items whose history only grew since their stored fit (MODELS_DIR) reuse the stored
    model choices and backtests instead of searching and backtesting again; `full_refit=True`
    ignores the store. `publish=False` (`nova-ray train`) fits and stores models without publishing.
    """
    if only not in (None, "forecasts", "metrics"):
        raise ConfigError(f"only must be 'forecasts' or 'metrics', got {only!r}")
    if problem := job_paths_problem(cfg):
        raise ConfigError(problem)
    progress = timer = StageTimer(progress or Silent())
    t0 = time.perf_counter()
    progress.stage("read input")
    loaded = load_demand(cfg, items, until)
    release_memory(collect=False)  # the reading's copies, before the next step's temporaries
    series, dataset = load_series(cfg, items, loaded)
    history_end = loaded.rows["date"].max().date()  # the demand's last day (a W/M/Q series ends on a period)
    if problem := horizon_problem(history_end, cfg.forecast.horizon, cfg.forecast.freq):
        raise ConfigError(problem)
    if publish and only is None:
        loaded.notes.extend(unchanged_data(cfg, dataset, run_date, history_end))
    release_memory(collect=False)  # the series' sort keys (~50 MiB at 2 M rows) likewise
    series, exog_record = attach_exog(cfg, series, until)
    demand, notes = loaded.rows, loaded.notes + exog_record.pop("warnings", [])
    series_start = loaded.start.date() if loaded.start is not None else None  # series_start = "file"
    del loaded
    # the stock is validated before any fitting: a bad file costs no compute and writes nothing
    stock, warnings = load_stock(cfg, demand, items) if only is None and publish else (None, [])
    warnings = notes + warnings
    if use_ray:  # a cluster that cannot be reached: said before the run's lock, log and checkpoints
        reachable_cluster(cfg.ray.address)
    daily_rows = not per_period_rows(demand["date"], cfg.forecast.freq)
    warnings += export_gaps(cfg, demand["date"]) if daily_rows and not items else []  # the file's days
    if stock is not None:
        last_day = demand["date"].max() if daily_rows else None
        warnings += stale_history(cfg, end=series.end, run_date=run_date, last_day=last_day)
    # what the recommendations read of the history, spilled to a scratch file for the length of the
    # run (read back a chunk of items at a time); the demand table itself is not kept
    # removed at the end, or when dropped; after a killed run, by the next one (`tmpdirs.sweep`)
    sweep("run", tempfile.gettempdir())
    scratch = tempfile.TemporaryDirectory(prefix=owned_prefix("run"))
    spill = Path(scratch.name) / "history.parquet"
    history = spill_columns(demand, HISTORY_COLUMNS, spill) if stock is not None else None
    del demand
    release_memory()  # the reading's temporary copies: the driver holds the series for hours
    spec = engine_spec(cfg, final_fit=only != "metrics")
    if only == "metrics" and spec.backtest_windows == 0:
        raise ConfigError("--only-metrics needs backtest windows (--backtest-windows >= 1)")
    lengths, ids = series.lengths(), list(series.item_ids)
    warnings += too_short_to_backtest(lengths, spec, ids) if only != "forecasts" else []
    warnings += horizon_beyond_history(lengths, spec, ids)
    try:
        # one job at a time per results folder (`nova-ray run` holds it already) and per model
        # store: two would share the stage of the same input and date, the last to publish
        # would win, and each store update would drop the other's entries; the locks before the
        # log: a job turned away (exit 3) leaves no log file
        with (
            job_lock(cfg.paths.output),
            job_lock(cfg.paths.models_dir),
            run_log(cfg.paths.output) as log_path,
        ):
            LOG.info(
                "external factors: %s",
                ", ".join(exog_record.get("features", []))
                if exog_record.get("enabled")
                else exog_record.get("reason", "none"),
            )
            LOG.info(
                "input %s: %d items, %d periods (%s), dataset %s",
                cfg.paths.data,
                len(series),
                len(series.values),
                cfg.forecast.freq,
                dataset,
            )
            whole = not items
            fitted = _fit(
                cfg, series, dataset, spec, progress, use_ray, run_date, only, resume, full_refit, whole,
                history_end, exog_record.get("values_sha256", ""), _scale(exog_record), publish,
            )
            if fitted.factors is not None and fitted.factors[2]:  # what the models saw: the store's scale
                today = fitted.factors[1]
                exog_record.update(mean=today.mean.tolist(), std=today.std.tolist(), scale="model store")
            # the driver lets go of the series (8.8 KB per 3-year daily item): what follows reads
            # the checkpoints, and the model store needs only the facts kept in `fitted`
            del series
            release_memory()  # and what Ray's client and the checkpoint writes left
            summary = _finish(
                cfg,
                fitted,
                history,
                stock,
                warnings,
                progress,
                only,
                publish,
                t0,
                log_path,
                exog_record,
                Path(scratch.name),
                series_start,
            )
    finally:  # Ray stops in the background while the results are published
        wait_for_shutdown()
        timer.close()
        scratch.cleanup()
    summary.wall_seconds = time.perf_counter() - t0
    summary.stage_seconds = timer.seconds
    return summary


@dataclass
class _Fitted:
    """What the fit leaves for the rest of the run: the checkpoints' writer, the model store, the
    fit's result, and per item the facts that the store records (not the series)."""

    writer: ResultWriter
    store: ModelStore
    fit: FitResult
    run_date: date
    facts: pl.DataFrame  # item_id, start, n_obs, fingerprint, blocks
    items: int
    dataset: str
    whole: bool  # the run covers every item of the input (no --items)
    notes: list[str] = field(default_factory=list)  # warnings of the fit stage, for the summary
    # the regressors: the stored record, today's (on the scale the models saw), whether the store's
    factors: tuple[FactorRecord | None, Today, bool] | None = None


def _fit(
    cfg: Config,
    series: SeriesSet,
    dataset: str,
    spec: EngineSpec,
    progress: StageTimer,
    use_ray: bool,
    run_date: date | None,
    only: str | None,
    resume: bool | None,
    full_refit: bool,
    whole: bool,
    history_end: date,
    factors: str = "",
    scale: tuple[np.ndarray, np.ndarray] | None = None,
    publish: bool = True,
) -> _Fitted:
    """Open the run's checkpoints (resuming them with `resume`) and fit what they lack.

    The checkpoints are resumed only by a run of the same input, configuration, date, items,
    external-factor values (`factors`, their hash) and scale, and --full-refit: batches fitted on
    other data, or warm where a full refit was asked for, are not mixed into this run. `scale`:
    the mean and spread the regressors were standardised with (`on_store_scale`). A `train`
    (`publish` False) has checkpoints of its own: it would drop, or use up and remove, those of a
    killed `forecast --full-refit`, which a `--resume` then no longer found."""
    pinned, run_date = run_date is not None, run_date or clock.today()
    model_version = f"{__version__}+{config_hash(cfg, series.exog_names)}"
    store = ModelStore(cfg.paths.models_dir, model_version)
    store_notes = store.quarantine()
    series, records, factor_check = on_store_scale(store, series, scale, whole, full_refit)
    # the regressors' scale too: checkpoints fitted on another (the store's record lost between a
    # run and its resume) would be stored as fits on this one
    on = records[1].key if records is not None else ""
    ids = ",".join(map(str, series.item_ids))

    def stage_key(day: date) -> str:
        return hashlib.sha256(
            f"{dataset}|{model_version}|{day}|{only}|{full_refit}|{factors}|{on}|{ids}"
            f"{'' if publish else '|train'}".encode()
        ).hexdigest()[:16]

    key = stage_key(run_date)
    if resume is True and not pinned and not has_stage(cfg.paths.output, key):
        # a run of the evening before, resumed after midnight: the clock's
        # date would start it afresh; it goes on, with its own run date
        before = run_date - timedelta(days=1)
        if has_stage(cfg.paths.output, stage_key(before)):
            run_date, key = before, stage_key(before)
    meta = {
        "run_id": f"{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}",
        "model_version": model_version,
        "generated_at": utc_now(),
        "dataset_id": dataset,
        # what a reader needs to read the rows: the demand's last day (a later run's check of new
        # days, checks.py), the periods forecast (W: a row is a week's total, dated its Monday)
        "history_end": str(history_end),
        "freq": cfg.forecast.freq,
        "horizon": str(cfg.forecast.horizon),
    }
    writer = ResultWriter(
        cfg.paths.output, meta["run_id"], run_date, meta, stage_key=key, resume=resume is not False,
        items=len(series),
    )
    LOG.info(
        "run %s (%s)%s", writer.run_id, model_version, " resuming from checkpoints" if writer.resumed else ""
    )
    notes = []
    if resume is True and not writer.resumed:  # in the summary's warnings (logged with them)
        notes.append(
            f"--resume: no interrupted run of this input, configuration, external factors, --full-refit "
            f"and date in {cfg.paths.output}; started afresh"
        )
    notes += _damaged(writer) + store_notes
    fit = fit_stage(cfg, series, spec, writer, store, run_date, only, full_refit, progress, use_ray,
                    factor_check)
    return _Fitted(writer, store, fit, run_date, item_facts(series), len(series), dataset, whole, notes,
                   records)


def _damaged(writer: ResultWriter) -> list[str]:
    """A note on the resumed checkpoints that could not be read (dropped by the writer: fitted
    again). The LSTM's network among them, or one of its parts: the LSTM runs again, all its parts."""
    state = writer.stage / "checkpoints" / LSTM_STATE_FILE
    if FINAL_PART in writer.done() and state.exists() and not lstm_readable(state):
        writer.damaged.append(state.name)
    if not writer.damaged:
        return []
    if any(is_part(n) or n == state.name for n in writer.damaged) and FINAL_PART in writer.done():
        writer.discard([FINAL_PART, *(n for n in writer.done() if is_part(n))])
    shown = ", ".join(writer.damaged[:5]) + (" and more" if len(writer.damaged) > 5 else "")
    return [f"{len(writer.damaged)} checkpoint(s) of the interrupted run could not be read ({shown}): "
            "fitted again"]


def _scale(exog_record: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """The mean and spread the run's regressors were standardised with (None without any)."""
    if not exog_record.get("enabled"):
        return None
    return np.asarray(exog_record["mean"], dtype=float), np.asarray(exog_record["std"], dtype=float)


def _finish(
    cfg: Config,
    fitted: _Fitted,
    history: pl.LazyFrame | None,
    stock: pl.DataFrame | None,
    warnings: list[str],
    progress: StageTimer,
    only: str | None,
    publish: bool,
    t0: float,
    log_path: Path,
    exog_record: dict[str, Any] | None = None,
    scratch: Path | None = None,
    series_start: date | None = None,
) -> RunSummary:
    """Ensemble in chunks from the checkpoints, recommend, store the models and publish."""
    writer, store, fit, run_date = fitted.writer, fitted.store, fitted.fit, fitted.run_date
    run_id = writer.run_id
    metrics, items_df, models, ens_fc, ens_bt = _ensemble_stage(
        writer, fitted.items, only, scratch if stock is not None else None, progress
    )
    release_memory()  # the chunks' tables, before the recommendations build theirs
    recs = None
    if stock is not None:
        progress.stage("recommendations")
        recs = recommend(
            ens_fc,
            stock,
            history=history,
            backtests=ens_bt,
            items=items_df,
            policy=Policy.from_config(cfg),
            freq=cfg.forecast.freq,
            today=None if cfg.paths.is_demo_data() else run_date,  # the demo's days are fixed, not late
            series_start=series_start,
        )
        writer.write(RECOMMENDATIONS, recs.to_arrow())
    progress.stage("publish")
    best, ens_err = best_by_class(metrics, items_df)
    summary = RunSummary(
        run_id=run_id,
        run_date=run_date.isoformat(),
        output=str(Path(cfg.paths.output).resolve()),
        items=fitted.items,
        models=sorted(models),
        failures=int(items_df["failed_models"].str.len_chars().gt(0).sum()) if items_df.height else 0,
        fallbacks=items_df.filter(pl.col("fallback"))["item_id"].to_list() if items_df.height else [],
        wall_seconds=time.perf_counter() - t0,
        rows={},
        backend=fit.backend,
        cpu_seconds=fit.cpu,
        workers=sorted(fit.workers),
        best_by_class=best,
        ensemble_error=ens_err,
        resumed_items=fit.resumed,
        warm_items=fit.warm_fitted,  # resumed items are counted once, as resumed
        cold_items=_cold_items(fit.cold),
        lstm=("warm" if fit.lstm_warm else "cold") if fit.lstm_state is not None else "",
        recommendations=_recs_summary(cfg, recs) if recs is not None else {},
        warnings=fitted.notes + warnings,
        log_path=str(log_path),
        exog=exog_record or {},
        demo_data=cfg.paths.is_demo_data(),
        freq=cfg.forecast.freq,
    )
    versions = model_versions(cfg, writer.meta, metrics, sorted(models), fitted.dataset, run_id) | {
        "backend": fit.info,
        "exog": exog_record or {"enabled": False},
    }
    owned = {
        None: None,
        "forecasts": ["forecasts", "ensemble_weights", "items", "recommendations"],
        "metrics": ["metrics", "ensemble_weights", "items", "backtests"],
    }[only]
    stored_factors, today = fitted.factors[:2] if fitted.factors is not None else (None, None)
    saved = save_models(
        store, writer, fitted.facts, fit.warm, run_date, versions, cfg.forecast.cache_max_age_days,
        today.key if today is not None else None,
    )
    # the global network, trained on every item, is stored by runs over every item only: one on a
    # subset (--items) would replace it with a network that knows those items alone; a backfill
    # (the store holds later fits) leaves it, and the regressors' record, as they are
    lstm_key = stored_factors.lstm if stored_factors is not None else None
    later = (newest := store.newest_fit()) is not None and newest > run_date
    later = later or (stored_through := store.lstm_through()) is not None and stored_through > run_date
    if fit.lstm_state is not None and fitted.whole and fit.lstm_cold_date is not None and not later:
        store.save_lstm(fit.lstm_state, fit.lstm_cold_date, run_date, fit.lstm_backtest,
                        cold=not fit.lstm_warm)
        saved = True
        if today is not None and not fit.lstm_warm:  # trained on today's regressors
            lstm_key = today.key
    if saved and today is not None:  # the regressor histories of the fits the store now holds
        keys = store.items().get_column("factors", default=None)  # none in a store from before them
        kept = set(keys.drop_nulls().to_list()) if keys is not None else set()
        store.save_factors(merged(stored_factors, today, kept, lstm_key))
    store.prune_stale(cfg.forecast.cache_max_age_days)
    if not publish:
        writer.abort()
        return summary
    for w in summary.warnings:
        LOG.warning(w)
    summary.stage_seconds = dict(progress.seconds)  # the stages so far; run_forecast adds publish
    LOG.info(
        "summary: %s",
        json.dumps({k: v for k, v in summary.to_dict().items() if k != "warnings"}, default=str),
    )
    record = writer.commit(
        versions,
        summary.to_dict() | {"data_path": location(cfg.paths.data), "log": str(log_path)},
        replace=owned,
    )
    LOG.info("published run %s (%s)", run_id, ", ".join(f"{k} {v}" for k, v in record["row_counts"].items()))
    summary.rows = record["row_counts"]
    return summary  # run_forecast sets the final wall time once Ray has stopped


def _cold_items(cold: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The summary's record of the items fitted cold: per reason the count and the first items."""
    return {why: {"count": len(v), "items": v[:COLD_LISTED]} for why, v in cold_reasons(cold).items()}


def _recs_summary(cfg: Config, recs: pl.DataFrame) -> dict[str, Any]:
    """The recommendations' summary with the stock file and the hash of what they depend on
    besides the forecasts (the daily job recomputes them when that changed)."""
    from .recommend_job import current_inputs

    now = current_inputs(cfg)
    return summarize(recs) | ({"stock": str(now[0]), "inputs": now[1]} if now else {})


def _ensemble_stage(
    writer: ResultWriter, n_items: int, only: str | None, keep_in: Path | None, progress: Progress
) -> tuple[pl.DataFrame, pl.DataFrame, set[str], pl.LazyFrame | None, pl.LazyFrame | None]:
    """Ensemble, metrics and output tables in chunks of items read back from the checkpoints.

    Returns (metrics, items, models, ensemble forecasts, ensemble backtests); the ensemble tables
    only with `keep_in` (for the recommendations), else None. They go to Parquet files in that
    folder chunk by chunk and come back as LazyFrames over them: kept in memory, each chunk's
    part would pin the chunk's buffers, and the driver would grow chunk after chunk."""
    progress.stage("ensemble and metrics", total=n_items)
    all_metrics, all_items, models = [], [], set()
    kept = Spill(keep_in) if keep_in is not None else None
    for stems, chunk in writer.batch_groups(ENSEMBLE_CHUNK):
        fc, bt, weights, items_df, ens_fc = combine_items(
            writer.read_group("forecasts", FORECAST_TABLE, stems, chunk),
            writer.read_group("backtests", BACKTEST_TABLE, stems, chunk),
            writer.read_group("items", ITEMS_TABLE, stems, chunk),
        )
        metrics = evaluate(bt) if bt.height else pl.DataFrame()
        if only != "metrics":
            writer.write("forecasts", fc.to_arrow())
        if metrics.height and only != "forecasts":
            writer.write("metrics", metrics.to_arrow())
        if bt.height and only != "forecasts":  # the ensemble's backtests: residuals for `recommend`
            writer.write("backtests", bt.filter(pl.col("model") == "ensemble").to_arrow())
        writer.write("ensemble_weights", weights.to_arrow())
        writer.write("items", items_df.to_arrow())
        if kept is not None:  # only the columns that the recommendations read
            kept.add("ensemble-forecasts", ens_fc.select(c for c in FORECAST_COLUMNS if c in ens_fc.columns))
            if bt.height:
                kept.add(
                    "ensemble-backtests", bt.filter(pl.col("model") == "ensemble").select(BACKTEST_COLUMNS)
                )
        models |= set((fc if fc.height else bt)["model"].unique().to_list())
        all_metrics.append(metrics)
        all_items.append(items_df)
        del fc, bt, weights, ens_fc
        release_memory()  # the chunk's temporaries: freed memory is reused by the next chunk
        progress.advance(len(chunk))
    metrics = (  # in item order: the summary's means then add up in the same order every run
        pl.concat([m for m in all_metrics if m.height]).sort("item_id", "model", "window")
        if any(m.height for m in all_metrics)
        else pl.DataFrame()
    )
    ens_fc = ens_bt = None
    if kept is not None:  # scanned, not read: the recommendations read them a chunk of items at a time
        ens_fc = kept.scan("ensemble-forecasts")
        if ens_fc is None:
            ens_fc = pl.from_arrow(FORECAST_TABLE.empty_table()).select(FORECAST_COLUMNS).lazy()
        ens_bt = kept.scan("ensemble-backtests")
    return metrics, pl.concat(all_items).sort("item_id"), models, ens_fc, ens_bt


ENSEMBLE_CHUNK = 200  # items per ensemble chunk: bounds the driver's memory (~0.3 MiB per item in it)
