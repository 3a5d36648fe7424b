"""Read a published run's inputs for `recommend`, and add one table kind to that run afterwards.

`ResultWriter.commit` swaps every registered kind of a run date, so it cannot add a kind to a run
that is already published; `amend_run` stages just that kind, swaps its partition into place,
then updates the run record, model_versions.json and -- last -- the pointer (only when they
still describe the same run), so readers never see a half-written table.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..schemas import SCHEMA_VERSION, TABLES
from .errors import InputError
from .results import POINTER, foreign_owner, pointer_of, read_pointer, utc_now, write_json_atomic

ENSEMBLE = "ensemble"


@dataclass
class PublishedRun:
    """What `recommend` needs from the latest published run."""

    root: Path
    run_id: str
    run_date: str
    record: dict[str, Any]
    forecasts: pl.DataFrame  # the ensemble's
    backtests: pl.DataFrame | None  # the ensemble's, when the run wrote a `backtests` kind
    items: pl.DataFrame | None


def _read_folder(folder: Path, root: Path, run_id: str, run_date: str) -> pl.DataFrame | None:
    """The Parquet files under `folder`, which must all be run `run_id`'s (InputError otherwise)."""
    if not folder.exists() or not any(folder.rglob("*.parquet")):
        return None
    dataset = ds.dataset(folder, format="parquet", partitioning="hive")
    if found := foreign_owner(dataset.files, run_id):
        raise InputError(f"{Path(found[0]).relative_to(root)}: holds run {found[1]}, not the latest run "
                         f"{run_id}: a run of {run_date} was killed while its tables were swapped in "
                         f"(rerun `nova-ray run --date {run_date}`, then recommend)")
    return pl.from_arrow(dataset.to_table())


def _ensemble_of(root: Path, kind: str, run_date: str, run_id: str) -> pl.DataFrame | None:
    """The ensemble rows of a kind partitioned by model (or filtered on a model column), of `run_id`."""
    base = root / kind / f"run_date={run_date}"
    df = _read_folder(base / f"model={ENSEMBLE}", root, run_id, run_date)
    if df is None:
        df = _read_folder(base, root, run_id, run_date)
        if df is not None and "model" in df.columns:
            df = df.filter(pl.col("model").cast(pl.String) == ENSEMBLE)
    return df.drop("model", strict=False) if df is not None and df.height else None


def read_published_run(root: str | Path) -> PublishedRun:
    """The latest published run's ensemble forecasts, ensemble backtests (None when not written)
    and items table. InputError when nothing usable was published under `root`."""
    root = Path(root)
    ptr = read_pointer(root)
    if ptr is None:
        raise InputError(f"{root}: no published run (metadata/{POINTER} missing); "
                         "run `nova-ray forecast` first")
    run_id, run_date = str(ptr["run_id"]), str(ptr["run_date"])
    rec_path = root / "metadata" / "runs" / f"{run_id}.json"
    record = json.loads(rec_path.read_text()) if rec_path.exists() else dict(ptr)
    fc = _ensemble_of(root, "forecasts", run_date, run_id)
    if fc is None:
        raise InputError(f"{root}: run {run_id} has no ensemble forecasts "
                         f"under forecasts/run_date={run_date}")
    # a kind the run did not write (--only-forecasts: no backtests) is not read from its date's
    # folder, where an earlier run of that date may have left its own (records before the
    # partitions list: every kind)
    listed = record.get("partitions")
    wrote = (lambda kind: kind in listed) if isinstance(listed, dict) else (lambda kind: True)
    items_dir = root / "items" / f"run_date={run_date}"
    items = _read_folder(items_dir, root, run_id, run_date) if wrote("items") else None
    backtests = _ensemble_of(root, "backtests", run_date, run_id) if wrote("backtests") else None
    return PublishedRun(root, run_id, run_date, record, fc, backtests, items)


def amend_run(root: str | Path, run_id: str, run_date: str, kind: str, table: pa.Table,
              meta: dict[str, str], summary: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `table` as `kind` of the published run `run_id` (replacing that kind's partition of the
    run date), then record it in the run's metadata; returns the updated run record."""
    root = Path(root)
    schema, part = TABLES[kind]
    if part:
        raise ValueError(f"amend_run writes unpartitioned kinds only, {kind!r} is partitioned by {part}")
    partition = f"{kind}/run_date={run_date}"
    stage = root / ".staging" / f"{run_id}-{kind}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        if table.num_rows:  # like ResultWriter: an empty table writes no file, and the kind is not listed
            (stage / partition).mkdir(parents=True)
            t = table.select(schema.names).cast(schema).replace_schema_metadata(
                {k: str(v) for k, v in meta.items()} | {"schema_version": SCHEMA_VERSION, "kind": kind})
            pq.write_table(t, stage / partition / "part-00000.parquet", compression="zstd")
        target = root / partition
        trash = root / ".trash" / f"{run_id}-{kind}"
        moved = False
        if target.exists():
            trash.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(target, trash)
            moved = True
        try:
            if table.num_rows:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / partition, target)
        except BaseException:  # the run keeps its old table rather than none
            if moved and not target.exists():
                os.replace(trash, target)
            raise
        shutil.rmtree(trash, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in (root / ".staging", root / ".trash"):
            try:
                folder.rmdir()
            except OSError:
                pass
    return _record(root, run_id, run_date, kind, table.num_rows, summary)


def _record(root: Path, run_id: str, run_date: str, kind: str, rows: int,
            summary: dict[str, Any] | None) -> dict[str, Any]:
    meta = root / "metadata"
    rec_path = meta / "runs" / f"{run_id}.json"
    record: dict[str, Any] = json.loads(rec_path.read_text()) if rec_path.exists() else {
        "run_id": run_id, "run_date": run_date, "status": "complete"}
    if rows:
        record.setdefault("row_counts", {})[kind] = rows
        record.setdefault("partitions", {})[kind] = f"{kind}/run_date={run_date}"
    else:
        record.setdefault("row_counts", {}).pop(kind, None)
        record.setdefault("partitions", {}).pop(kind, None)
    record.setdefault("amended", {})[kind] = utc_now()
    if summary is not None:
        record.setdefault("summary", {})[kind] = summary
    if isinstance(record.get("model_versions"), dict):  # the run's own copy (sync publishes it)
        counts = record["model_versions"].setdefault("row_counts", {})
        counts[kind] = rows
        if not rows:
            counts.pop(kind)
    write_json_atomic(rec_path, record)
    versions_path = meta / "model_versions.json"
    if versions_path.exists():
        versions = json.loads(versions_path.read_text())
        if versions.get("run_id") == run_id:
            versions.setdefault("row_counts", {})[kind] = rows
            if not rows:
                versions["row_counts"].pop(kind)
            write_json_atomic(versions_path, versions)
    ptr = read_pointer(root)
    if ptr is not None and ptr.get("run_id") == run_id:  # the pointer last
        write_json_atomic(meta / POINTER, pointer_of(record))
    return record
