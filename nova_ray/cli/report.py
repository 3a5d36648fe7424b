"""`nova-ray report`: one self-contained HTML report of a run (charts embedded, opens offline)."""

from __future__ import annotations

import typer

from . import app
from .common import config_or_exit, console, fail, local_or_exit, warn


@app.command("report")
def report(
    results: str = typer.Option(
        None, "--results", help="Results folder (default data/ml_results, i.e. paths.output)."
    ),
    run: str = typer.Option(
        None,
        "--run",
        help="Run id to report (default: the latest run, as metadata/last_updated.json names it).",
    ),
    out: str = typer.Option("report.html", "--out", help="HTML file to write."),
    items: str = typer.Option(
        None,
        "--items",
        help="Comma-separated items to chart (default: critical and "
        "high urgency items, and the 3 worst and 3 best by ensemble MASE).",
    ),
    data: str = typer.Option(
        None,
        "--data",
        help="Demand history for the charts (default: the run's data file when recorded, else paths.data).",
    ),
    config: str = typer.Option(
        None, "--config", help="Config TOML (default configs/default.toml).", envvar="NOVA_RAY_CONFIG"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors."),
) -> None:
    """Write an HTML report: run overview, item charts, model leaderboard, weights, recommendations."""
    from ..report import ReportError, load_run, render_report, write_report

    cfg = config_or_exit(config, {})
    source = results or cfg.paths.output
    local_or_exit(source, f"--results {source}")
    local_or_exit(out, f"--out {out}")
    wanted = [s.strip() for s in items.split(",") if s.strip()] if items else None
    try:
        tables = load_run(source, run, data=data, default_data=cfg.paths.data, columns=cfg.paths.columns)
        html_text = render_report(tables, wanted)
    except ReportError as exc:
        fail(str(exc))
    try:
        path = write_report(html_text, out)
    except OSError as exc:
        fail(f"--out {out}: cannot write: {exc.strerror or exc}")
    warn(tables.warnings)  # also with --quiet, which silences progress only (a history not shown)
    if not quiet:
        console.print(f"wrote {path} (run {tables.run_id}, {len(html_text) / 1e6:.1f} MB)", highlight=False)
