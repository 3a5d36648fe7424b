"""Load a published run fully into memory and swap to newer runs as the pointer moves.

A `Run` is immutable once built; `RunStore.current` is replaced by one reference assignment, so a
request that reads `store.current` once answers from exactly one run. A background thread polls the
pointer; a run that fails to load leaves the previous one serving and is reported in `last_error`.
Light imports only (pyarrow, numpy via pyarrow, standard library): no Ray, no model libraries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..io.errors import first_line
from ..io.location import Location, PublishError, check_run_id, open_location, safe_relpath
from ..io.publish import RUN_FACTS, hive_values, read_manifest, read_pointer, read_verified, utc_stamp

log = logging.getLogger("nova_ray.serve")

# Rows of each table are sorted by these columns (those present), so item slices and pages are stable.
SORT_KEYS = ("item_id", "site", "model", "date", "window")
# Kinds served in the order they were written (recommendations: most urgent first).
KEEP_ORDER = frozenset({"recommendations"})
# the tables the API serves: a run's backtests (its bulk) and ensemble weights are not loaded
SERVED = frozenset({"forecasts", "recommendations", "metrics", "items"})


class QueryError(ValueError):
    """A filter cannot be applied to this run (e.g. a site filter without site data)."""


@dataclass(frozen=True)
class Kind:
    """One table of a run with an item_id index: row ranges when sorted by item (O(1) lookups),
    else row numbers per item (tables kept in written order)."""

    table: pa.Table
    item_ranges: dict[str, tuple[int, int]]
    item_rows: dict[str, list[int]] | None = None

    @classmethod
    def build(cls, table: pa.Table, keep_order: bool = False) -> Kind:
        table = _clean_floats(table)
        lead = [c for c in ("item_id", "site", "model") if c in table.column_names]
        table = table.select(lead + [c for c in table.column_names if c not in lead])
        has_items = "item_id" in table.column_names and table.num_rows > 0
        if keep_order:
            table = table.combine_chunks()
            rows: dict[str, list[int]] = {}
            if has_items:
                for n, item in enumerate(table.column("item_id").to_pylist()):
                    rows.setdefault(item, []).append(n)
            return cls(table, {}, rows)
        keys = [(c, "ascending") for c in SORT_KEYS if c in table.column_names]
        if keys:
            table = table.sort_by(keys)
        table = table.combine_chunks()
        ranges: dict[str, tuple[int, int]] = {}
        if has_items:
            ree = pc.run_end_encode(table.column("item_id").combine_chunks())
            start = 0
            for item, end in zip(ree.values.to_pylist(), ree.run_ends.to_pylist(), strict=True):
                ranges[item] = (start, end)
                start = end
        return cls(table, ranges)

    def rows_for(self, item_ids: list[str]) -> pa.Table:
        """Rows of the given items (unknown ids contribute nothing), in table order."""
        if self.item_rows is not None:
            idx = sorted(n for i in item_ids for n in self.item_rows.get(i, ()))
            return self.table.take(pa.array(idx, pa.int64()))
        parts = [self.table.slice(a, b - a) for a, b in (self.item_ranges.get(i, (0, 0)) for i in item_ids)
                 if b > a]
        if not parts:
            return self.table.slice(0, 0)
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _clean_floats(table: pa.Table) -> pa.Table:
    """NaN and infinities become nulls (JSON has no NaN)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_floating(f.type):
            col = table.column(i)
            if pc.any(pc.invert(pc.is_finite(col))).as_py():
                table = table.set_column(i, f, pc.if_else(pc.is_finite(col), col, pa.scalar(None, f.type)))
    return table


