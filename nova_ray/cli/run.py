"""`nova-ray run`: the whole daily job for one date, under a lock."""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from .. import clock
from ..config import ConfigError
from ..io.errors import InputError
from . import app
from .common import (
    BarProgress,
    config_or_exit,
    console,
    fail,
    folder_or_exit,
    out,
    ray_failure,
    ray_unreachable,
    sync_failure,
    warn,
    write_failure,
)
from .forecast import prepare_run

if TYPE_CHECKING:
    from ..daily import DailyReport

RUN_DATE: date | None = None  # the date of the job this process runs (the interrupt hint's)
SAVED_RUN: str | None = None  # set when the job is interrupted after its run was saved locally


@app.command()
def run(
    run_date: str = typer.Option(None, "--date",
                                 help="Run date YYYY-MM-DD (default: today, the local date: TZ sets it)."),
    data: str = typer.Option(None, "--data", help="Demand history (default: paths.data)."),
    to: str = typer.Option(
        None,
        "--to",
        help="Publish to this folder or s3://bucket/prefix (default: publish.to; empty: no publish).",
    ),
    endpoint_url: str = typer.Option(None, "--endpoint-url", help="S3-compatible endpoint (MinIO)."),
    keep: int = typer.Option(None, "--keep", min=0, help="Published runs to keep (0: all)."),
    keep_local: int = typer.Option(
        None, "--keep-local", min=0, help="Run dates kept in the results folder (0: all)."
    ),
    force: bool = typer.Option(False, "--force", help="Rerun even if this date already has a finished "
                               "run of the same data and settings."),
    full_refit: bool = typer.Option(
        False, "--full-refit", help="Fit every item cold (search orders again), not from the model store; "
        "reruns the date."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster to join (default: local Ray)."),
    num_cpus: int = typer.Option(None, "--num-cpus", min=1, help="CPUs for local Ray (default: all)."),
    config: str = typer.Option(None, "--config", help="Config TOML.", envvar="NOVA_RAY_CONFIG"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    fetch: bool = typer.Option(
        False, "--fetch", help="Download the external factors first (\\[etl] BCB series and INMET stations; "
        "a failed download is a warning: the files on disk are used)."
    ),
) -> None:
    """The daily job: etl (when raw files exist), forecast with recommendations, publish. Idempotent
    for a date; two jobs never overlap (exit 3 while another one runs)."""
    from ..daily import DailyReport, PublishFailed, run_daily
    from ..etl import EtlError
    from ..io.location import PublishError
    from ..io.lock import LockedError

    cfg = config_or_exit(
        config,
        {
            "data": data,
            "to": to,
            "endpoint_url": endpoint_url,
            "keep": keep,
            "keep_local": keep_local,
            "address": address,
            "num_cpus": num_cpus,
        },
    )
    today = clock.today()
    try:
        day = date.fromisoformat(run_date) if run_date else today
    except ValueError:
        fail(f"option --date: expected YYYY-MM-DD, got {run_date!r}")
    if day > today + timedelta(days=1):  # a mistyped year would stay "latest" and keep models warm
        fail(f"option --date: {day} is after tomorrow ({today + timedelta(days=1)}): a mistyped year?")
    global RUN_DATE
    RUN_DATE = day  # an interrupt's hint names it: a rerun after midnight would run another date
    folder_or_exit(cfg.publish.to, f"--to {cfg.publish.to}" if to else f"publish.to {cfg.publish.to}",
                   remote_ok=True)  # a refused publish target: the publish step says so
    prepare_run(cfg, data)
    report = DailyReport(run_date=day.isoformat())  # filled as the job goes: shown when a step fails

    def failed(message: str, code: int = 2) -> None:
        """The warnings so far, the steps done and the log, then the error line (the cron log shows
        how far it got and what it warned of)."""
        warn(report.warnings + (report.summary.get("warnings") or []), 20)
        _steps(report)
        fail(message, code=code)

    try:
        with BarProgress(quiet) as bars:
            report = run_daily(
                cfg,
                day,
                to=cfg.publish.to or None,
                endpoint_url=cfg.publish.endpoint_url or None,
                keep=cfg.publish.keep or None,
                keep_local=cfg.publish.keep_local or None,
                force=force or full_refit,
                full_refit=full_refit,
                progress=bars,
                report=report,
                fetch=fetch,
            )
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the steps done and the log, then the CLI's line
        global SAVED_RUN
        SAVED_RUN = report.run_id  # the run is in the results folder: only its publish was cut short
        warn(report.warnings + (report.summary.get("warnings") or []), 20)
        _steps(report)
        raise
    except LockedError as exc:
        fail(str(exc), code=3)
    except (InputError, ConfigError, EtlError, PublishError) as exc:  # bad input: as `etl` and `sync`
        failed(str(exc), code=getattr(exc, "exit_code", 2))  # 1: an input's store could not be reached
    except ValueError as exc:  # other one-line errors
        failed(str(exc), code=1)
    except PublishFailed as exc:
        failed(f"{sync_failure(exc.target, exc.cause)}; run {exc.run_id} is saved in {cfg.paths.output}: "
               "a rerun publishes it without forecasting again", code=1)
    except ConnectionError as exc:
        failed(ray_unreachable(cfg, exc), code=1)
    except OSError as exc:  # the network or a disk: one line, the output as it was
        failed(write_failure(cfg, exc), code=1)
    except Exception as exc:
        if (line := ray_failure(exc, "rerun `nova-ray run` for that date to go on from them")) is None:
            raise
        failed(line, code=1)
    warn(report.warnings + (report.summary.get("warnings") or []), 20)  # the cron log shows them too
    _steps(report)
    console.print(f"daily run {report.run_date} done in {report.wall_seconds:.0f} s (run {report.run_id})",
                  soft_wrap=True)


def _steps(report: DailyReport) -> None:
    """The job's steps, one line each (never wrapped: cron logs are grepped), and its log file."""
    for step, what in report.steps:
        out.print(f"[bold]{step:<10}[/] {escape(what)}", highlight=False, soft_wrap=True)
    if report.log_path:  # the whole job's: etl, forecast, publish and prune (a skipped run's too)
        out.print(f"{'log':<10} {report.log_path}", highlight=False, soft_wrap=True, markup=False)
