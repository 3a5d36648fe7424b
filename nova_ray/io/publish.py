"""Publish a finished run to a shared folder or an S3-compatible store; the pointer is written last.

Target layout (a folder, or ``s3://bucket/prefix``):
    runs/<run_id>/<kind>/run_date=YYYY-MM-DD/[model=<name>/]part-*.parquet
    runs/<run_id>/manifest-<sha256[:16]>.json   files (size, sha256, rows), row counts per kind,
                                  run metadata; named by its content, never overwritten
    last_updated.json             pointer naming the run and its manifest; written after them
                                  (rename / single PUT)
    runs/<run_id>/manifest.json   a copy of the run's newest manifest, written after the pointer
                                  (what pruning and listings read)

Every data file is verified (sha256 of what was sent against a re-read of the target) before the
manifest is written, and the manifest before the pointer. Readers resolve the pointer, then the
manifest it names, and never list folders. An interrupted sync leaves the old pointer, and every
file it names, untouched (a run amended and synced again gets a new manifest beside its old one);
a rerun skips files already present with a matching checksum. This module is light on purpose (pyarrow
and the standard library only): the serving side imports it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .errors import first_line
from .location import CHUNK, Location, PublishError, check_run_id, open_location, safe_relpath

POINTER = "last_updated.json"
MANIFEST = "manifest.json"
POINTER_READS = 3  # reads of a pointer that is not valid JSON before it counts as broken
MANIFEST_RE = re.compile(r"^manifest(-[0-9a-f]{16})?\.json$")  # what a pointer may name


def manifest_file(data: bytes) -> str:
    """The content-addressed name of a manifest (a new one never replaces what a pointer names)."""
    return f"manifest-{hashlib.sha256(data).hexdigest()[:16]}.json"
# what a reader of the rows needs besides the run id and date, in the run record, both pointers and
# the manifest: the demand's last day, the periods forecast (W: a row is a week's total, dated its
# Monday) and the horizon, the tables' schema version
RUN_FACTS = ("history_end", "freq", "horizon", "schema_version")
RUNS = "runs"
FORMAT = 1


def utc_stamp() -> str:
    """Now, UTC, ISO 8601 with microseconds (orders publishes within a second)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def hive_values(relpath: str) -> dict[str, str]:
    """Partition values (`key=value` folder names) of a relative file path, run_date excluded."""
    out: dict[str, str] = {}
    for seg in PurePosixPath(relpath).parts[:-1]:
        if "=" in seg:
            k, v = seg.split("=", 1)
            if k != "run_date":
                out[k] = v
    return out


def _dumps(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


# ----------------------------------------------------------------------------- the source run


@dataclass(frozen=True)
class SourceFile:
    """One Parquet file of a finished run in a local results folder."""

    kind: str
    # relative to the run folder on the target, named by its content: <kind>/run_date=.../
    # part-00000-<sha256[:16]>.parquet. A run amended after its sync (`nova-ray recommend`) and
    # synced again adds files beside those its current manifest names, never overwrites them
    relpath: str
    local: Path
    size: int
    sha256: str
    rows: int

    def entry(self) -> dict[str, Any]:
        return {"path": self.relpath, "kind": self.kind, "size": self.size, "sha256": self.sha256,
                "rows": self.rows, "partition": hive_values(self.relpath)}


@dataclass
class SourceRun:
    """A finished run found in a local results folder: its record and its files."""

    root: Path
    run_id: str
    record: dict[str, Any]
    model_versions: dict[str, Any]
    files: list[SourceFile]

    @property
    def row_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.kind] = out.get(f.kind, 0) + f.rows
        return out


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PublishError(f"{path}: cannot read {what}: {exc}") from None
    if not isinstance(data, dict):
        raise PublishError(f"{path}: {what} is not a JSON object")
    return data


