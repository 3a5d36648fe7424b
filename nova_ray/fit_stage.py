"""The fit stage: fit every item (statistical batches on Ray or in this process, the global LSTM),
checkpoint each batch as it arrives, and reuse stored models for items whose history only grew."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .classify import classify
from .config import Config
from .engine import BatchResult, EngineSpec, forecast_batch
from .factor_history import FactorCheck
from .global_lstm import FINAL_PART, StoredLstm, is_part, lstm_items, lstm_lookback, lstm_parts
from .io.model_store import COLD_FORCED, COLD_LSTM_NOW, ModelStore, lstm_through, read_lstm, write_lstm
from .io.results import BATCH_PREFIX, CACHE, ResultWriter
from .series import SeriesSet

LOG = logging.getLogger("nova_ray")
LSTM_STATE_FILE = "lstm-state.npz"  # the LSTM's new state, beside its checkpoints
LSTM_BACKTEST_STATE_FILE = "lstm-backtest-state.npz"  # its cold training's backtest network


class Progress(Protocol):
    """Where the pipeline reports progress (the CLI draws bars; tests pass nothing)."""

    def stage(self, name: str, total: int | None = None) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class Silent:
    """Progress that reports nothing."""

    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


class StageTimer:
    """Progress that times each stage (seconds from its start to the next stage's) and hands every
    call on to another Progress."""

    def __init__(self, inner: Progress):
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def stage(self, name: str, total: int | None = None) -> None:
        self.close()
        self._name, self._t0 = name, time.perf_counter()
        self.inner.stage(name, total)

    def advance(self, n: int = 1) -> None:
        self.inner.advance(n)

    def close(self) -> None:
        """End the current stage's clock."""
        if self._name is not None:
            elapsed = time.perf_counter() - self._t0
            self.seconds[self._name] = round(self.seconds.get(self._name, 0.0) + elapsed, 3)
            self._name = None


def run_engine(
    series: SeriesSet,
    spec: EngineSpec,
    cfg: Config,
    progress: Progress,
    use_ray: bool = True,
    on_result: Callable[[BatchResult], None] | None = None,
    indices: list[int] | None = None,
    lstm_idx: list[int] | None = None,
    warm: dict[str, dict] | None = None,
    costs: dict[str, float] | None = None,
    lstm_init: Any = None,
) -> tuple[list[BatchResult], str, dict[str, Any]]:
    """Fit `indices` (default all) and the LSTM items, on Ray (default) or in this process.

    Items in `warm` reuse their cached model choices and skip the backtest (incremental run);
    `lstm_init`, a stored LstmState, makes the LSTM reuse it (or fine-tune it: `warm_epochs`)
    instead of training cold.
    With `on_result` each batch result is handed over as it arrives and not kept (streaming);
    otherwise the results are returned. Also returns a backend description and info.
    """
    indices = list(range(len(series))) if indices is None else indices
    lstm_idx = lstm_items(series, spec) if lstm_idx is None else lstm_idx
    warm = warm or {}
    cold_idx = [i for i in indices if str(series.item_ids[i]) not in warm]
    warm_idx = [i for i in indices if str(series.item_ids[i]) in warm]
    warm_spec = replace(spec, backtest_windows=0)
    results: list[BatchResult] = []
    sink = on_result or results.append
    total = len(indices) + len(lstm_idx)
    if not use_ray:
        progress.stage("fit and backtest", total=total)
        for group, sp in ((cold_idx, spec), (warm_idx, warm_spec)):
            for i in group:
                sink(forecast_batch(series, [i], sp, warm or None))
                progress.advance(1)
        if lstm_idx:
            for part in lstm_parts(series, lstm_idx, spec, threads=1, init=lstm_init):
                sink(part)
                progress.advance(len(lstm_idx) if part.name == FINAL_PART else 0)
        return results, "local (no Ray)", {}
    from .distributed import RayBackend, make_batches

    progress.stage("start Ray")
    with RayBackend(cfg.ray.address or None, cfg.ray.num_cpus or None) as backend:
        progress.stage("fit and backtest", total=total)
        info = backend.info
        workers = max(1, int(info.cpus))
        jobs = []
        for group, sp in ((cold_idx, spec), (warm_idx, warm_spec)):
            if group:  # batches of series indices (a subset would copy the series for the run)
                cold = sp is spec  # stored costs include the backtest and the search; warm items do neither
                batches = make_batches(
                    series, sp, workers, cfg.ray.batch_seconds, costs if cold else None, group, search=cold
                )
                jobs.append((sp, batches, warm or None))
        for result, n in backend.run(series, jobs, (spec, lstm_idx, lstm_init),
                                     task_timeout=cfg.ray.task_timeout_seconds):
            sink(result)
            progress.advance(n)
        desc = f"ray {info.address} ({info.nodes} node(s), {info.cpus:g} CPU, {info.gpus:g} GPU)"
        n_batches = sum(len(j[1]) for j in jobs)
        return (
            results,
            desc,
            {
                "batches": n_batches,
                "cpus": info.cpus,
                "gpus": info.gpus,
                "lstm_device": backend.lstm_device,
                "nodes": info.nodes,
                "warm_items": len(warm_idx),
            },
        )


@dataclass
class FitResult:
    """What the fit stage hands on: warm items, the LSTM's stored and new state, CPU and workers."""

    warm: dict[str, dict]
    lstm_stored: tuple[Any, date] | None
    resumed: int
    cold: dict[str, str] = field(default_factory=dict)  # item -> why it was not warm (model_store.COLD_*)
    lstm_state: Any = None
    lstm_cold_date: date | None = None  # the date of the new state's (last) cold training
    lstm_warm: bool = False  # the new state grew from the stored network
    lstm_backtest: tuple[Any, date] | None = None  # a cold training's backtest network, last day it saw
    cpu: float = 0.0
    workers: set[str] = field(default_factory=set)
    backend: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    warm_fitted: int = 0  # warm items fitted by this attempt (not resumed from checkpoints)


COLD_LISTED = 20  # item codes per reason in the log line of the items fitted cold
WARM_SET = "warm"  # the cache checkpoint's table of the run's warm and cold items


def warm_set_table(warm: dict[str, dict], cold: dict[str, str]) -> pa.Table:
    """The warm items with their stored choices (JSON) and the cold ones with why (`cold`)."""
    items = [*warm, *cold]
    return pa.table({
        "item_id": pa.array(items, pa.string()),
        "params": pa.array([json.dumps(warm[i]) for i in warm] + [None] * len(cold), pa.string()),
        "cold": pa.array([None] * len(warm) + [cold[i] for i in cold], pa.string()),
    })


def read_warm_set(writer: ResultWriter) -> tuple[dict[str, dict], dict[str, str]] | None:
    """The warm and cold items the run's checkpoints were fitted by (None: no cache checkpoint yet,
    or one written without its warm set)."""
    path = writer.stage / "checkpoints" / WARM_SET / f"{CACHE}.parquet"
    if CACHE not in writer.done() or not path.exists():
        return None
    rows = pq.read_table(path).to_pylist()
    warm = {r["item_id"]: json.loads(r["params"]) for r in rows if r["params"] is not None}
    return warm, {r["item_id"]: r["cold"] for r in rows if r["params"] is None}


def cold_reasons(cold: dict[str, str]) -> dict[str, list[str]]:
    """{reason: the items fitted cold for it}, most items first."""
    out: dict[str, list[str]] = {}
    for item, why in cold.items():
        out.setdefault(why, []).append(item)
    return dict(sorted(out.items(), key=lambda kv: -len(kv[1])))


def _stored_lstm(store: ModelStore, run_date: date, max_age_days: int, factors: FactorCheck | None,
                 cold: list[str]) -> tuple[Any, date] | None:
    """The stored network to go on with and the date of its cold training, or None (train it
    cold): none stored, too old, or trained on regressors that no longer mean the same. With LSTM
    items fitted cold (`cold`: new, changed, due for their refit) it comes as a `StoredLstm` with
    the network of its cold training's backtest, which scores their windows; without that
    network (a store from before it, a training without a backtest) it is trained cold."""
    stored = store.load_lstm(run_date, max_age_days)
    if stored is None or (factors is not None and factors.lstm()):
        return None
    if not cold:
        return stored
    bt = store.load_lstm_backtest(stored[1])
    if bt is None:
        return None
    return StoredLstm(stored[0], bt[0], np.datetime64(bt[1], "D"), frozenset(cold)), stored[1]


def fit_stage(
    cfg: Config,
    series: SeriesSet,
    spec: EngineSpec,
    writer: ResultWriter,
    store: ModelStore,
    run_date: date,
    only: str | None,
    full_refit: bool,
    progress: Progress,
    use_ray: bool,
    factors: FactorCheck | None = None,
) -> FitResult:
    """Fit what is not checkpointed yet (warm items from the store), checkpointing each batch.
    `factors`: which stored fits (entries, the LSTM) are stale for their external factors."""
    done = writer.done_items()
    todo = [i for i in range(len(series)) if str(series.item_ids[i]) not in done]
    lstm_idx = [] if "lstm" in writer.done() else lstm_items(series, spec)
    warm: dict[str, dict] = {}
    cold: dict[str, str] = {}
    lstm_stored = None  # (state, date of its cold training) when the LSTM runs warm
    if full_refit:
        cold = dict.fromkeys((str(x) for x in series.item_ids), COLD_FORCED)
    elif only != "metrics":
        ids = [str(x) for x in series.item_ids]
        # resumed: the warm set of the run's first attempt, whose checkpoints hold its batches and
        # the warm items' stored backtests; the store may have changed since (a `train`, another
        # age limit), and a set looked up again would publish a warm item without backtests, or
        # store an item fitted warm as a fresh cold fit
        first = read_warm_set(writer)
        warm, cold = first if first is not None else store.lookup(
            ids,
            series.starts,
            [series.values_of(i) for i in range(len(series))],
            run_date,
            cfg.forecast.cache_max_age_days,
            series.freq,
            classes=[classify(series.values_of(i)) for i in range(len(series))],
            factors=factors.why_cold if factors is not None else None,
        )
        if first is None and lstm_idx:  # an item that grew long enough for the LSTM since its fit has
            # no LSTM backtests stored: warm, its LSTM forecast would get no weight until its refit
            need = lstm_lookback(spec) + spec.horizon
            for item in store.shorter_than([ids[i] for i in lstm_idx if ids[i] in warm], need):
                del warm[item]
                cold[item] = COLD_LSTM_NOW
        if lstm_idx:
            cold_lstm = [ids[i] for i in lstm_idx if ids[i] not in warm]
            lstm_stored = _stored_lstm(store, run_date, cfg.forecast.cache_max_age_days, factors, cold_lstm)
        if CACHE not in writer.done():
            warm_bt = store.backtests(list(warm))  # streamed, not loaded
            tables: dict[str, Any] = {WARM_SET: warm_set_table(warm, cold)}
            writer.checkpoint(CACHE, tables | ({} if warm_bt is None else {"backtests": warm_bt}))
    costs = store.costs()
    cold = {item: why for item, why in cold.items() if item not in done}  # not refitted: resumed
    fit = FitResult(warm=warm, lstm_stored=lstm_stored, resumed=len(done), cold=cold,
                    warm_fitted=sum(1 for item in warm if item not in done))
    for why, items in cold_reasons(cold).items():
        LOG.info("fitted cold, %s: %d items: %s", why, len(items), ", ".join(items[:COLD_LISTED])
                 + (f" and {len(items) - COLD_LISTED} more" if len(items) > COLD_LISTED else ""))
    state_file = writer.stage / "checkpoints" / LSTM_STATE_FILE
    bt_file = state_file.with_name(LSTM_BACKTEST_STATE_FILE)
    if "lstm" in writer.done() and state_file.exists():  # resumed after the LSTM was done
        fit.lstm_state, fit.lstm_cold_date, fit.lstm_warm = read_lstm(state_file)
        if bt_file.exists():
            bt_state, bt_cold, _ = read_lstm(bt_file)
            fit.lstm_backtest = (bt_state, lstm_through(bt_file)) if bt_cold == fit.lstm_cold_date else None
    lstm_done: set[str] = set()  # the items of the LSTM's parts so far, for its log line
    part_workers: dict[str, str] = {}  # LSTM part -> the worker that produced its last copy

    def checkpoint(result: BatchResult) -> None:
        name = result.name or f"{BATCH_PREFIX}{uuid.uuid4().hex[:12]}"
        if result.state is not None and result.state.weights:
            # copied out of Ray's object: the views would keep the object mapped in the driver
            # until the state is stored at the end
            fit.lstm_state, fit.lstm_warm = result.state.owned(), result.warm
            fit.lstm_cold_date = lstm_stored[1] if result.warm and lstm_stored else run_date
            fit.lstm_backtest = None
            if result.backtest_state is not None and result.backtest_state.weights:
                fit.lstm_backtest = result.backtest_state.owned(), result.backtest_to
                write_lstm(bt_file, fit.lstm_backtest[0], fit.lstm_cold_date, through=result.backtest_to)
            else:
                bt_file.unlink(missing_ok=True)
            # kept with the checkpoints (before the LSTM's is marked done): a resumed run stores it
            write_lstm(state_file, fit.lstm_state, fit.lstm_cold_date, fit.lstm_warm)
        if warm and result.backtests.num_rows:  # warm items keep their stored windows (all models')
            keep = pc.invert(pc.is_in(result.backtests["item_id"], pa.array(list(warm))))
            result.backtests = result.backtests.filter(keep)
        if name == FINAL_PART:  # parts of an earlier attempt that this one did not produce again
            writer.discard({n for n in writer.done() if is_part(n) and n not in result.parts})
        writer.checkpoint(
            name, {"forecasts": result.forecasts, "backtests": result.backtests, "items": result.items}
        )
        fit.cpu += result.cpu_seconds
        if is_part(name):  # its worker counts once its run's last part lists it (not a dead attempt's)
            part_workers[name] = result.worker
        elif result.worker:
            fit.workers.add(result.worker)
        if name == FINAL_PART:
            fit.workers.update(w for n, w in part_workers.items() if w and n in result.parts)
        if result.name and result.name != FINAL_PART:
            for table in (result.forecasts, result.backtests):
                lstm_done.update(pc.unique(table["item_id"]).to_pylist())
            LOG.debug("LSTM part %s checkpointed", name)
            return
        LOG.log(
            logging.INFO if name == FINAL_PART else logging.DEBUG,
            "batch %s: %d items, %.1f s (%.1f s CPU) on %s",
            name,
            len(lstm_done) if name == FINAL_PART else result.items.num_rows,
            result.wall_seconds,
            result.cpu_seconds,
            result.worker or "this process",
        )
        for row in result.items.select(["item_id", "notes", "failed_models", "fallback"]).to_pylist():
            if row["notes"]:  # a model that failed is a warning; the rest (warm, capped, regressors) is
                # routine, one line per item a night: at WARNING a log's warnings were mostly these
                bad = row["fallback"] or row["failed_models"]
                LOG.log(logging.WARNING if bad else logging.INFO, "%s: %s", row["item_id"], row["notes"])

    if todo or lstm_idx:
        _, fit.backend, fit.info = run_engine(
            series,
            spec,
            cfg,
            progress,
            use_ray,
            checkpoint,
            todo,
            lstm_idx,
            warm=warm,
            costs=costs,
            lstm_init=lstm_stored[0] if lstm_stored else None,
        )
    else:
        fit.backend = "resumed (all batches were checkpointed)"
    LOG.info(
        "fitted on %s: %d warm items, %d resumed, LSTM %s",
        fit.backend,
        len(warm),
        len(done),
        "not run" if fit.lstm_state is None else "reused from the store" if fit.lstm_warm else "trained cold",
    )
    return fit
