"""`nova-ray etl`: raw external-factor files -> data/processed/features.parquet + data dictionary."""

from __future__ import annotations

from datetime import date

import typer
from rich.table import Table

from . import app
from .common import config_or_exit, console, fail, folder_or_exit, out, warn


def _day(text: str | None, option: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        fail(f"option {option}: expected a date YYYY-MM-DD, got {text!r}")
    raise AssertionError  # unreachable


@app.command("etl")
def etl(
    raw: str = typer.Option(
        None, "--raw", help="Raw folder (inmet/, bcb/, anatel/, regressors/). Default: etl.raw (data/raw)."
    ),
    out_dir: str = typer.Option(
        None, "--out", help="Output folder for features.parquet. Default: etl.processed (data/processed)."
    ),
    start: str = typer.Option(
        None, "--start", help="First day of the table, YYYY-MM-DD (default: earliest source date)."
    ),
    end: str = typer.Option(
        None, "--end", help="Last day of the table, YYYY-MM-DD (default: latest source date)."
    ),
    fetch: bool = typer.Option(
        False,
        "--fetch",
        help="Download the BCB series and INMET stations of the \\[etl] config into the raw folder first.",
    ),
    config: str = typer.Option(
        None, "--config", help="Config TOML (default configs/default.toml).", envvar="NOVA_RAY_CONFIG"
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only the table's path, the warnings and errors (as the other commands)."
    ),
) -> None:
    """Validate the raw external-factor files and write the daily feature table and its dictionary."""
    from ..etl import EtlError, build_features, fetch_sources

    cfg = config_or_exit(config, {"raw": raw, "processed": out_dir})
    processed = cfg.etl.processed
    folder_or_exit(processed, f"--out {processed}" if out_dir else f"etl.processed {processed}", write=True)
    first, last = _day(start, "--start"), _day(end, "--end")
    if first and last and last < first:
        fail(f"--end {last} is before --start {first}")
    try:
        if fetch:
            if not quiet:
                console.print(f"downloading external factors into {cfg.etl.raw}")
            fetched: list[str] = []
            files = fetch_sources(cfg.etl.raw, cfg.etl, start=first, end=last, notes=fetched)
            if not quiet:
                console.print(f"downloaded {len(files)} file(s)")
            warn(fetched)
        res = build_features(cfg.etl.raw, cfg.etl.processed, first, last, cfg.etl.inmet_stations)
    except EtlError as exc:
        fail(str(exc))
    if quiet:  # a cron log: where the table went, and what to look at
        out.print(f"etl: {res.path}", soft_wrap=True, highlight=False, markup=False)
        warn(res.warnings)
        return
    table = Table(title="nova-ray etl", show_header=False)
    table.add_row("days", f"{res.rows} ({res.start.date()} .. {res.end.date()})")
    table.add_row("sources", str(len(res.sources)))
    table.add_row("features", ", ".join(res.feature_columns))
    table.add_row("table", str(res.path))
    table.add_row("dictionary", str(res.dictionary_path))
    table.add_row("climate per station", str(res.stations_path))
    out.print(table)
    warn(res.warnings)