def record_age(rec: dict[str, Any], path: Path) -> tuple[str, int]:
    """Sort key of run record `rec` read from `path`, oldest first: the run's start
    (`generated_at`, to the second), then when the record was written. Two runs of a date can
    start within one second (a rerun resuming a partial run's checkpoints right after it), and
    the directory's order then picked the date's last run."""
    try:
        written = path.stat().st_mtime_ns
    except OSError:
        written = 0
    return str(rec.get("generated_at") or ""), written


def run_records(meta: Path) -> list[tuple[Path, dict[str, Any] | ValueError | OSError]]:
    """The run records in `meta`/runs, oldest first (`record_age`): each file's path and its
    record, or why it could not be read (an unreadable one counts as the oldest of its age)."""
    found: list[tuple[tuple[str, int], Path, dict[str, Any] | ValueError | OSError]] = []
    for path in (meta / "runs").glob("*.json"):
        rec: dict[str, Any] | ValueError | OSError
        try:
            rec = json.loads(path.read_text())
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            rec = exc
        found.append((record_age(rec if isinstance(rec, dict) else {}, path), path, rec))
    found.sort(key=lambda x: x[0])
    return [(path, rec) for _, path, rec in found]


def recent_runs(meta: Path, n: int = 5) -> list[str]:
    """The ids of the `n` newest run records in `meta`, oldest first: what an error about a run
    that is not there lists."""
    return [path.stem for path, _ in run_records(meta)[-n:]]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def find_run(results: str | Path, run_id: str | None = None) -> SourceRun:
    """The finished run `run_id` (default: the one `metadata/last_updated.json` names) of a results folder.

    Checks that every file of the run's partitions still belongs to the run (Parquet metadata
    `run_id`): a later run on the same run date replaces the partitions of an earlier one.
    """
    root = Path(results).expanduser().resolve()
    meta = root / "metadata"
    if not root.is_dir():
        raise PublishError(f"{root}: results folder not found")
    if run_id is None:
        ptr = meta / POINTER
        if not ptr.exists():
            raise PublishError(f"{root}: no finished run (metadata/{POINTER} missing); run "
                               "`nova-ray forecast` first or pass --run")
        run_id = _read_json(ptr, "run pointer").get("run_id")
        if not run_id:
            raise PublishError(f"{ptr}: no run_id in the pointer")
    check_run_id(run_id)
    rec_path = meta / "runs" / f"{run_id}.json"
    if not rec_path.exists():
        raise PublishError(f"{root}: no run {run_id!r} (metadata/runs/{run_id}.json missing; recent runs: "
                           f"{', '.join(recent_runs(meta)) or 'none'})")
    record = _read_json(rec_path, "run record")
    if record.get("status") != "complete" or record.get("run_id") != run_id:
        raise PublishError(f"{rec_path}: run {run_id} is not complete (status {record.get('status')!r})")
    versions = record.get("model_versions")  # recorded with the run (since 2026-12-05)
    if not isinstance(versions, dict):
        versions_path = meta / "model_versions.json"
        versions = _read_json(versions_path, "model versions") if versions_path.exists() else {}
        if versions.get("run_id") not in (None, run_id):
            versions = {}  # describes a later run
    partitions = record.get("partitions") or {}
    if not isinstance(partitions, dict) or not partitions:
        raise PublishError(f"{rec_path}: run {run_id} lists no partitions")
    files: list[SourceFile] = []
    for kind, part in sorted(partitions.items()):
        rel_dir = safe_relpath(str(part))
        if PurePosixPath(rel_dir).parts[0] != kind:
            raise PublishError(f"{rec_path}: partition {part!r} of kind {kind!r} is outside {kind}/")
        folder = root / rel_dir
        if not folder.is_dir():
            raise PublishError(f"{folder}: missing partition folder of run {run_id}")
        for p in sorted(folder.rglob("*.parquet")):
            if p.name.startswith("."):
                continue
            sha = _sha256_file(p)
            relpath = safe_relpath(p.relative_to(root).with_name(f"{p.stem}-{sha[:16]}{p.suffix}").as_posix())
            try:
                md = pq.read_metadata(p)
            except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
                raise PublishError(f"{p}: unreadable Parquet ({first_line(exc)}): rerun the "
                                   f"date with --force (run {run_id} cannot be published as it is)") from None
            owner = (md.metadata or {}).get(b"run_id")
            if owner is not None and owner.decode() != run_id:
                raise PublishError(f"{p}: holds run {owner.decode()}, not {run_id}: a later run with the "
                                   "same run date replaced it; only the latest run of a date can be synced")
            files.append(SourceFile(kind, relpath, p, p.stat().st_size, sha, md.num_rows))
    run = SourceRun(root, run_id, record, versions, files)
    expected = {k: int(v) for k, v in (record.get("row_counts") or {}).items()}
    if expected and run.row_counts != {k: v for k, v in expected.items() if v}:
        raise PublishError(f"{rec_path}: row counts on disk {run.row_counts} differ from the run record "
                           f"{expected}")
    return run


