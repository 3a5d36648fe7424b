"""Write a run's results: staged hive-partitioned Parquet, then an atomic swap, metadata, pointer last.

Layout under the output root:
    <kind>/run_date=YYYY-MM-DD/[model=<name>/]part-00000.parquet
    metadata/model_versions.json, metadata/runs/<run_id>.json, metadata/last_updated.json (last)
A run writes into `.staging/<key>/` first (batch checkpoints, then the final tables); nothing under
the root changes until `commit`.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..schemas import ITEMS, SCHEMA_VERSION, TABLES
from .errors import InputError
from .publish import RUN_FACTS

if TYPE_CHECKING:
    import polars as pl

POINTER = "last_updated.json"
ROWS_PER_FILE = 1_000_000
BATCH_PREFIX = "b-"  # checkpoints of statistical batches (whole items); others: "lstm", "cache"
CACHE = "cache"  # the checkpoint of the warm items' stored backtests
STALE_STAGE_DAYS = 7  # an interrupted run's checkpoints untouched this long are removed
CHECKPOINTED = 0  # checkpoints this process has written or resumed (the CLI's interrupt hint)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def fsync_file(path: Path) -> None:
    """`path`'s data on disk (before it is renamed into place or marked done)."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def pointer_of(record: dict[str, Any]) -> dict[str, Any]:
    """The pointer `last_updated.json` of a run: its record without the summary and model versions."""
    return {k: v for k, v in record.items() if k not in ("summary", "model_versions")}


