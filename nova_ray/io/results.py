"""Write a run's results: staged hive-partitioned Parquet, then an atomic swap, metadata, pointer last.

Layout under the output root:
    <kind>/run_date=YYYY-MM-DD/[model=<name>/]part-00000.parquet
    metadata/model_versions.json, metadata/runs/<run_id>.json, metadata/last_updated.json (last)
A run writes into `.staging/<run_id>/` first; nothing under the root changes until `commit`.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..schemas import SCHEMA_VERSION, TABLES

POINTER = "last_updated.json"
ROWS_PER_FILE = 1_000_000


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultWriter:
    """Stage tables for one run, then publish them all at once with `commit`."""

    def __init__(self, root: str | Path, run_id: str, run_date: date, meta: dict[str, str]):
        self.root = Path(root)
        self.run_id = run_id
        self.run_date = run_date
        self.meta = {k: str(v) for k, v in meta.items()} | {"schema_version": SCHEMA_VERSION}
        self.stage = self.root / ".staging" / run_id
        self.rows: dict[str, int] = {}
        self._files: dict[tuple[str, str], int] = {}
        if self.stage.exists():
            shutil.rmtree(self.stage)
        self.stage.mkdir(parents=True)

    def _partition_dir(self, base: Path, kind: str) -> Path:
        return base / kind / f"run_date={self.run_date.isoformat()}"

    def write(self, kind: str, table: pa.Table) -> None:
        """Append `table` (with its partition column, if the kind has one) to the staged `kind`."""
        schema, part = TABLES[kind]
        if table.num_rows == 0:
            return
        groups: Iterable[tuple[str, pa.Table]]
        if part:
            values = table.column(part).unique().to_pylist()
            import pyarrow.compute as pc

            groups = [(f"{part}={v}", table.filter(pc.equal(table[part], v))) for v in sorted(values)]
        else:
            groups = [("", table)]
        for sub, t in groups:
            t = t.select(schema.names).cast(schema).replace_schema_metadata(self.meta | {"kind": kind})
            folder = (
                self._partition_dir(self.stage, kind) / sub if sub else self._partition_dir(self.stage, kind)
            )
            folder.mkdir(parents=True, exist_ok=True)
            n = self._files.get((kind, sub), 0)
            pq.write_table(t, folder / f"part-{n:05d}.parquet", compression="zstd")
            self._files[(kind, sub)] = n + 1
            self.rows[kind] = self.rows.get(kind, 0) + t.num_rows

    def commit(
        self, model_versions: dict[str, Any], summary: dict[str, Any], replace: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """Swap staged partitions into place, write metadata, and the pointer last.

        `replace` names the kinds this run owns (default: all): their partitions for the run date are
        replaced, or removed when this run wrote none; other kinds' partitions are left as they are.
        """
        trash = self.root / ".trash" / self.run_id
        for kind in TABLES if replace is None else replace:
            staged = self._partition_dir(self.stage, kind)
            target = self._partition_dir(self.root, kind)
            if target.exists():
                trash.mkdir(parents=True, exist_ok=True)
                os.replace(target, trash / kind)
            if staged.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        shutil.rmtree(self.root / ".trash", ignore_errors=True)
        shutil.rmtree(self.stage, ignore_errors=True)
        _remove_if_empty(self.root / ".staging")
        meta_dir = self.root / "metadata"
        record = {
            "run_id": self.run_id,
            "run_date": self.run_date.isoformat(),
            "generated_at": self.meta.get("generated_at", utc_now()),
            "model_version": self.meta.get("model_version"),
            "dataset_id": self.meta.get("dataset_id"),
            "row_counts": dict(self.rows),
            "partitions": {k: f"{k}/run_date={self.run_date.isoformat()}" for k in self.rows},
            "status": "complete",
        } | {"summary": summary}
        write_json_atomic(meta_dir / "model_versions.json", model_versions | {"row_counts": dict(self.rows)})
        write_json_atomic(meta_dir / "runs" / f"{self.run_id}.json", record)
        write_json_atomic(meta_dir / POINTER, {k: record[k] for k in record if k != "summary"})
        return record

    def abort(self) -> None:
        """Drop everything staged; the published output is untouched."""
        shutil.rmtree(self.stage, ignore_errors=True)
        _remove_if_empty(self.root / ".staging")


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def read_pointer(root: str | Path) -> dict[str, Any] | None:
    """The latest complete run's pointer, or None when nothing was published."""
    p = Path(root) / "metadata" / POINTER
    return json.loads(p.read_text()) if p.exists() else None


def read_table(root: str | Path, kind: str, run_date: str | None = None) -> pa.Table:
    """One kind's table for a run date (default: the pointer's), partition columns included."""
    if run_date is None:
        ptr = read_pointer(root)
        if ptr is None:
            raise FileNotFoundError(f"{root}: no published run (metadata/{POINTER} missing)")
        run_date = ptr["run_date"]
    folder = Path(root) / kind / f"run_date={run_date}"
    if not folder.exists():
        raise FileNotFoundError(f"{folder}: no {kind} for run date {run_date}")
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet", partitioning="hive").to_table()