# ----------------------------------------------------------------------------- sync


@dataclass
class SyncReport:
    """What one sync did."""

    run_id: str
    target: str
    files: int = 0
    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    previous_run_id: str | None = None
    pointer_moved: bool = False
    deleted_runs: list[str] = field(default_factory=list)
    incomplete_runs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


FileHook = Callable[[SourceFile, str], None]


def check_target(loc: Location) -> None:
    """Fail early on a missing bucket or target folder (neither is ever created: a share that is
    not mounted would otherwise be published to the local disk under its mount point, exit 0), a
    target that is a file, or one whose pointer is another project's (`check_pointer`)."""
    if loc.is_local:
        if Path(loc.base).is_file():
            raise PublishError(f"{loc.uri}: is a file, expected a folder")
        if not Path(loc.base).is_dir():
            raise PublishError(f"{loc.uri}: no such folder (sync never creates the target: is the share "
                               "mounted? For a new target, create the folder first)")
    else:
        bucket = loc.base.split("/", 1)[0]
        if loc.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
            raise PublishError(f"s3://{bucket}: bucket not found (sync never creates buckets)")
    check_pointer(loc)


def check_pointer(loc: Location) -> None:
    """PublishError when the target's `last_updated.json` is valid JSON but not a nova-ray pointer
    (no `run_id` or no `format`: another project's, on a shared target): a sync never replaces it.
    One that is not valid JSON (a truncated write) is left to `read_pointer` (a sync replaces it)."""
    raw = loc.read(POINTER)
    if raw is None:
        return
    try:
        data = json.loads(raw)
    except ValueError:
        return
    if not (isinstance(data, dict) and data.get("run_id") and "format" in data):
        raise PublishError(f"{loc.uri}/{POINTER}: holds another project's last_updated.json (no nova-ray "
                           "run_id and format); nothing was written: publish to a folder or prefix of "
                           "nova-ray's own")


def build_manifest(run: SourceRun, published_at: str) -> dict[str, Any]:
    """The manifest of `run` as published: files, sizes, checksums, row counts and run metadata."""
    rec = run.record
    return {
        "format": FORMAT,
        "run_id": run.run_id,
        "run_date": rec.get("run_date"),
        "generated_at": rec.get("generated_at"),
        "model_version": rec.get("model_version"),
        "dataset_id": rec.get("dataset_id"),
        **{k: rec.get(k) for k in RUN_FACTS},
        "published_at": published_at,
        "row_counts": run.row_counts,
        "files": [f.entry() for f in run.files],
        "run": rec,
        "model_versions": run.model_versions,
    }