def foreign_owner(files: Iterable[str | Path], run_id: str) -> tuple[str, str] | None:
    """The first of these Parquet files that another run than `run_id` wrote, and that run (a
    later run of the date replaced it, or one was killed while its tables were swapped in)."""
    for f in files:
        owner = (pq.read_schema(f).metadata or {}).get(b"run_id")
        if owner is not None and owner.decode() != run_id:
            return str(f), owner.decode()
    return None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultWriter:
    """Stage tables for one run, then publish them all at once with `commit`.

    Batch results are checkpointed under `.staging/<stage_key>/checkpoints/` as they arrive (each
    file written under a temp name and renamed), so that a killed run can be resumed: with
    `resume=True` an existing stage of the same key is kept and `done()` says what is finished.
    """

    def __init__(
        self,
        root: str | Path,
        run_id: str,
        run_date: date,
        meta: dict[str, str],
        *,
        stage_key: str | None = None,
        resume: bool = False,
        items: int | None = None,
    ):
        self.root = Path(root)
        self.run_date = run_date
        self.stage = _stage(self.root, stage_key or run_id)
        self.rows: dict[str, int] = {}
        self._files: dict[tuple[str, str], int] = {}
        self.damaged: list[str] = []  # checkpoints of the resumed attempt that could not be read
        info = self.stage / "run.json"
        self.resumed = resume and info.exists()
        if self.resumed:
            saved = json.loads(info.read_text())
            run_id, meta = saved["run_id"], saved["meta"]
            # drop the final tables of the interrupted attempt; the checkpoints stay
            for entry in self.stage.iterdir():
                if entry.is_dir() and entry.name != "checkpoints":
                    shutil.rmtree(entry)
            self.damaged = self._unreadable()
            self.discard(self.damaged)  # fitted again: they were a traceback after the refit
            global CHECKPOINTED
            CHECKPOINTED += len(self.done())  # an interrupt now leaves them for the next --resume
        else:
            _drop(self.stage)
            self.stage.mkdir(parents=True)
        for left in self.stage.parent.glob(".dropped-*"):  # of a killed deletion
            shutil.rmtree(left, ignore_errors=True)
        _drop_stale(self.stage)
        self.run_id = run_id
        self.meta = {k: str(v) for k, v in meta.items()} | {"schema_version": SCHEMA_VERSION}
        if not self.resumed:  # `items`: the run's item count, which `interrupted_runs` shows
            write_json_atomic(info, {"run_id": run_id, "meta": self.meta, "items": items})

    # -- checkpoints -------------------------------------------------------------------------------
    def checkpoint(self, name: str, tables: dict[str, pa.Table | pl.LazyFrame]) -> None:
        """Write one batch's tables atomically (a LazyFrame is streamed to its file); the `done`
        marker is written last."""
        ck = self.stage / "checkpoints"
        for kind, table in tables.items():
            folder = ck / kind
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.parquet.tmp"
            if isinstance(table, pa.Table):
                pq.write_table(table, tmp, compression="zstd")
            else:
                table.sink_parquet(tmp, compression="zstd")
            fsync_file(tmp)  # on disk before the marker: a power cut left a batch marked done
            os.replace(tmp, folder / f"{name}.parquet")  # whose file was empty, which no resume read
        (ck / "done").mkdir(parents=True, exist_ok=True)
        (ck / "done" / name).write_text(",".join(sorted(tables)))
        global CHECKPOINTED
        CHECKPOINTED += 1

    def _unreadable(self) -> list[str]:
        """Finished checkpoints with a table that cannot be read (a disk that lost the end of a
        file), in name order."""
        ck = self.stage / "checkpoints"
        bad = []
        for name in sorted(self.done()):
            kinds = [k for k in (ck / "done" / name).read_text().split(",") if k]
            for kind in kinds:
                try:
                    pq.read_metadata(ck / kind / f"{name}.parquet")
                except Exception:  # noqa: BLE001 - any failure: the batch is fitted again
                    bad.append(name)
                    break
        return bad

    def done(self) -> set[str]:
        """Names of the finished checkpoints."""
        folder = self.stage / "checkpoints" / "done"
        return {p.name for p in folder.iterdir()} if folder.exists() else set()

    def discard(self, names: Collection[str]) -> None:
        """Remove finished checkpoints: each one's `done` marker first (a kill midway leaves it
        unfinished, which every reader ignores), then its files."""
        ck = self.stage / "checkpoints"
        for name in names:
            (ck / "done" / name).unlink(missing_ok=True)
            for f in ck.glob(f"*/{name}.parquet"):
                f.unlink()

    def checkpoint_files(self, kind: str) -> list[Path]:
        """The finished checkpoint files of `kind`."""
        done = self.done()
        folder = self.stage / "checkpoints" / kind
        return sorted(p for p in folder.glob("*.parquet") if p.stem in done) if folder.exists() else []

    def done_items(self) -> set[str]:
        """Items whose batch is checkpointed (a resumed run skips them)."""
        files = self.checkpoint_files("items")
        return {i for f in files for i in pq.read_table(f, columns=["item_id"]).column("item_id").to_pylist()}

    def checkpointed_items(self, exclude: Collection[str] = ()) -> pl.DataFrame:
        """The items rows of every checkpointed batch, less the items in `exclude`."""
        import polars as pl

        files = self.checkpoint_files("items")
        if not files:
            return pl.from_arrow(ITEMS.empty_table())
        return pl.scan_parquet(files).filter(~pl.col("item_id").is_in(list(exclude))).collect()

    def checkpointed_backtests(self, items: list[str]) -> pl.LazyFrame | None:
        """The backtest rows of `items` fitted in this run (the warm cache's left out), as a
        LazyFrame to stream: all models' windows, the bulk of the checkpoints."""
        import polars as pl

        files = [f for f in self.checkpoint_files("backtests") if f.stem != CACHE]
        return pl.scan_parquet(files).filter(pl.col("item_id").is_in(items)) if files else None

    def batch_groups(self, size: int) -> Iterator[tuple[set[str], list[str]]]:
        """Groups of whole batch checkpoints of about `size` items: (checkpoint names, their items).

        Each batch checkpoint holds whole items, so a group reads its own batch files once and
        filters only the checkpoints that span every item (`read_group`). The batches go in the
        order of their first item (not of their random names): the same batches make the same
        groups."""
        batches = []
        for f in self.checkpoint_files("items"):
            ids = pq.read_table(f, columns=["item_id"]).column("item_id").to_pylist()
            if ids:  # the LSTM's checkpoint has no item rows
                batches.append((min(ids), f.stem, ids))
        stems: set[str] = set()
        items: list[str] = []
        for _, stem, ids in sorted(batches):
            if items and len(items) + len(ids) > size:
                yield stems, items
                stems, items = set(), []
            stems.add(stem)
            items += ids
        if items:
            yield stems, items

    def read_group(self, kind: str, schema: pa.Schema, stems: set[str], items: list[str]) -> pl.DataFrame:
        """The checkpointed rows of `kind` for one group of `batch_groups`: its batch files whole,
        the shared ones (LSTM, warm cache) filtered to its items before loading."""
        import polars as pl

        files = self.checkpoint_files(kind)
        own = [f for f in files if f.stem in stems]
        shared = [f for f in files if not f.stem.startswith(BATCH_PREFIX) and f.stem != CACHE]
        cache = [f for f in files if f.stem == CACHE]
        parts = [pl.scan_parquet(own)] if own else []
        if shared:
            parts.append(pl.scan_parquet(shared).filter(pl.col("item_id").is_in(items)))
        if cache:  # stored rows stand in only for what this run did not fit: after a resume that
            # found its own fits stored, the cache would hold every fresh row a second time
            stored = pl.scan_parquet(cache).filter(pl.col("item_id").is_in(items))
            if parts:
                fresh = pl.concat([p.select("item_id", "model") for p in parts]).unique()
                stored = stored.join(fresh, on=["item_id", "model"], how="anti")
            parts.append(stored)
        if not parts:
            return pl.from_arrow(schema.empty_table())
        return pl.concat(parts, how="vertical_relaxed").collect()

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
        # one trash folder per attempt: a resumed run (same run id) whose killed attempt swapped
        # some kinds already moves this attempt's partitions aside, not onto the last ones
        trash = self.root / ".trash" / f"{self.run_id}-{uuid.uuid4().hex[:8]}"
        for kind in TABLES if replace is None else replace:
            staged = self._partition_dir(self.stage, kind)
            target = self._partition_dir(self.root, kind)
            if target.exists():
                trash.mkdir(parents=True, exist_ok=True)
                os.replace(target, trash / kind)
            if staged.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, target)
        meta_dir = self.root / "metadata"
        versions = model_versions | {"row_counts": dict(self.rows)}
        record = {
            "run_id": self.run_id,
            "run_date": self.run_date.isoformat(),
            "generated_at": self.meta.get("generated_at", utc_now()),
            "model_version": self.meta.get("model_version"),
            "dataset_id": self.meta.get("dataset_id"),
            **{k: self.meta.get(k) for k in RUN_FACTS},
            "row_counts": dict(self.rows),
            "partitions": {k: f"{k}/run_date={self.run_date.isoformat()}" for k in self.rows},
            "status": "complete",
            "model_versions": versions,  # also for a backfill, whose versions file stays the latest's
        } | {"summary": summary}
        write_json_atomic(meta_dir / "runs" / f"{self.run_id}.json", record)
        if self._is_latest():  # a backfill (an earlier run date) leaves the latest run as it is
            write_json_atomic(meta_dir / "model_versions.json", versions)
            write_json_atomic(meta_dir / POINTER, pointer_of(record))
        # only now: killed before the pointer, the run can still be resumed from its checkpoints
        shutil.rmtree(self.root / ".trash", ignore_errors=True)
        self.abort()
        return record

    def _is_latest(self) -> bool:
        """Whether this run becomes the latest: no published run (or an unreadable pointer, which
        it replaces) of a later run date."""
        try:
            ptr = read_pointer(self.root)
        except InputError:
            return True
        return ptr is None or str(ptr.get("run_date", "")) <= self.run_date.isoformat()

    def abort(self) -> None:
        """Drop everything staged; the published output is untouched."""
        _drop(self.stage)
        _remove_if_empty(self.root / ".staging")


