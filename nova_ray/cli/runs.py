"""`nova-ray runs`: the past runs of a results folder, newest first, from metadata/runs/*.json."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from . import app
from .common import config_or_exit, fail, folder_or_exit, out, print_table, setting_label

if TYPE_CHECKING:
    from ..io.results import Interrupted


def read_runs(root: Path) -> list[dict[str, Any]]:
    """Run records of a results folder, newest first; an unreadable record becomes a row saying so."""
    from ..io.publish import run_records

    rows: list[dict[str, Any]] = []
    for p, rec in reversed(run_records(root / "metadata")):
        if not isinstance(rec, dict):
            rec = {"run_id": p.stem, "status": f"unreadable: {str(rec).splitlines()[0][:60]}"}
        rows.append(rec | {"_path": p})
    return rows


def _partition_owner(folder: Path) -> str | None:
    """The run id recorded in a partition folder's first file, None when it records none,
    "missing" when the folder has no file or it cannot be read."""
    import pyarrow.parquet as pq

    first = next(iter(sorted(folder.rglob("part-*.parquet"))), None) if folder.is_dir() else None
    if first is None:
        return "missing"
    try:
        owner = (pq.read_schema(first).metadata or {}).get(b"run_id")
    except (OSError, ValueError):
        return "missing"
    return owner.decode() if owner else None


def _owner(root: Path, rec: dict[str, Any]) -> str | None:
    """The run id that now owns this run's partitions (a later run on the same date replaces them)."""
    parts = rec.get("partitions") or {}
    kind = next((k for k in ("items", "ensemble_weights", "metrics", "forecasts") if k in parts), None)
    return _partition_owner(root / str(parts[kind])) if kind else None


def _foreign_kinds(root: Path, rec: dict[str, Any]) -> dict[str, str]:
    """The tables of run `rec` whose files (their first) belong to another run, or are gone: kind ->
    their owner ("missing" when gone)."""
    parts = rec.get("partitions") or {}
    owners = {kind: _partition_owner(root / str(part)) for kind, part in sorted(parts.items())}
    return {kind: owner for kind, owner in owners.items() if owner not in (None, rec.get("run_id"))}


def _status(root: Path, rec: dict[str, Any], latest: str | None) -> str:
    status = str(rec.get("status") or "?")
    if status != "complete":
        return f"[red]{escape(status)}[/]"
    if rec.get("run_id") == latest:
        mixed = _foreign_kinds(root, rec)
        if mixed:  # a run of the date killed while its tables were swapped in
            gone = [k for k, owner in mixed.items() if owner == "missing"]
            other = [k for k in mixed if k not in gone]
            what = " and ".join(x for x in (f"its {', '.join(other)} hold another run's" if other else "",
                                            f"its {', '.join(gone)} are missing" if gone else "") if x)
            return (f"[red]latest, but {what}: rerun "
                    f"`nova-ray run --date {rec.get('run_date')}` (a `forecast` run: the same "
                    "command with --resume completes it)[/]")
        return "[green]complete, latest[/]"
    owner = _owner(root, rec)
    if owner == "missing":
        return "[yellow]files removed[/]"
    if owner and owner != rec.get("run_id"):
        return f"[yellow]replaced by {owner}[/]"
    return "complete"


