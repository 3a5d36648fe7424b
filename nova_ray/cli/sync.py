"""`nova-ray sync`: publish a finished run to a shared folder or an S3-compatible store."""

from __future__ import annotations

import typer

from . import app
from .common import config_or_exit, console, fail, folder_or_exit, local_or_exit, out, sync_failure, warn


@app.command("sync")
def sync(
    to: str = typer.Option(..., "--to", help="Target: a folder or s3://bucket/prefix (MinIO: add "
                           "--endpoint-url)."),
    results: str = typer.Option(None, "--results", help="Results folder to publish from (default "
                                "data/ml_results, i.e. paths.output)."),
    run: str = typer.Option(None, "--run", help="Run id to publish (default: the run the results pointer "
                            "names)."),
    endpoint_url: str = typer.Option(None, "--endpoint-url",
                                     help="S3-compatible endpoint, e.g. http://minio:9000 (default: "
                                     "\\[publish] endpoint_url, else AWS_ENDPOINT_URL_S3, else "
                                     "AWS_ENDPOINT_URL; credentials: the standard AWS_* variables)."),
    keep: int = typer.Option(None, "--keep", min=0, help="After the pointer moved, keep N runs on the "
                             "target: the synced one and the pointer's, then the newest others (0: all; "
                             "default \\[publish] keep)."),
    config: str = typer.Option(None, "--config", help="Config TOML (default configs/default.toml).",
                               envvar="NOVA_RAY_CONFIG"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    """Copy a run's files to runs/<run_id>/, verify checksums, write the manifest, then the pointer."""
    from ..io.location import PublishError
    from ..io.lock import LockedError, job_lock
    from ..io.publish import SourceFile, sync_run

    cfg = config_or_exit(config, {})  # a roll-back by hand goes where `run` publishes (its MinIO)
    source = results or cfg.paths.output
    endpoint_url = endpoint_url or cfg.publish.endpoint_url or None
    keep = (cfg.publish.keep if keep is None else keep) or None
    local_or_exit(source, f"--results {source}")
    folder_or_exit(to, f"--to {to}", remote_ok=True)
    done = 0

    def progress(f: SourceFile, status: str) -> None:
        nonlocal done
        done += 1
        if not quiet:
            line = f"  [{done}] {status:<8} {f.relpath} ({f.rows} rows)"
            console.print(line, highlight=False, soft_wrap=True)  # one line each, also in a cron log

    try:
        with job_lock(source, create=False):  # not while a job writes or publishes from these results
            report = sync_run(source, to, run_id=run, endpoint_url=endpoint_url, keep=keep, on_file=progress)
    except LockedError as exc:
        fail(str(exc), code=3)
    except PublishError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(sync_failure(to, exc), code=1)
    warn(report.warnings)
    if quiet:
        return
    moved = "pointer moved" if report.pointer_moved else "pointer already current"
    out.print(f"published run {report.run_id} to {report.target}: {report.uploaded} uploaded, "
              f"{report.skipped} already present ({report.bytes_uploaded} bytes); {moved} (previous: "
              f"{report.previous_run_id or 'none'})", highlight=False, soft_wrap=True)
    if report.deleted_runs:
        out.print(f"deleted runs (--keep {keep}): {', '.join(report.deleted_runs)}", highlight=False,
                  soft_wrap=True)
    if report.incomplete_runs:
        out.print(f"left incomplete run folders (interrupted syncs): {', '.join(report.incomplete_runs)}",
                  highlight=False, soft_wrap=True)
