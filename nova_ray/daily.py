"""The daily job: etl (when raw files exist), forecast with recommendations, publish; one at a time.

`run_daily` is idempotent for a date: when the date's published run is a finished run of the same
data and settings it does nothing (unless `force`), except to make the recommendations again when
the stock snapshot or the inventory settings changed. A backfill (an earlier date) publishes its
run without moving the pointer off a later one. A lock file under the results folder keeps two
jobs from overlapping.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .config import Config, ConfigError
from .io.errors import InputError
from .io.lock import job_lock
from .io.publish import run_records
from .io.results import read_pointer

LOG = logging.getLogger("nova_ray")


class PublishFailed(OSError):
    """The day's run is done and saved in the results folder, but publishing it failed."""

    def __init__(self, target: str, run_id: str, cause: OSError) -> None:
        if cause.errno is None:  # OSError(None, msg) reads "[Errno None] msg" in the run log
            super().__init__(str(cause))
        else:
            super().__init__(cause.errno, cause.strerror or str(cause))  # str(cause) repeats "[Errno n]"
        self.target, self.run_id, self.cause = target, run_id, cause


@dataclass
class DailyReport:
    """What the daily job did, step by step."""

    run_date: str
    steps: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    skipped: bool = False
    wall_seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)
    log_path: str = ""
    warnings: list[str] = field(default_factory=list)  # the job's own (a failed download), not the run's

    def step(self, name: str, what: str) -> None:
        """Record a step's outcome (for stdout) and log it (for the run's log file)."""
        self.steps.append((name, what))
        LOG.info("step %s: %s", name, what)


def _raw_files(raw: Path) -> bool:
    return raw.is_dir() and any(p.is_file() for p in raw.rglob("*"))


def _fetch(cfg: Config, run_date: date, raw: Path, report: DailyReport) -> None:
    """Download the [etl] BCB series and INMET stations into `raw`, each source since 1 January of
    last year when every series (station) of it has a file there already (the years a night can
    change; the older ones stay), else over the five years `fetch_sources` takes. A failed
    download is a warning, not the night's end: what it got stays, and the forecast uses the files
    on disk (their age is warned of)."""
    from .etl import EtlError
    from .etl.fetch import fetch_sources, parse_bcb_series

    notes: list[str] = []
    recent = date(run_date.year - 1, 1, 1)
    try:
        series = [raw / "bcb" / f"{name}.json" for name, _ in parse_bcb_series(cfg.etl.bcb_series)]
        stations = [s.strip().upper() for s in cfg.etl.inmet_stations.split(",") if s.strip()]
        have = {"bcb": all(f.is_file() for f in series),
                "inmet": all(any((raw / "inmet").glob(f"INMET_*_{s}_*")) for s in stations)}
        files = [f for source in ("bcb", "inmet")
                 for f in fetch_sources(raw, cfg.etl, start=recent if have[source] else None, end=run_date,
                                        sources=(source,), notes=notes)]
        report.step("fetch", f"{len(files)} file(s) into {raw}")
    except EtlError as exc:
        notes.append(f"etl --fetch failed, the external factors' files on disk are used: {exc}")
        report.step("fetch", "failed: the files on disk are used (see the warnings)")
    for note in notes:
        LOG.warning("%s", note)
    report.warnings += notes


