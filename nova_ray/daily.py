"""The daily job: etl (when raw files exist), forecast with recommendations, publish; one at a time.

`run_daily` is idempotent for a date: when the latest published run already is this date's run of
the same data and model version it does nothing (unless `force`). A lock file under the results
folder keeps two jobs from overlapping.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from .config import Config
from .io.lock import job_lock
from .io.results import read_pointer


@dataclass
class DailyReport:
    """What the daily job did, step by step."""

    run_date: str
    steps: list[tuple[str, str]] = field(default_factory=list)
    run_id: str | None = None
    skipped: bool = False
    wall_seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _raw_files(raw: Path) -> bool:
    return raw.is_dir() and any(p.is_file() for p in raw.rglob("*"))


def run_daily(
    cfg: Config,
    run_date: date,
    to: str | None = None,
    endpoint_url: str | None = None,
    keep: int | None = None,
    force: bool = False,
    progress: Any = None,
) -> DailyReport:
    """etl -> forecast (+ recommendations) -> publish, for `run_date`, under the job lock."""
    from .io.demand import dataset_id
    from .pipeline import attach_exog, load_demand, load_series, run_forecast
    from .provenance import config_hash

    t0 = time.perf_counter()
    report = DailyReport(run_date=run_date.isoformat())
    with job_lock(cfg.paths.output):
        raw = Path(cfg.etl.raw)
        if _raw_files(raw):
            from .etl.features import build_features

            res = build_features(raw, cfg.etl.processed)
            report.steps.append(
                ("etl", f"{len(res.feature_columns)} features from {len(res.sources)} files -> {res.path}")
            )
        else:
            report.steps.append(("etl", f"skipped: no raw files in {raw}"))
        pointer = read_pointer(cfg.paths.output)
        from . import __version__

        same = False
        if pointer is not None and pointer.get("run_date") == run_date.isoformat():
            loaded = load_demand(cfg, None)
            series, _ = attach_exog(cfg, load_series(cfg, None, loaded)[0])
            same = pointer.get(
                "model_version"
            ) == f"{__version__}+{config_hash(cfg, series.exog_names)}" and pointer.get(
                "dataset_id"
            ) == dataset_id(loaded.rows)
        if same and not force:
            report.skipped = True
            report.run_id = pointer["run_id"]
            report.steps.append(
                (
                    "forecast",
                    f"skipped: {pointer['run_id']} is already this date's run of "
                    "the same data and settings (--force reruns)",
                )
            )
        else:
            # a run of this date killed earlier (the same data and settings) goes on from its checkpoints
            summary = run_forecast(cfg, progress=progress, run_date=run_date, resume=None)
            report.run_id = summary.run_id
            report.summary = summary.to_dict()
            recs = summary.recommendations
            report.steps.append(
                ("forecast", f"{summary.run_id}: {summary.items} items in {summary.wall_seconds:.0f} s")
            )
            report.steps.append(
                ("recommend", f"{recs.get('rows', 0)} rows" if recs else "skipped: no stock file")
            )
        if to:
            from .io.publish import sync_run

            sync = sync_run(cfg.paths.output, to, run_id=report.run_id, endpoint_url=endpoint_url, keep=keep)
            report.steps.append(
                (
                    "publish",
                    f"{sync.uploaded} files uploaded, {sync.skipped} already there, "
                    f"pointer {'moved' if sync.pointer_moved else 'unchanged'} "
                    f"-> {sync.target}" + "".join(f"; warning: {w}" for w in sync.warnings),
                )
            )
        else:
            report.steps.append(("publish", "skipped: no --to"))
    report.wall_seconds = time.perf_counter() - t0
    return report


def report_json(report: DailyReport) -> str:
    return json.dumps(report.__dict__, default=str, indent=2)
