"""`nova-ray demo-data`: write a deterministic demo data set."""

from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import console, fail, folder_or_exit


@app.command("demo-data")
def demo_data(
    out: Path = typer.Option(Path("data/demo"), "--out", help="Folder to write the demo files into."),
    items: int = typer.Option(200, "--items", min=1, help="Number of stock items."),
    days: int = typer.Option(1095, "--days", min=30, help="Days of daily history."),
    seed: int = typer.Option(7, "--seed", help="Random seed; the same seed gives the same files."),
    start: str = typer.Option("2023-01-01", "--start", help="First day of history (YYYY-MM-DD)."),
) -> None:
    """Write demand, stock, item truth and external-factor files (real public formats) for a demo."""
    from ..demo import generate_demo

    folder_or_exit(out, f"--out {out}", write=True)
    try:
        paths = generate_demo(out, items=items, days=days, seed=seed, start=start)
    except ValueError as exc:
        fail(str(exc))
    console.print(f"wrote demo data for {items} items x {days} days to {out} ({len(paths)} files/folders)")