def run_daily(
    cfg: Config,
    run_date: date,
    to: str | None = None,
    endpoint_url: str | None = None,
    keep: int | None = None,
    force: bool = False,
    keep_local: int | None = None,
    progress: Any = None,
    report: DailyReport | None = None,
    full_refit: bool = False,
    fetch: bool = False,
) -> DailyReport:
    """etl -> forecast (+ recommendations) -> publish, for `run_date`, under the job lock; then
    (`keep_local`) the results folder keeps its `keep_local` newest run dates (`io.retention`).
    `report`: filled as the job goes (the caller can show the steps done when a later one fails).
    `full_refit`: every item fitted cold, not from the model store (with `force`, as `run` passes it).
    `fetch`: download the external factors into the raw folder first (`_fetch`)."""
    from .checks import horizon_problem
    from .io.demand import dataset_id
    from .pipeline import run_forecast
    from .provenance import config_hash
    from .run_inputs import attach_exog, load_demand, load_series
    from .run_log import run_log

    t0 = time.perf_counter()
    report = report or DailyReport(run_date=run_date.isoformat())
    with job_lock(cfg.paths.output), run_log(cfg.paths.output) as log_path:
        report.log_path = str(log_path)  # one log for the whole job: the forecast's lines go into it too
        LOG.info("daily run %s", report.run_date)
        raw = Path(cfg.etl.raw)
        if fetch:
            _fetch(cfg, run_date, raw, report)
        if _raw_files(raw):
            from .etl.features import build_features

            res = build_features(raw, cfg.etl.processed, inmet_stations=cfg.etl.inmet_stations)
            n, files = len(res.feature_columns), len(res.sources)
            report.step("etl", f"{n} features from {files} files -> {res.path}")
            for note in res.warnings:  # what `nova-ray etl` warns of (a station's files months behind)
                LOG.warning("etl: %s", note)
                report.warnings.append(f"etl: {note}")
            continued = res.continued  # 5G counts the forecast may name in its own words
        else:
            continued = {}
            report.step("etl", f"skipped: no raw files in {raw}")
        from . import __version__

        if to:  # a missing bucket or target folder, before the night's forecast is spent on it
            _check_target(to, endpoint_url)
        prior, why = None, ""
        if not force and _records(cfg.paths.output, run_date.isoformat()):  # the date has a run: which?
            loaded = load_demand(cfg, None, until=run_date)
            end = loaded.rows["date"].max()
            if problem := horizon_problem(end, cfg.forecast.horizon, cfg.forecast.freq):
                raise ConfigError(problem)  # as the forecast says it (the factors' table would crash)
            series, factors = attach_exog(cfg, load_series(cfg, None, loaded)[0], run_date)
            version = f"{__version__}+{config_hash(cfg, series.exog_names)}"
            prior, why = published_run(cfg, run_date, version, dataset_id(loaded.rows),
                                       factors.get("values_sha256"))
            del loaded, series
        stale = _stale_recommendations(cfg, prior) if prior is not None else None
        if prior is not None and stale is not None and not _is_latest(cfg, prior):
            prior, why = None, stale  # a backfilled date: rerun it whole
        if prior is not None:
            report.skipped = True
            report.run_id = prior["run_id"]
            report.step(
                "forecast",
                f"skipped: {prior['run_id']} is already this date's run of the same data and settings "
                "(--force reruns)",
            )
            if stale is not None:
                from .recommend_job import run_recommend

                res = run_recommend(cfg)
                report.summary = {"warnings": res.warnings}
                report.step("recommend", f"recomputed ({stale}): {res.table.height} rows")
        else:
            # a run of this date killed earlier (the same data and settings) goes on from its checkpoints
            summary = run_forecast(cfg, progress=progress, run_date=run_date, resume=None, until=run_date,
                                   full_refit=full_refit)
            report.run_id = summary.run_id
            report.summary = summary.to_dict()
            recs = summary.recommendations
            report.step(
                "forecast",
                f"{summary.run_id}: {summary.items} items in {summary.wall_seconds:.0f} s"
                + (f" (rerun: {why})" if why else ""),
            )
            report.step("models", summary.incremental())
            report.step("recommend", f"{recs.get('rows', 0)} rows" if recs else "skipped: no stock file")
        said = _said_again(continued, (report.summary or {}).get("warnings") or [])
        report.warnings = [w for w in report.warnings if w not in said]
        if to:
            from .io.location import PublishError
            from .io.publish import sync_run

            try:
                sync = sync_run(
                    cfg.paths.output, to, run_id=report.run_id, endpoint_url=endpoint_url, keep=keep,
                    backwards=False,  # a backfill leaves the target's pointer on a later run
                )
            except OSError as exc:  # the run is done, not yet published (after the pointer: a warning)
                raise PublishFailed(to, str(report.run_id), exc) from exc
            except PublishError as exc:  # e.g. the bucket went away since the check
                raise PublishError(f"{exc}; run {report.run_id} is saved in {cfg.paths.output}: a rerun "
                                   "publishes it without forecasting again") from None
            report.step(
                "publish",
                f"{sync.uploaded} files uploaded, {sync.skipped} already there, "
                f"pointer {'moved' if sync.pointer_moved else 'unchanged'} "
                f"-> {sync.target}"
                + (f"; deleted runs (--keep {keep}): {', '.join(sync.deleted_runs)}"
                   if sync.deleted_runs else "")
                + (f"; left incomplete run folders: {', '.join(sync.incomplete_runs)}"
                   if sync.incomplete_runs else "")
                + "".join(f"; warning: {w}" for w in sync.warnings),
            )
        else:
            report.step("publish", "skipped: no --to")
        if keep_local:
            from .io.retention import prune_results

            pruned = prune_results(cfg.paths.output, keep_local, pinned={run_date.isoformat()})
            report.step("prune", pruned.describe())
    report.wall_seconds = time.perf_counter() - t0
    return report