@app.command("runs")
def runs(
    results: str = typer.Option(
        None, "--results", help="Results folder (default data/ml_results, i.e. paths.output)."
    ),
    limit: int = typer.Option(20, "--limit", min=0, help="Show at most N runs (0: all)."),
    config: str = typer.Option(
        None, "--config", help="Config TOML (default configs/default.toml).", envvar="NOVA_RAY_CONFIG"
    ),
) -> None:
    """List past runs, newest first: run id, date, items, status, wall time and where the results are."""
    cfg = config_or_exit(config, {"output": results})
    root = Path(cfg.paths.output).expanduser()
    label = setting_label(cfg, "output", "--results")  # where the folder came from: an option, .env, ...
    folder_or_exit(root, label)
    if not root.is_dir():
        fail(f"{label}: no such folder")
    records = read_runs(root)
    from ..io.lock import holder
    from ..io.results import POINTER, interrupted_runs  # lazily: the CLI imports light on a serving box

    running = holder(root)  # first: a run that publishes meanwhile is then gone, not "interrupted"
    stopped = interrupted_runs(root)
    if not records:
        out.print(
            f"no runs in {root} (metadata/runs/ is empty); run `nova-ray forecast --output {root}`",
            highlight=False, markup=False, soft_wrap=True,  # the command whole, also at cron's 80 columns
        )
        _interrupted(root, stopped, running)
        return

    ptr = root / "metadata" / POINTER
    try:
        latest = json.loads(ptr.read_text()).get("run_id") if ptr.exists() else None
    except (OSError, ValueError):
        latest = None
    shown = records if limit == 0 else records[:limit]
    out.print(f"runs in {root}", soft_wrap=True, highlight=False, markup=False)
    table = Table()
    for col, just, wrap in (
        ("run id", "left", False),
        ("run date", "left", False),
        ("generated at (UTC)", "left", True),
        ("items", "right", False),
        ("failures", "right", False),
        ("status", "left", False),
        ("wall time", "right", False),
    ):
        table.add_column(col, justify=just, no_wrap=not wrap)  # type: ignore[arg-type]
    for rec in shown:
        s = rec.get("summary") or {}
        wall = s.get("wall_seconds")
        table.add_row(
            escape(str(rec.get("run_id", "?"))),
            str(rec.get("run_date") or "–"),
            str(rec.get("generated_at") or "–").replace("T", " ").replace("+00:00", ""),
            str(s.get("items", "–")),
            str(s.get("failures", "–")),
            _status(root, rec, latest),
            f"{wall:.1f} s" if isinstance(wall, (int, float)) else "–",
        )
    print_table(table)  # run ids never wrap: they are copied into --run and `report`
    out.print(f"run records: {root / 'metadata' / 'runs'}/<run id>.json", soft_wrap=True, highlight=False,
              markup=False)
    if len(shown) < len(records):
        out.print(f"{len(shown)} of {len(records)} runs shown; --limit 0 shows all", highlight=False)
    _interrupted(root, stopped, running)


def _interrupted(root: Path, stopped: list[Interrupted], running: str | None) -> None:
    """The runs that stopped before publishing, with what their checkpoints hold and how to go on."""
    if not stopped:
        return
    from ..io.results import STALE_STAGE_DAYS

    since = _lock_time(running)
    # one job at a time per results folder: the stage it wrote to since it took the lock is its
    live = stopped[0] if since and stopped[0].last_write >= since else None
    out.print(f"unpublished runs in {root / '.staging'}", soft_wrap=True, highlight=False, markup=False)
    table = Table()
    for col in ("run id", "run date", "started (UTC)", "checkpoints", "last write (UTC)", "status"):
        # cron's 80 columns: the other cells wrap, a status is never cut ("interrupt…")
        table.add_column(col, no_wrap=col in ("run id", "run date"), overflow="fold",
                         min_width=len("interrupted") if col in ("status", "checkpoints") else None)
    for r in stopped:
        done = f"{r.items_done} of {r.items} items" if r.items is not None else f"{r.items_done} items"
        status = ("[yellow]interrupted while publishing[/]" if r.publishing else "[yellow]interrupted[/]")
        if r is live:
            status = f"[green]running ({escape(_short_holder(running))})[/]"
        table.add_row(
            escape(r.run_id),
            r.run_date or "–",
            r.started.replace("T", " ").replace("+00:00", "") or "–",
            done + (", LSTM done" if r.lstm_done else ""),
            f"{r.last_write:%Y-%m-%d %H:%M}",
            status,
        )
    print_table(table)
    if running and live is None:
        out.print(f"a nova-ray job holds this folder now ({_short_holder(running)})", highlight=False,
                  markup=False)
    out.print(
        "to go on from the checkpoints: the same `nova-ray forecast` (or `train`) command (same input, "
        "settings and --items) with --resume, on the same day or the next (the run date is in the "
        "checkpoints' key); the same `nova-ray run --date <run date>` resumes by itself. Unpublished "
        f"runs untouched for {STALE_STAGE_DAYS} days are removed by the next run.",
        soft_wrap=True, highlight=False, markup=False,
    )


def _lock_time(held: str | None) -> datetime | None:
    """The time in a lock holder's "pid N since <ISO time>", None without one."""
    try:
        return datetime.fromisoformat(held.split(" since ", 1)[1]) if held and " since " in held else None
    except ValueError:
        return None


def _short_holder(held: str | None) -> str:
    return (held or "").replace("T", " ").replace("+00:00", " UTC")