def _same_manifest(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("published_at",)
    return {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}


def sync_run(
    results: str | Path,
    target: str | Location,
    *,
    run_id: str | None = None,
    endpoint_url: str | None = None,
    keep: int | None = None,
    on_file: FileHook | None = None,
    backwards: bool = True,
) -> SyncReport:
    """Publish a finished run of the results folder `results` to `target` (folder or s3://bucket/prefix).

    Order: data files (skip when present with the same size and sha256, else upload and verify the
    re-read checksum), then `runs/<run_id>/manifest.json`, then the pointer `last_updated.json`, then
    (with `keep`) delete all but the `keep` most recently published complete runs. `on_file(file,
    status)` is called after each file is verified ("uploaded" or "skipped"). With `backwards`
    False (the daily job's backfills) the pointer stays on a published run of a later run date; a
    sync of a chosen run (a roll-back) moves it whatever the date. A target whose pointer is another
    project's is refused before anything is written (`check_pointer`). A step after the pointer
    that fails (the manifest's copy, `keep`) is a warning of the report: the run is published.
    """
    if keep is not None and keep < 1:
        raise PublishError(f"--keep must be >= 1, got {keep}")
    run = find_run(results, run_id)
    loc = target if isinstance(target, Location) else open_location(target, endpoint_url)
    if loc.is_local and Path(loc.base) == run.root:
        raise PublishError(f"{loc.uri}: the target must differ from the results folder")
    check_target(loc)
    report = SyncReport(run.run_id, loc.uri, files=len(run.files))
    try:
        old = read_pointer(loc)
    except PublishError as exc:  # a broken pointer (a truncated write by hand?) is replaced, not kept
        old = None
        report.warnings.append(f"{exc}; it will be replaced")
    report.previous_run_id = old[1].get("run_id") if old else None
    prefix = f"{RUNS}/{run.run_id}"
    for f in run.files:
        rel = f"{prefix}/{f.relpath}"
        if loc.size(rel) == f.size and loc.checksum(rel) == (f.size, f.sha256):
            report.skipped += 1
            status = "skipped"
        else:
            sent = loc.upload(f.local, rel)
            if sent != (f.size, f.sha256):
                raise PublishError(f"{f.local}: changed while syncing (sha256 differs from the scan)")
            back = loc.checksum(rel)
            if back != sent:
                raise PublishError(f"{loc.uri}/{rel}: verification failed (sent {sent}, read back {back})")
            report.uploaded += 1
            report.bytes_uploaded += f.size
            status = "uploaded"
        if on_file is not None:
            on_file(f, status)
    latest_rel = f"{prefix}/{MANIFEST}"  # the run's newest manifest, as a copy
    manifest = build_manifest(run, utc_stamp())
    existing = loc.read(latest_rel)
    try:
        current = json.loads(existing) if existing else None
    except ValueError:
        current = None
    if isinstance(current, dict) and _same_manifest(current, manifest):
        assert existing is not None
        data, manifest = existing, current  # nothing changed: the same manifest, the same pointer
    else:
        data = _dumps(manifest)
    manifest_rel = f"{prefix}/{manifest_file(data)}"
    if loc.read(manifest_rel) != data:  # a new name: the manifest a live pointer names stays as it is
        loc.write_atomic(manifest_rel, data)
        if loc.read(manifest_rel) != data:
            raise PublishError(f"{loc.uri}/{manifest_rel}: verification failed after writing")
    pointer = {
        "format": FORMAT,
        "run_id": run.run_id,
        "run_path": prefix,
        "manifest": manifest_rel,
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "run_date": manifest["run_date"],
        "generated_at": manifest["generated_at"],
        "published_at": manifest["published_at"],
        "model_version": manifest["model_version"],
        "dataset_id": manifest["dataset_id"],
        **{k: manifest.get(k) for k in RUN_FACTS},
        "row_counts": manifest["row_counts"],
        "status": "complete",
    }
    newer = old is not None and str(old[1].get("run_date", "")) > str(pointer["run_date"])
    if newer and not backwards:
        report.warnings.append(f"run {run.run_id} ({pointer['run_date']}) is uploaded, but the pointer stays "
                               f"on the later run {old[1].get('run_id')} ({old[1].get('run_date')})")
    elif old is None or old[1] != pointer:
        loc.write_atomic(POINTER, _dumps(pointer))
        report.pointer_moved = True
    # the run is published: a step that fails from here on is a warning, not a failed sync
    if existing != data:  # only now: a pointer of an older nova-ray names manifest.json itself
        try:
            loc.write_atomic(latest_rel, data)
        except OSError as exc:
            report.warnings.append(f"published; could not write {latest_rel}: {first_line(exc)} (the next "
                                   "sync writes it; until then --keep leaves the run alone)")
    if loc.is_local:
        try:
            _remove_stale_temps(Path(loc.path(prefix)))
        except OSError:
            pass
    if keep is not None:
        try:
            report.deleted_runs, report.incomplete_runs = prune_runs(loc, keep, run.run_id, report.warnings)
        except (OSError, PublishError) as exc:
            report.warnings.append(f"published; --keep {keep} skipped: {first_line(exc)}")
    return report


STALE_TEMP_S = 3600  # an upload's temp file this old is a killed sync's, not one in flight


def _remove_stale_temps(folder: Path) -> None:
    """Upload temp files (`.<name>.tmp-<id>`) that a killed sync left in a run's folder: dataset
    readers skip them, but they stayed until `--keep` pruned the run (never with keep 0)."""
    cutoff = time.time() - STALE_TEMP_S
    for p in folder.rglob(".*.tmp-*"):
        try:
            if p.is_file() and p.stat().st_mtime < cutoff:
                p.unlink()
        except OSError:
            pass


def prune_runs(
    loc: Location, keep: int, current: str, warnings: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Keep `keep` complete runs: `current` and the pointer's run always, then the newest others
    (by run date, then published_at: a backfill published today is older than today's run), the
    newest run of each date before a date's older (superseded) runs, so that `keep` 7 keeps a
    week of dates after a rerun; delete the rest. After a roll-back with `keep` 1 that deletes
    the newer run rolled back from.

    A complete run is a folder named as a run id with nova-ray's manifest.json of that run. Folders
    without a manifest (interrupted syncs) are left alone and returned as incomplete; other folders
    (another project's on a shared target) are left alone too. With `warnings`, those are said there,
    and a run that cannot be deleted is a warning (its data goes before its manifest: the run stays
    complete and the next prune tries again); without, such an error is raised.
    Returns (deleted run ids, incomplete run ids).
    """
    ptr = read_pointer(loc)
    pinned = {current} | ({ptr[1].get("run_id")} if ptr else set())
    complete: list[tuple[tuple[str, str], str]] = []
    incomplete: list[str] = []
    foreign: list[str] = []
    for name in loc.subdirs(RUNS):
        if name in pinned:
            continue
        try:
            check_run_id(name)
        except PublishError:
            foreign.append(name)
            continue
        raw = loc.read(f"{RUNS}/{name}/{MANIFEST}")
        if raw is None:
            incomplete.append(name)
            continue
        try:
            manifest = json.loads(raw)
        except ValueError:
            manifest = None
        if not (isinstance(manifest, dict) and manifest.get("run_id") == name
                and manifest.get("format") == FORMAT):
            foreign.append(name)  # not nova-ray's manifest of this run: another project's folder
            continue
        complete.append(((str(manifest.get("run_date", "")), str(manifest.get("published_at", ""))), name))
    if foreign and warnings is not None:
        warnings.append(f"--keep left alone runs/ folders that are not nova-ray runs: {', '.join(foreign)}")
    complete.sort(reverse=True)
    seen = {str(ptr[1].get("run_date"))} if ptr else set()
    if (raw := loc.read(f"{RUNS}/{current}/{MANIFEST}")) is not None:
        try:
            seen.add(str(json.loads(raw).get("run_date")))
        except (ValueError, AttributeError):
            pass
    newest, superseded = [], []
    for (day, _), name in complete:  # a date's newest run first, then the dates' older runs
        (superseded if day in seen else newest).append(name)
        seen.add(day)
    deleted = []
    for name in (newest + superseded)[max(keep - len(pinned), 0):]:
        try:
            _delete_run(loc, name)
        except OSError as exc:
            if warnings is None:
                raise
            warnings.append(f"published; could not delete old run {name}: {first_line(exc)} (the next "
                            "--keep tries again)")
            continue
        deleted.append(name)
    return deleted, incomplete


def _delete_run(loc: Location, name: str) -> None:
    """Delete the folder of run `name`: its data first, its manifest.json last (what makes it a run
    to prune: a delete that fails leaves a complete run, not an incomplete one kept for ever)."""
    rel = f"{RUNS}/{name}"
    sel = pafs.FileSelector(loc.path(rel), recursive=False, allow_not_found=True)
    for info in loc.fs.get_file_info(sel):
        if info.base_name == MANIFEST:
            continue
        if info.type == pafs.FileType.Directory:
            loc.delete_dir(f"{rel}/{info.base_name}")
        else:
            loc.fs.delete_file(loc.path(f"{rel}/{info.base_name}"))
    loc.delete_dir(rel)


# ----------------------------------------------------------------------------- reading back


def read_pointer(loc: Location) -> tuple[str, dict[str, Any], bytes] | None:
    """The pointer of a served location: ("sync" | "results", parsed, raw bytes), or None if absent.

    A sync target has `last_updated.json` at its root; a results folder has it in `metadata/`.
    """
    for layout, rel in (("sync", POINTER), ("results", f"metadata/{POINTER}")):
        raw = loc.read(rel)
        if raw is not None:
            for attempt in range(POINTER_READS):
                try:
                    data = json.loads(raw)
                    break
                except ValueError as exc:
                    # on S3 a read is a HEAD for the size, then a ranged GET: a pointer replaced
                    # in between comes back cut to the old size. Read again before calling it broken
                    if attempt == POINTER_READS - 1:
                        raise PublishError(f"{loc.uri}/{rel}: pointer is not valid JSON: {exc}") from None
                    time.sleep(0.1 * (attempt + 1))
                    raw = loc.read(rel) or b""
            if not isinstance(data, dict) or not data.get("run_id"):
                raise PublishError(f"{loc.uri}/{rel}: pointer names no run_id")
            check_run_id(str(data["run_id"]))
            return layout, data, raw
    return None


def read_manifest(loc: Location, pointer: dict[str, Any]) -> dict[str, Any]:
    """The manifest a sync-target pointer names, checked against the pointer's sha256."""
    run_id = check_run_id(str(pointer["run_id"]))
    rel = str(pointer.get("manifest") or f"{RUNS}/{run_id}/{MANIFEST}")
    folder, _, name = rel.rpartition("/")
    if folder != f"{RUNS}/{run_id}" or not MANIFEST_RE.match(name):
        raise PublishError(f"pointer names manifest {rel!r}, expected {RUNS}/{run_id}/manifest-<sha>.json")
    raw = loc.read(rel)
    if raw is None:
        raise PublishError(f"{loc.uri}/{rel}: manifest missing")
    want = pointer.get("manifest_sha256")
    if want and hashlib.sha256(raw).hexdigest() != want:
        raise PublishError(f"{loc.uri}/{rel}: manifest sha256 differs from the pointer")
    manifest = json.loads(raw)
    if manifest.get("run_id") != run_id or not isinstance(manifest.get("files"), list):
        raise PublishError(f"{loc.uri}/{rel}: manifest does not describe run {run_id}")
    return manifest


def read_verified(loc: Location, rel: str, size: int, sha256: str) -> bytes:
    """File `rel`, checked against the size and sha256 the manifest recorded."""
    data = loc.read(safe_relpath(rel))
    if data is None:
        raise PublishError(f"{loc.uri}/{rel}: file missing")
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise PublishError(f"{loc.uri}/{rel}: size or sha256 differs from the manifest")
    return data


__all__ = [
    "Location", "PublishError", "SourceFile", "SourceRun", "SyncReport", "build_manifest", "check_pointer",
    "check_run_id", "check_target", "find_run", "hive_values", "open_location", "prune_runs", "read_manifest",
    "read_pointer", "read_verified", "safe_relpath", "sync_run",
]