@dataclass(frozen=True)
class Interrupted:
    """A run that stopped before it published, as its stage under `.staging/` holds it."""

    run_id: str
    run_date: str
    started: str  # the attempt's generated_at (UTC)
    items_done: int  # items of its finished batch checkpoints
    items: int | None  # the run's items (None: a stage from before they were recorded)
    lstm_done: bool  # the global LSTM's result is checkpointed (false also for runs without it)
    publishing: bool  # killed while publishing: its final tables were being written
    last_write: datetime  # UTC; the stage is removed STALE_STAGE_DAYS after it


def _stage(root: str | Path, key: str) -> Path:
    return Path(root) / ".staging" / key


def has_stage(root: str | Path, key: str) -> bool:
    """Whether the results folder holds the checkpoints of an interrupted run of stage `key`."""
    return (_stage(root, key) / "run.json").exists()


def interrupted_runs(root: str | Path) -> list[Interrupted]:
    """The stages under `root/.staging` that a run left (killed, interrupted, failed), newest
    first; a live run's stage reads the same (see `lock.holder`). Read only."""
    out = []
    staging = Path(root) / ".staging"
    for stage in staging.iterdir() if staging.is_dir() else ():
        try:  # a live run drops its stage when it publishes: gone while read, it is no longer one
            found = _interrupted(stage)
        except OSError:
            continue
        if found is not None:
            out.append(found)
    return sorted(out, key=lambda r: r.last_write, reverse=True)