@dataclass(frozen=True)
class Run:
    """One published run in memory: metadata plus one `Kind` per table."""

    run_id: str
    run_date: str | None
    generated_at: str | None
    published_at: str | None
    loaded_at: str
    layout: str
    kinds: dict[str, Kind]
    site_items: dict[str, list[str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # changes with every publish, also of an amended run (same run_id): sha256[:16] of its pointer
    version: str = ""

    def items_at_site(self, site: str) -> list[str]:
        """Item ids stocked at `site` (from the items or recommendations table)."""
        if self.site_items is None:
            raise QueryError(f"site filter unavailable: run {self.run_id} has no site information "
                             "(neither its items nor its recommendations table names a site)")
        return self.site_items.get(site, [])

    def select(self, kind: str, **filters: Any) -> pa.Table:
        """Rows of table `kind` matching all filters (None = no filter; `_matching`'s)."""
        t, mask = self._matching(kind, **filters)
        return t.filter(mask) if mask is not None else t

    def page(self, kind: str, offset: int, limit: int, **filters: Any) -> tuple[int, pa.Table]:
        """How many rows of `kind` match, and those from `offset`, at most `limit`: only the page is
        copied (a filtered copy of every match, per request, took 66 MB for `limit=1` on a table of
        960,000 rows, and the server runs 40 requests at once)."""
        t, mask = self._matching(kind, **filters)
        if mask is None:
            return t.num_rows, t.slice(offset, limit)
        index = pc.indices_nonzero(mask)
        return len(index), t.take(index.slice(min(offset, len(index)), limit))

    def _matching(
        self,
        kind: str,
        *,
        item_ids: list[str] | None = None,
        equals: dict[str, str | None] | None = None,
        site: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> tuple[pa.Table, Any]:
        """Table `kind` (an item filter's rows) and the mask of its rows matching the other filters
        (None: all of them)."""
        k = self.kinds[kind]
        names = k.table.column_names
        if item_ids is not None:
            item_ids = sorted(set(item_ids))
        if site is not None:
            at_site = set(self.items_at_site(site))  # QueryError when the run has no sites at all
        if site is not None and "site" not in names:
            item_ids = [i for i in (item_ids if item_ids is not None else sorted(at_site)) if i in at_site]
        elif site is not None:
            equals = dict(equals or {}) | {"site": site}
        t = k.rows_for(item_ids) if item_ids is not None else k.table
        mask: pa.ChunkedArray | pa.Array | None = None

        def _and(m: Any) -> None:
            nonlocal mask
            mask = m if mask is None else pc.and_(mask, m)

        for col, value in (equals or {}).items():
            if value is None:
                continue
            if col not in names:
                raise QueryError(f"{kind} of run {self.run_id} have no {col!r} column to filter on")
            _and(pc.equal(t.column(col), pa.scalar(value, t.schema.field(col).type)))
        if date_from is not None or date_to is not None:
            if "date" not in names:
                raise QueryError(f"{kind} of run {self.run_id} have no date column")
            if date_from is not None:
                _and(pc.greater_equal(t.column("date"), pa.scalar(date_from, pa.date32())))
            if date_to is not None:
                _and(pc.less_equal(t.column("date"), pa.scalar(date_to, pa.date32())))
        return t, mask

    def summary(self) -> dict[str, Any]:
        """What /health says of the run (keys: SUMMARY_KEYS)."""
        return {"run_id": self.run_id, "version": self.version, "run_date": self.run_date,
                "generated_at": self.generated_at, "published_at": self.published_at,
                "loaded_at": self.loaded_at, "layout": self.layout,
                "rows": {k: v.table.num_rows for k, v in sorted(self.kinds.items())},
                "model_version": self.meta.get("model_version"),
                **{k: self.meta.get(k) for k in RUN_FACTS}}


SUMMARY_KEYS = ("run_id", "version", "run_date", "generated_at", "published_at", "loaded_at", "layout",
                "rows", "model_version", *RUN_FACTS)


def _site_items(kinds: dict[str, Kind]) -> dict[str, list[str]] | None:
    found = False
    pairs: set[tuple[str, str]] = set()
    for name in ("items", "recommendations"):
        k = kinds.get(name)
        if k is None or not {"item_id", "site"} <= set(k.table.column_names):
            continue
        t = k.table.select(["site", "item_id"]).drop_null()
        sites = t.column("site").cast(pa.string()).to_pylist()
        # a blank site is the whole item (a stock file without sites): no site information
        named = {(s, i) for s, i in zip(sites, t.column("item_id").to_pylist(), strict=True) if s}
        found = found or bool(named)
        pairs |= named
    if not found:
        return None
    out: dict[str, list[str]] = {}
    for site, item in sorted(pairs):
        out.setdefault(site, []).append(item)
    return out


def _with_partitions(table: pa.Table, relpath: str) -> pa.Table:
    for key, value in hive_values(relpath).items():
        if key not in table.column_names:
            table = table.append_column(key, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
    return table.replace_schema_metadata(None)


def _concat(parts: list[pa.Table]) -> pa.Table:
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="default")


def load_sync_run(loc: Location, pointer: dict[str, Any]) -> Run:
    """A run from a sync target: pointer -> manifest -> the files it lists (verified); no listing."""
    manifest = read_manifest(loc, pointer)
    run_id = manifest["run_id"]
    parts: dict[str, list[pa.Table]] = {}
    for f in manifest["files"]:
        if str(f["kind"]) not in SERVED:
            continue
        rel = safe_relpath(str(f["path"]))
        data = read_verified(loc, f"runs/{run_id}/{rel}", int(f["size"]), str(f["sha256"]))
        try:
            table = pq.read_table(pa.BufferReader(data))
        except (OSError, ValueError) as exc:
            raise PublishError(f"runs/{run_id}/{rel}: unreadable Parquet ({first_line(exc)})") from None
        if table.num_rows != int(f["rows"]):
            raise PublishError(f"runs/{run_id}/{rel}: {table.num_rows} rows, manifest says {f['rows']}")
        parts.setdefault(str(f["kind"]), []).append(_with_partitions(table, rel))
    return _make_run(run_id, "sync", manifest, {k: _concat(v) for k, v in parts.items()},
                     _served(manifest.get("row_counts")))


def load_results_run(loc: Location, pointer: dict[str, Any]) -> Run:
    """A run from a results folder (pointer in metadata/): its partitions, checked to belong to the run."""
    run_id = check_run_id(str(pointer["run_id"]))
    parts: dict[str, list[pa.Table]] = {}
    for kind, part in sorted((pointer.get("partitions") or {}).items()):
        if kind not in SERVED:
            continue
        rel_dir = safe_relpath(str(part))
        sel = pafs.FileSelector(loc.path(rel_dir), recursive=True)
        try:
            infos = loc.fs.get_file_info(sel)
        except FileNotFoundError:
            raise PublishError(f"{loc.uri}/{rel_dir}: partition folder missing") from None
        files = sorted(i.path for i in infos if i.type == pafs.FileType.File
                       and i.base_name.endswith(".parquet") and not i.base_name.startswith("."))
        for path in files:
            try:
                with loc.fs.open_input_file(path) as fh:
                    table = pq.read_table(fh)
            except (OSError, ValueError) as exc:  # pyarrow names the stream '<Buffer>', not the file
                raise PublishError(f"{path}: unreadable Parquet ({first_line(exc)})") from None
            owner = (table.schema.metadata or {}).get(b"run_id")
            if owner is not None and owner.decode() != run_id:
                raise PublishError(f"{path}: holds run {owner.decode()}, the pointer names {run_id} "
                                   "(a new run is being written; will retry)")
            rel = path[len(loc.base.rstrip("/")) + 1:]
            parts.setdefault(kind, []).append(_with_partitions(table, rel))
    return _make_run(run_id, "results", pointer, {k: _concat(v) for k, v in parts.items()},
                     _served(pointer.get("row_counts")))


def _served(row_counts: dict[str, Any] | None) -> dict[str, Any]:
    """The row counts of the tables the API serves (those loaded)."""
    return {k: n for k, n in (row_counts or {}).items() if k in SERVED}


def _make_run(run_id: str, layout: str, meta: dict[str, Any], tables: dict[str, pa.Table],
              expected: dict[str, Any]) -> Run:
    for kind, n in expected.items():
        got = tables[kind].num_rows if kind in tables else 0
        if int(n) != got:
            raise PublishError(f"run {run_id}: {kind} has {got} rows, metadata says {n}")
    kinds = {k: Kind.build(t, keep_order=k in KEEP_ORDER) for k, t in tables.items()}
    return Run(run_id=run_id, run_date=meta.get("run_date"), generated_at=meta.get("generated_at"),
               published_at=meta.get("published_at"), loaded_at=utc_stamp(), layout=layout, kinds=kinds,
               site_items=_site_items(kinds),
               meta={k: meta.get(k) for k in ("model_version", "dataset_id", "row_counts", *RUN_FACTS)})


def load_run(loc: Location) -> tuple[Run | None, bytes | None]:
    """The run the location's pointer names now, with the raw pointer; (None, None) when none yet."""
    found = read_pointer(loc)
    if found is None:
        return None, None
    layout, pointer, raw = found
    run = load_sync_run(loc, pointer) if layout == "sync" else load_results_run(loc, pointer)
    run = replace(run, version=hashlib.sha256(raw).hexdigest()[:16])
    if layout == "results":  # the folder may have moved on while we read it
        again = read_pointer(loc)
        if again is None or again[2] != raw:
            raise PublishError(f"{loc.uri}: pointer changed while loading run {run.run_id}; will retry")
    return run, raw


RETRY_MAX_SECONDS = 300.0  # the longest pause before a run that failed to load is tried again
MAX_POLL_SECONDS = 86_400.0  # a day: the longest pointer check interval


class RunStore:
    """The served run and the thread that keeps it current."""

    def __init__(self, results: str | Location, endpoint_url: str | None = None, poll_seconds: float = 5.0):
        self.location = results if isinstance(results, Location) else open_location(results, endpoint_url)
        poll = float(poll_seconds)
        if not math.isfinite(poll) or poll > MAX_POLL_SECONDS:  # inf: /health a 500, the watcher dead
            raise ValueError(f"poll seconds must be finite and at most {MAX_POLL_SECONDS:.0f}, "
                             f"got {poll_seconds}")
        self.poll_seconds = max(poll, 0.05)
        self.current: Run | None = None
        self.last_error: str | None = None
        self.last_checked_at: str | None = None
        self._pointer: bytes | None = None
        self._failed: tuple[bytes, int, float] | None = None  # pointer, failures, next try (monotonic)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> bool:
        """Check the pointer once; load and swap in a new run. True when the served run changed.

        A run that failed to load is tried again after a pause that doubles with each failure
        (from the poll interval up to RETRY_MAX_SECONDS), not at every poll: a broken file would
        otherwise be downloaded and hashed again every few seconds; a new pointer is tried at once."""
        with self._lock:
            found = None
            self.last_checked_at = utc_stamp()  # also when the check fails (an outage shows as errors)
            try:
                found = read_pointer(self.location)
                if found is None:
                    where = self.location.uri
                    self.last_error = (
                        f"no published run at {where} yet" if self.current is None
                        else f"the pointer at {where} is gone; still serving run {self.current.run_id}"
                    )
                    return False
                if found[2] == self._pointer:  # the served run's pointer again (mended, rolled back)
                    self.last_error = None
                    self._failed = None
                    return False
                if self._failed and self._failed[0] == found[2] and time.monotonic() < self._failed[2]:
                    return False
                t0 = time.perf_counter()
                run, raw = load_run(self.location)
            except Exception as exc:  # keep serving the old run, whatever broke
                msg = " ".join(f"{type(exc).__name__}: {exc}".split())
                if msg != self.last_error:
                    log.warning("run not loaded, still serving %s: %s",
                                self.current.run_id if self.current else "nothing", msg)
                self.last_error = msg
                if found is not None:
                    n = self._failed[1] + 1 if self._failed and self._failed[0] == found[2] else 1
                    # the exponent capped: 2**1024 (3.5 days of a broken pointer) raised OverflowError
                    pause = min(self.poll_seconds * 2 ** min(n, 32), RETRY_MAX_SECONDS)
                    self._failed = (found[2], n, time.monotonic() + pause)
                return False
            if run is None:
                return False
            self.current = run  # the one swap
            self._pointer = raw
            self._failed = None
            self.last_error = None
            log.info("serving run %s (%s layout, %.2f s to load)", run.run_id, run.layout,
                     time.perf_counter() - t0)
            return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # noqa: BLE001 - the watcher never dies: a dead one served a stale run for good
                log.exception("checking the pointer failed; trying again in %.0f s", self.poll_seconds)
            self._stop.wait(self.poll_seconds)

    def start(self) -> None:
        """Start the polling thread (it loads the first run right away)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="nova-ray-run-watcher", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def health(self) -> dict[str, Any]:
        run = self.current
        body: dict[str, Any] = {"status": "ok" if run else "waiting", "source": self.location.uri,
                                "last_error": self.last_error, "last_checked_at": self.last_checked_at,
                                "poll_seconds": self.poll_seconds}
        # the same keys either way (null until a run is loaded): a client reads one shape
        body |= run.summary() if run else dict.fromkeys(SUMMARY_KEYS)
        return body


def dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON; dates as ISO strings."""
    return json.dumps(body, separators=(",", ":"), default=_default, allow_nan=False).encode()


def _default(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


__all__ = ["Kind", "QueryError", "Run", "RunStore", "dumps", "load_results_run", "load_run", "load_sync_run"]