def _said_again(continued: dict[str, list[str]], said: list[str]) -> set[str]:
    """The job's lines of the ETL's warnings of 5G counts ending early (-> their columns) that the
    forecast's warnings (`said`) repeat for every column: it continues such a count and names it
    (not without external factors, nor on a night whose run was already done, nor when it failed:
    then the ETL's line stays)."""
    return {f"etl: {note}" for note, cols in continued.items()
            if all(any(w.startswith(f"{c}: the 5G count ends ") for w in said) for c in cols)}


def _check_target(to: str, endpoint_url: str | None) -> None:
    """PublishError for a publish target that is not there or whose pointer is another project's
    (checked again when publishing); a store that cannot be reached now is left to the publish step
    (the run is saved for a rerun)."""
    from .io.location import open_location
    from .io.publish import check_target

    try:
        check_target(open_location(to, endpoint_url))
    except OSError as exc:
        LOG.warning("publish target %s not checked before the run: %s", to, exc)


def _records(output: str | Path, day: str) -> list[dict[str, Any]]:
    """The complete run records of run date `day` under `output`, oldest first."""
    return [rec for _, rec in run_records(Path(output) / "metadata")
            if isinstance(rec, dict) and rec.get("run_date") == day and rec.get("status") == "complete"]


def published_run(
    cfg: Config, run_date: date, version: str, dataset: str, factors: str | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The run of `run_date` that a rerun would repeat: the date's last run, of the same data
    (`dataset`) and settings (`version`), with forecasts, metrics (when backtests are on) and every
    table it lists on disk. Else None and why it is rerun ('' when the date has no run yet): a
    partial run (`--only-forecasts` or `--only-metrics`) or one killed while its tables were being
    swapped in is not a finished day. `factors`: the hash of the external factors' values the run
    would see (`exog` record's values_sha256): new ETL values rerun the day (only their names were
    in the settings' hash)."""
    runs = _records(cfg.paths.output, run_date.isoformat())
    if not runs:
        return None, ""
    rec = runs[-1]
    rid = rec.get("run_id")
    if rec.get("model_version") != version or rec.get("dataset_id") != dataset:
        return None, f"the data or settings changed since {rid}"
    made = ((rec.get("summary") or {}).get("exog") or {}).get("values_sha256")
    if factors and made and made != factors:
        return None, f"the external factors' values changed since {rid}"
    parts = rec.get("partitions") or {}
    wanted = ["forecasts"] + (["metrics"] if cfg.forecast.backtest_windows > 0 else [])
    lacking = [k for k in wanted if k not in parts]
    if lacking:
        return None, f"{rid} has no {' or '.join(lacking)} (a partial run)"
    import pyarrow.parquet as pq

    root = Path(cfg.paths.output)
    try:  # the record is written before the pointer: killed between them, the run is not published
        pointer = read_pointer(root)
    except InputError:  # a damaged pointer: the rerun writes a new one
        pointer = None
    later = pointer is not None and str(pointer.get("run_date")) > run_date.isoformat()  # a backfill's
    if not later and (pointer is None or pointer.get("run_id") != rid):
        return None, f"{rid} was killed before its pointer was written (metadata/last_updated.json)"
    for kind, rel in sorted(parts.items()):
        folder = root / rel
        files = sorted(folder.rglob("*.parquet")) if folder.is_dir() else []
        if not files:
            return None, f"{rid}'s {kind} are missing from {folder} (killed while publishing?)"
        for f in files:  # the footers only: a damaged file is a day to redo, not a finished one
            try:
                meta = pq.read_metadata(f).metadata or {}
            except (OSError, ValueError):
                return None, f"{f} of {rid} is unreadable (a damaged file)"
            if meta.get(b"run_id", rid.encode()) != rid.encode():  # a rerun of the date killed mid-swap
                return None, f"{f} holds run {meta[b'run_id'].decode()}, not {rid} (killed while publishing?)"
    return rec, ""


def _stale_recommendations(cfg: Config, rec: dict[str, Any]) -> str | None:
    """Why the recommendations of run record `rec` must be made again (a stock snapshot that is
    new or changed, other `[recommend]` settings), or None when they are current."""
    from .recommend_job import current_inputs

    now = current_inputs(cfg)
    if now is None:
        return None
    made = ((rec.get("summary") or {}).get("recommendations") or {}).get("inputs")
    if "recommendations" not in (rec.get("partitions") or {}) or made is None:
        return f"no recommendations from {now[0]} yet"
    if made != now[1]:
        return f"{now[0]} or the [recommend] settings changed"
    return None


def _is_latest(cfg: Config, rec: dict[str, Any]) -> bool:
    ptr = read_pointer(cfg.paths.output)
    return ptr is not None and ptr.get("run_id") == rec.get("run_id")


def report_json(report: DailyReport) -> str:
    return json.dumps(report.__dict__, default=str, indent=2)