def _interrupted(stage: Path) -> Interrupted | None:
    """What the stage of a run that did not publish holds (None: not such a stage)."""
    info = stage / "run.json"
    if stage.name.startswith(".") or not info.is_file():
        return None
    try:
        saved = json.loads(info.read_text())
        meta = saved.get("meta") or {}
    except (ValueError, AttributeError):
        return None
    done_dir = stage / "checkpoints" / "done"
    done = {p.name for p in done_dir.iterdir()} if done_dir.is_dir() else set()
    rows = 0
    for name in done:
        if name.startswith(BATCH_PREFIX):
            try:
                rows += pq.read_metadata(stage / "checkpoints" / "items" / f"{name}.parquet").num_rows
            except Exception:  # noqa: BLE001 - a damaged checkpoint is fitted again on --resume
                continue
    marks = [m for m in (stage, info, done_dir) if m.exists()]
    run_id = str(saved.get("run_id") or meta.get("run_id") or stage.name)
    return Interrupted(
        run_id=run_id,
        run_date=_run_date(run_id),
        started=str(meta.get("generated_at") or ""),
        items_done=rows,
        items=saved.get("items") if isinstance(saved.get("items"), int) else None,
        lstm_done="lstm" in done,
        publishing=any(e.is_dir() and e.name != "checkpoints" for e in stage.iterdir()),
        last_write=datetime.fromtimestamp(max(m.stat().st_mtime for m in marks), timezone.utc),
    )


def _run_date(run_id: str) -> str:
    """The run date in a run id (``YYYYMMDD-xxxxxxxx``) as YYYY-MM-DD, else ''."""
    head = run_id.split("-", 1)[0]
    try:
        return datetime.strptime(head, "%Y%m%d").date().isoformat()
    except ValueError:
        return ""


def _drop(folder: Path) -> None:
    """Delete a stage: renamed first, in one step, so that a kill midway through the deletion
    cannot leave a stage whose run.json and `done` markers outlive the files they mark; a
    renamed one left behind is removed by the next `ResultWriter` on this output."""
    if not folder.exists():
        return
    gone = folder.with_name(f".dropped-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, gone)
    shutil.rmtree(gone, ignore_errors=True)


def _drop_stale(keep: Path, days: float = STALE_STAGE_DAYS) -> None:
    """Delete the stages next to `keep` not written to for `days`: interrupted runs of other
    inputs, settings or dates that nobody resumed (a night's run killed and not rerun that day)
    would otherwise keep every model's checkpoints for good. Called under the output's job lock,
    so no live run owns them."""
    cutoff = datetime.now(timezone.utc).timestamp() - days * 86400
    for other in keep.parent.iterdir():
        if other == keep or other.name.startswith(".") or not other.is_dir():
            continue
        marks = (other, other / "run.json", other / "checkpoints" / "done")
        if max(m.stat().st_mtime for m in marks if m.exists()) < cutoff:
            _drop(other)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def read_pointer(root: str | Path) -> dict[str, Any] | None:
    """The latest complete run's pointer, or None when nothing was published; InputError naming
    the file when it is not a pointer (empty, cut short, edited by hand)."""
    p = Path(root) / "metadata" / POINTER
    if not p.exists():
        return None
    try:
        ptr = json.loads(p.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a valid pointer ({' '.join(str(exc).split())}); the next `nova-ray "
                         "forecast` writes a new one") from None
    if not isinstance(ptr, dict) or not ptr.get("run_id") or not ptr.get("run_date"):
        raise InputError(f"{p}: not a valid pointer (no run_id or run_date); the next `nova-ray "
                         "forecast` writes a new one")
    return ptr


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


def recorded_freq(root: str | Path, record: dict[str, Any]) -> str | None:
    """The frequency a run forecast at: its record's summary, else `model_versions.json` when that
    describes the same run; None when neither says (a record from before it was kept)."""
    from ..frequency import FREQUENCIES as FREQ_CODES

    freq = (record.get("summary") or {}).get("freq")
    if freq in FREQ_CODES:
        return str(freq)
    versions = Path(root) / "metadata" / "model_versions.json"
    try:
        v = json.loads(versions.read_text()) if versions.exists() else {}
    except ValueError:
        return None
    if isinstance(v, dict) and v.get("run_id") == record.get("run_id") and v.get("freq") in FREQ_CODES:
        return str(v["freq"])
    return None


def recorded_data(record: dict[str, Any]) -> str | None:
    """The demand file a run read, as its record names it (None when it does not)."""
    path = record.get("data_path") or (record.get("summary") or {}).get("data_path")
    return str(path) if path else None
