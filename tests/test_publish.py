"""`nova-ray sync`: folder and S3 targets (moto over HTTP on loopback), pointer last, resume, --keep."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pytest
from typer.testing import CliRunner

import nova_ray.cli.sync  # noqa: F401  (registers the command)
from nova_ray.cli import app
from nova_ray.io.location import PublishError, open_location
from nova_ray.io.publish import POINTER, STALE_TEMP_S, SourceFile, find_run, read_pointer, sync_run
from nova_ray.io.results import ResultWriter
from nova_ray.schemas import TABLES
from nova_ray.serve.store import RunStore

ITEMS = ["A-1", "B-2", "C-3"]
MODELS = ["naive", "theta", "ensemble"]
DAYS = 5
BUCKET = "nova-results"

RECOMMENDATIONS = pa.schema([("item_id", pa.string()), ("site", pa.string()), ("order_qty", pa.float64()),
                             ("urgency", pa.string())])


def _folder(path: Path) -> Path:
    """A target folder that exists (sync never creates one)."""
    path.mkdir(parents=True, exist_ok=True)
    return path

def write_run(root: Path, run_id: str, run_date: date, value: float, *,
              recommendations: bool = False) -> None:
    """A tiny complete run written with the real ResultWriter; every forecast equals `value`."""
    n = len(ITEMS) * len(MODELS) * DAYS
    fc = pa.table({
        "item_id": [i for i in ITEMS for _ in MODELS for _ in range(DAYS)],
        "model": [m for _ in ITEMS for m in MODELS for _ in range(DAYS)],
        "date": [run_date + timedelta(days=d + 1) for _ in ITEMS for _ in MODELS for d in range(DAYS)],
        "forecast": [value] * n, "lo_80": [value - 1] * n, "hi_80": [value + 1] * n,
        "lo_95": [value - 2] * n, "hi_95": [value + 2] * n,
    })
    k = len(ITEMS) * 2
    metrics = pa.table({
        "item_id": [i for i in ITEMS for _ in range(2)], "model": ["naive", "theta"] * len(ITEMS),
        "window": [0] * k, "mae": [1.0] * k, "rmse": [1.0] * k, "smape": [float("nan")] * k,
        "mape": [1.0] * k, "mase": [1.0] * k, "bias": [0.0] * k, "wape": [1.0] * k, "coverage_80": [0.8] * k,
        "coverage_95": [0.95] * k, "n": [DAYS] * k,
    })
    weights = pa.table({"item_id": [i for i in ITEMS for _ in range(2)],
                        "model": ["naive", "theta"] * len(ITEMS), "weight": [0.5] * k,
                        "backtest_mae": [1.0] * k, "windows": [1] * k})
    items = pa.table({
        "item_id": ITEMS, "demand_class": ["smooth", "lumpy", "smooth"], "adi": [1.0] * 3, "cv2": [0.1] * 3,
        "n_obs": [100] * 3, "zero_share": [0.0] * 3, "models": ["naive,theta"] * 3, "failed_models": [""] * 3,
        "fallback": [False] * 3, "notes": [""] * 3, "params": ["{}"] * 3, "cpu_seconds": [0.1] * 3,
    })
    meta = {"run_id": run_id, "model_version": "test", "generated_at": f"{run_date}T06:00:00+00:00",
            "dataset_id": "tiny"}
    with pytest.MonkeyPatch.context() as mp:
        if recommendations:
            mp.setitem(TABLES, "recommendations", (RECOMMENDATIONS, None))
        w = ResultWriter(root, run_id, run_date, meta)
        tables = {"forecasts": fc, "metrics": metrics, "ensemble_weights": weights, "items": items}
        for kind, t in tables.items():
            w.write(kind, t)
        if recommendations:
            w.write("recommendations", pa.table({
                "item_id": ["A-1", "B-2", "C-3", "A-1"], "site": ["SSA", "SSA", "REC", "REC"],
                "order_qty": [10.0, 0.0, 5.0, 3.0], "urgency": ["high", "none", "critical", "low"]}))
        w.commit({"run_id": run_id, "models": MODELS}, {"items": len(ITEMS)})


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three runs on three dates (each in its own results folder) plus the run ids."""
    base = tmp_path_factory.mktemp("results")
    out = {}
    for n, (rid, day) in enumerate([("20250101-aaaa", date(2025, 1, 1)), ("20250102-bbbb", date(2025, 1, 2)),
                                    ("20250103-cccc", date(2025, 1, 3))]):
        write_run(base / rid, rid, day, float(n + 1), recommendations=n == 1)
        out[rid] = base / rid
    return out


A, B, C = "20250101-aaaa", "20250102-bbbb", "20250103-cccc"


def test_folder_sync_layout_manifest_pointer(runs: dict[str, Path], tmp_path: Path) -> None:
    target = _folder(tmp_path / "shared")
    report = sync_run(runs[A], target)
    assert (report.run_id, report.skipped, report.pointer_moved) == (A, 0, True)
    assert report.uploaded == report.files == len(MODELS) + 3
    files = files_under(target)
    assert not [f for f in files if ".tmp" in f]
    data_files = {f"runs/{A}/{f.relpath}" for f in find_run(runs[A]).files}
    pointer = json.loads(files[POINTER])
    named = pointer["manifest"]  # content-addressed: runs/<id>/manifest-<sha256[:16]>.json
    assert named == f"runs/{A}/manifest-{hashlib.sha256(files[named]).hexdigest()[:16]}.json"
    assert set(files) == {POINTER, named, f"runs/{A}/manifest.json"} | data_files
    assert files[named] == files[f"runs/{A}/manifest.json"]  # the run's newest manifest, copied
    naive = f"runs/{A}/forecasts/run_date=2025-01-01/model=naive/part-00000-"  # + its sha256[:16]
    (name,) = [f for f in files if f.startswith(naive)]
    assert name == naive + hashlib.sha256(files[name]).hexdigest()[:16] + ".parquet"
    manifest = json.loads(files[f"runs/{A}/manifest.json"])
    assert pointer["run_path"] == f"runs/{A}" and pointer["run_id"] == A
    assert pointer["manifest_sha256"] == hashlib.sha256(files[f"runs/{A}/manifest.json"]).hexdigest()
    assert manifest["row_counts"] == {"forecasts": 45, "metrics": 6, "ensemble_weights": 6, "items": 3}
    for entry in manifest["files"]:
        data = files[f"runs/{A}/{entry['path']}"]
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["size"], entry["sha256"])
    assert manifest["run"]["status"] == "complete" and manifest["model_versions"]["run_id"] == A
    # readers resolve pointer -> manifest -> files
    store = RunStore(str(target))
    assert store.refresh() and store.current is not None
    assert store.current.run_id == A and store.current.kinds["forecasts"].table.num_rows == 45
    assert store.current.kinds["metrics"].table.column("smape").null_count == 6  # NaN served as null
    # a second sync of the same run changes nothing
    again = sync_run(runs[A], target)
    assert (again.uploaded, again.skipped, again.pointer_moved) == (0, again.files, False)
    assert files_under(target) == files


def test_interrupted_sync_keeps_previous_run_and_rerun_completes(runs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    before = (target / POINTER).read_bytes()
    total = len(find_run(runs[B]).files)
    seen: list[str] = []

    def crash_halfway(f: SourceFile, status: str) -> None:
        seen.append(status)
        if len(seen) == total // 2:
            raise ConnectionError("network went away")

    with pytest.raises(ConnectionError):
        sync_run(runs[B], target, keep=1, on_file=crash_halfway)
    assert (target / POINTER).read_bytes() == before
    assert not (target / "runs" / B / "manifest.json").exists()
    assert (target / "runs" / A / "manifest.json").exists()  # --keep never ran
    store = RunStore(str(target))
    store.refresh()
    assert store.current is not None and store.current.run_id == A
    report = sync_run(runs[B], target, keep=1)
    assert report.skipped == total // 2 and report.uploaded == total - total // 2
    assert report.previous_run_id == A and report.deleted_runs == [A]
    assert store.refresh() and store.current.run_id == B
    assert "recommendations" in store.current.kinds


def test_an_amended_run_synced_again_and_killed_before_the_pointer_stays_readable(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`recommend` then `sync` of the published run writes a second manifest beside the first
    (named by its content): killed before the pointer, the target still serves the run as it was
    (the manifest the pointer names was overwritten in place: 503 for every reader until a rerun)."""
    from nova_ray.io import location
    from nova_ray.io.recommendations import amend_run

    target = _folder(tmp_path / "shared")
    sync_run(runs[B], target)
    first = json.loads((target / POINTER).read_text())
    monkeypatch.setitem(TABLES, "recommendations", (RECOMMENDATIONS, None))
    amend_run(runs[B], B, "2025-01-02", "recommendations",
              pa.table({"item_id": ["A-1"], "site": ["SSA"], "order_qty": [99.0], "urgency": ["high"]}),
              {"run_id": B})
    write = location.Location.write_atomic

    def killed_at_the_pointer(self, rel: str, data: bytes) -> None:
        if rel == POINTER:
            raise KeyboardInterrupt  # the process dies here
        write(self, rel, data)

    monkeypatch.setattr(location.Location, "write_atomic", killed_at_the_pointer)
    with pytest.raises(KeyboardInterrupt):
        sync_run(runs[B], target)
    monkeypatch.setattr(location.Location, "write_atomic", write)
    assert json.loads((target / POINTER).read_text()) == first
    store = RunStore(str(target))
    assert store.refresh() and store.current.kinds["recommendations"].table.num_rows == 4  # as it was
    version = store.current.version
    report = sync_run(runs[B], target)  # the rerun publishes the amendment
    assert report.pointer_moved
    assert json.loads((target / POINTER).read_text())["manifest"] != first["manifest"]
    assert store.refresh() and store.current.kinds["recommendations"].table.num_rows == 1
    assert store.current.run_id == B and store.current.version != version  # pages can tell
    assert (target / first["manifest"]).exists()  # a reader of the old pointer still finds its manifest


def test_a_backfill_publishes_its_own_model_versions_and_resyncs_change_nothing(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """The run record carries the run's model versions: a run that is not the folder's latest
    (a backfill, a roll-back) publishes them too, and syncing it again after a later run rewrites
    neither its manifest nor the pointer (they came out empty, so the manifest changed)."""
    root = tmp_path / "results"
    write_run(root, B, date(2025, 1, 2), 1.0)
    target = _folder(tmp_path / "shared")
    sync_run(root, target)
    before = files_under(target)
    write_run(root, C, date(2025, 1, 3), 2.0)  # a later run: metadata/model_versions.json is its
    again = sync_run(root, target, run_id=B)
    assert (again.uploaded, again.pointer_moved) == (0, False) and files_under(target) == before
    write_run(root, A, date(2025, 1, 1), 3.0)  # a backfill: the folder's versions file stays C's
    sync_run(root, target, run_id=A)
    manifest = json.loads((target / "runs" / A / "manifest.json").read_text())
    assert manifest["model_versions"]["run_id"] == A


def test_a_killed_upload_leaves_no_file_a_dataset_reader_sees(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder upload writes a dot-named temp file: one left by a kill (simulated: the clean-up
    skipped) is not read by pyarrow's dataset discovery (it was: twice the rows), and the next sync
    of the run removes it (it stayed until --keep pruned the run)."""
    import pyarrow.dataset as ds

    from nova_ray.io import location

    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    monkeypatch.setattr(location, "_remove_quietly", lambda path: None)
    monkeypatch.setattr(location, "_fsync", lambda path: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        sync_run(runs[B], target)
    left = [p for p in (target / "runs" / B).rglob("*tmp*")]
    assert left and all(p.name.startswith(".") for p in left)
    folder = left[0].parent
    assert ds.dataset(folder, format="parquet").to_table().num_rows == 0  # only the temp file is there
    # the next sync of the run removes a killed sync's temp files (an hour old: not one in flight)
    monkeypatch.undo()
    import os

    old = left[0].stat().st_mtime - STALE_TEMP_S - 1
    os.utime(left[0], (old, old))
    sync_run(runs[B], target)
    assert not [p for p in (target / "runs" / B).rglob("*tmp*")]


def test_a_pointer_read_while_it_is_replaced_is_read_again(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 a read is a HEAD, then a ranged GET: a pointer replaced in between comes back cut
    short. It is read again before it counts as broken; a pointer that is gone while a run is served
    shows in /health's last_error (it said nothing)."""
    from nova_ray.io import location

    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    loc = open_location(str(target))
    read = location.Location.read
    cut = iter([True])

    def cut_once(self, rel: str) -> bytes | None:
        data = read(self, rel)
        return data[:20] if rel == POINTER and data and next(cut, False) else data

    monkeypatch.setattr(location.Location, "read", cut_once)
    assert read_pointer(loc)[1]["run_id"] == A
    monkeypatch.setattr(location.Location, "read", read)
    store = RunStore(str(target))
    assert store.refresh() and store.last_checked_at
    (target / POINTER).unlink()
    assert not store.refresh() and store.current.run_id == A
    assert "is gone; still serving run " + A in store.last_error


def test_corrupt_target_file_is_replaced_on_rerun(runs: dict[str, Path], tmp_path: Path) -> None:
    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    victim = next((target / "runs" / A / "forecasts").rglob("*.parquet"))
    victim.write_bytes(b"garbage")
    store = RunStore(str(target), poll_seconds=0.05)
    assert not store.refresh() and "sha256" in (store.last_error or "")
    report = sync_run(runs[A], target)
    assert report.uploaded == 1 and not report.pointer_moved
    time.sleep(0.15)  # the same pointer is tried again after a pause (twice the poll interval)
    assert store.refresh() and store.current is not None and store.current.run_id == A


def test_a_broken_pointer_or_manifest_on_the_target_never_blocks_a_sync(
    runs: dict[str, Path], tmp_path: Path, held_elsewhere
) -> None:
    """A truncated pointer is replaced (with a warning), a manifest that is no object is left alone
    by the pruning (with a warning: not nova-ray's); while a job holds the results folder, `sync`
    exits 3."""
    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    (target / POINTER).write_text('{"run_id": "2024')
    (target / "runs" / "20240101-odd").mkdir(parents=True)
    (target / "runs" / "20240101-odd" / "manifest.json").write_text("[]")
    report = sync_run(runs[B], target, keep=1)
    assert report.pointer_moved and report.previous_run_id is None
    assert len(report.warnings) == 2 and "pointer is not valid JSON" in report.warnings[0]
    assert report.warnings[1] == "--keep left alone runs/ folders that are not nova-ray runs: 20240101-odd"
    assert json.loads((target / POINTER).read_text())["run_id"] == B
    assert report.deleted_runs == [A] and (target / "runs" / "20240101-odd" / "manifest.json").is_file()
    with held_elsewhere(runs[C]):
        res = CliRunner().invoke(app, ["sync", "--to", str(target), "--results", str(runs[C])])
    assert res.exit_code == 3 and "another nova-ray job is running" in res.output
    assert json.loads((target / POINTER).read_text())["run_id"] == B


def test_keep_deletes_oldest_only_after_pointer_moved(runs: dict[str, Path], tmp_path: Path) -> None:
    target = _folder(tmp_path / "shared")
    for rid in (A, B):
        sync_run(runs[rid], target)
    (target / "runs" / "20240101-partial").mkdir()  # an interrupted sync: no manifest
    report = sync_run(runs[C], target, keep=2)
    assert report.deleted_runs == [A] and report.incomplete_runs == ["20240101-partial"]
    assert sorted(p.name for p in (target / "runs").iterdir()) == ["20240101-partial", B, C]
    assert json.loads((target / POINTER).read_text())["run_id"] == C
    # rolling back to an older run keeps it, even with --keep 1
    report = sync_run(runs[B], target, keep=1)
    assert report.pointer_moved and report.deleted_runs == [C]
    with pytest.raises(PublishError, match="--keep"):
        sync_run(runs[B], target, keep=0)


def test_keep_counts_dates_before_a_dates_superseded_runs(tmp_path: Path) -> None:
    """After a rerun of a date, `--keep 3` keeps three dates (the rerun took a slot from the oldest
    date before: no run of the day before to roll back to)."""
    from nova_ray.io.publish import prune_runs

    target = _folder(tmp_path / "shared")
    runs = {"d1": ("2026-12-01", "t1"), "d2": ("2026-12-02", "t2"), "d3a": ("2026-12-03", "t3"),
            "d3b": ("2026-12-03", "t4"), "d4": ("2026-12-04", "t5")}
    for rid, (day, at) in runs.items():
        (target / "runs" / rid).mkdir(parents=True)
        manifest = {"format": 1, "run_id": rid, "run_date": day, "published_at": at}
        (target / "runs" / rid / "manifest.json").write_text(json.dumps(manifest))
    (target / POINTER).write_text(json.dumps({"run_id": "d4", "run_date": "2026-12-04"}))
    deleted, _ = prune_runs(open_location(str(target)), 3, "d4")
    assert sorted(deleted) == ["d1", "d3a"]  # d4 (pinned), d3b (newest of its date), d2 kept


def test_results_folder_problems_are_one_line_errors(runs: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(PublishError, match="no finished run"):
        sync_run(tmp_path, _folder(tmp_path / "t"))
    with pytest.raises(PublishError, match="invalid run id"):
        sync_run(runs[A], _folder(tmp_path / "t"), run_id="../etc")
    with pytest.raises(PublishError, match="no run 'nope'"):
        sync_run(runs[A], _folder(tmp_path / "t"), run_id="nope")
    with pytest.raises(PublishError, match="unsupported location"):
        sync_run(runs[A], "ftp://host/x")
    with pytest.raises(PublishError, match="must differ"):
        sync_run(runs[A], runs[A])
    # a second run on the same date replaces the first one's partitions: the first cannot be synced
    root = tmp_path / "same-day"
    write_run(root, "20250101-first", date(2025, 1, 1), 1.0)
    write_run(root, "20250101-second", date(2025, 1, 1), 2.0)
    with pytest.raises(PublishError, match="holds run 20250101-second"):
        sync_run(root, _folder(tmp_path / "t"), run_id="20250101-first")
    assert sync_run(root, _folder(tmp_path / "t")).run_id == "20250101-second"
    # a truncated file of the run: one line naming it and what to do (it was a traceback)
    part = next((root / "forecasts").rglob("*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    with pytest.raises(PublishError, match=rf"^{part}: unreadable Parquet \(.*\): rerun the date with "):
        sync_run(root, _folder(tmp_path / "t2"))
    # a target folder that does not exist is never created (an unmounted share)
    with pytest.raises(PublishError, match=r"no such folder \(sync never creates the target: is the share"):
        sync_run(runs[A], tmp_path / "mnt" / "share")
    assert not (tmp_path / "mnt").exists()


def test_cli_sync(runs: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    t = str(_folder(tmp_path / "t"))
    res = runner.invoke(app, ["sync", "--to", t, "--results", str(runs[A]), "--keep", "3"])
    assert res.exit_code == 0, res.output
    assert f"published run {A}" in res.output and "pointer moved" in res.output
    res = runner.invoke(app, ["sync", "--to", t, "--results", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "results folder not found" in res.output
    res = runner.invoke(app, ["sync", "--to", t, "--results", str(runs[A]), "--keep", "0"])
    assert res.exit_code == 0 and "deleted runs" not in res.output  # 0: keep all, as `run --keep 0`
    res = runner.invoke(app, ["sync", "--to", t, "--results", str(runs[A]), "--keep", "-1"])
    assert res.exit_code == 2


# ----------------------------------------------------------------------------- S3 over HTTP (moto)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    return s3_endpoint


def _keys(endpoint: str, prefix: str) -> list[str]:
    client = boto3.client("s3", endpoint_url=endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def test_s3_sync_interrupt_resume_keep_and_serve(runs: dict[str, Path], s3: str) -> None:
    uri = f"s3://{BUCKET}/prod/nova"
    report = sync_run(runs[A], uri, endpoint_url=s3)
    assert report.uploaded == report.files and report.pointer_moved
    keys = _keys(s3, "prod/nova/")
    assert "prod/nova/last_updated.json" in keys and f"prod/nova/runs/{A}/manifest.json" in keys
    theta = f"prod/nova/runs/{A}/forecasts/run_date=2025-01-01/model=theta/part-00000-"
    assert len([k for k in keys if k.startswith(theta) and k.endswith(".parquet")]) == 1
    client = boto3.client("s3", endpoint_url=s3)
    pointer = json.loads(client.get_object(Bucket=BUCKET, Key="prod/nova/last_updated.json")["Body"].read())
    assert pointer["run_id"] == A and pointer["run_path"] == f"runs/{A}"
    assert not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")

    total = len(find_run(runs[B]).files)
    calls: list[str] = []

    def crash(f: SourceFile, status: str) -> None:
        calls.append(f.relpath)
        if len(calls) == total // 2:
            raise OSError("connection reset")

    with pytest.raises(OSError):
        sync_run(runs[B], uri, endpoint_url=s3, keep=1, on_file=crash)
    loc = open_location(uri, s3)
    found = read_pointer(loc)
    assert found is not None and found[0] == "sync" and found[1]["run_id"] == A
    store = RunStore(loc)
    assert store.refresh() and store.current is not None and store.current.run_id == A

    report = sync_run(runs[B], uri, endpoint_url=s3, keep=1)
    assert (report.skipped, report.deleted_runs) == (total // 2, [A])
    assert not [k for k in _keys(s3, "prod/nova/") if f"/runs/{A}/" in k]
    assert store.refresh() and store.current.run_id == B
    t = store.current.select("forecasts", item_ids=["B-2"], equals={"model": "naive"})
    assert t.num_rows == DAYS and set(t.column("forecast").to_pylist()) == {2.0}


def test_an_interrupted_s3_pointer_write_keeps_the_last_pointer(s3: str) -> None:
    """pyarrow's S3 stream completes its upload when an exception closes it: a Ctrl-C while the
    pointer was written put what was sent so far (nothing) in place of the valid pointer, and no
    reader found a run until the next sync. The pointer is written to a temp object and copied
    into place: interrupted, the last pointer stays, and no temp object is left."""
    import dataclasses

    loc = open_location(f"s3://{BUCKET}/atomic", endpoint_url=s3)
    loc.write_atomic(POINTER, b'{"run_id": "A"}')

    class Stream:
        def __init__(self, inner) -> None:
            self.inner = inner

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.inner.close()  # as pyarrow's own stream does, on an exception too

        def write(self, data: bytes) -> None:
            raise KeyboardInterrupt

    class Interrupted:
        def __init__(self, fs) -> None:
            self.fs = fs

        def __getattr__(self, name: str):
            return getattr(self.fs, name)

        def open_output_stream(self, path: str):
            return Stream(self.fs.open_output_stream(path))

    broken = dataclasses.replace(loc, fs=Interrupted(loc.fs))
    with pytest.raises(KeyboardInterrupt):
        broken.write_atomic(POINTER, b'{"run_id": "B"}')
    objects = lambda: [k for k in _keys(s3, "atomic/") if not k.endswith("/")]  # noqa: E731 - pyarrow's folder marker aside
    assert loc.read(POINTER) == b'{"run_id": "A"}' and objects() == ["atomic/last_updated.json"]
    loc.write_atomic(POINTER, b'{"run_id": "B"}')
    assert loc.read(POINTER) == b'{"run_id": "B"}' and objects() == ["atomic/last_updated.json"]


def test_s3_errors(runs: dict[str, Path], s3: str) -> None:
    with pytest.raises(PublishError, match="bucket not found"):
        sync_run(runs[A], "s3://no-such-bucket/x", endpoint_url=s3)
    with pytest.raises(PublishError, match="valid bucket"):
        open_location("s3://")
    with pytest.raises(PublishError, match="endpoint URL"):
        open_location(f"s3://{BUCKET}/x", "minio:9000")
    res = CliRunner().invoke(app, ["sync", "--to", "s3://no-such-bucket/x", "--results", str(runs[A]),
                                   "--endpoint-url", s3])
    assert res.exit_code == 2 and "bucket not found" in res.output
    assert "testing-secret" not in res.output


def test_the_server_loads_only_the_tables_it_serves(runs: dict[str, Path], tmp_path: Path) -> None:
    """The ensemble weights (and a full run's backtests, its bulk) stay on the target and in the
    results folder: no endpoint serves them, so the serving box does not hold them."""
    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    assert "ensemble_weights" in find_run(runs[A]).row_counts
    for source in (str(target), str(runs[A])):  # a sync target, a results folder
        store = RunStore(source)
        assert store.refresh() and store.current is not None
        assert set(store.current.kinds) == {"forecasts", "metrics", "items"}


def test_sync_takes_the_endpoint_as_forecast_and_run_do(runs: dict[str, Path], s3: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`sync` and `serve` bound --endpoint-url to AWS_ENDPOINT_URL, so with both variables set they
    went to AWS_ENDPOINT_URL's host while `forecast --data s3://` went to AWS_ENDPOINT_URL_S3's (as
    documented); and they ignored `[publish] endpoint_url` and `keep`: a roll-back by hand under
    `run`'s config went to AWS itself."""
    uri = f"s3://{BUCKET}/cli/nova"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    res = CliRunner().invoke(app, ["sync", "--to", uri, "--results", str(runs[A]), "-q"])
    assert res.exit_code == 0, res.output
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = tmp_path / "nova.toml"
    config.write_text(f'[publish]\nendpoint_url = "{s3}"\nkeep = 1\n')
    res = CliRunner().invoke(app, ["sync", "--to", uri, "--results", str(runs[B]), "--config", str(config)])
    assert res.exit_code == 0, res.output
    assert f"published run {B}" in res.output
    assert not [k for k in _keys(s3, "cli/nova/") if f"/runs/{A}/" in k]  # the config's keep = 1
    res = CliRunner().invoke(app, ["sync", "--to", uri, "--results", str(runs[A]), "--config", str(config),
                                   "--keep", "0", "-q"])  # 0: keep all, as `run --keep 0`
    assert res.exit_code == 0, res.output
    assert {k.split("/")[3] for k in _keys(s3, "cli/nova/runs/")} - {""} == {A, B}


def test_a_run_that_is_not_there_lists_the_newest_runs_by_age(tmp_path: Path) -> None:
    """The error named the last five run ids by name: within a date their suffix is random, and
    the newest runs could be left out. Now by the records' age (`record_age`), in sync and report."""
    from nova_ray.report.runs import ReportError, find_record

    runs = tmp_path / "metadata" / "runs"
    runs.mkdir(parents=True)
    ids = ["20261127-ffff", "20261127-0000", "20261127-eeee", "20261127-1111", "20261127-dddd",
           "20261127-2222"]  # started in this order, a minute apart
    for minute, rid in enumerate(ids):
        (runs / f"{rid}.json").write_text(json.dumps(
            {"run_id": rid, "status": "complete", "generated_at": f"2026-11-27T03:0{minute}:00+00:00"}))
    newest = ", ".join(ids[1:])
    with pytest.raises(PublishError, match=f"recent runs: {newest}\\)"):
        find_run(tmp_path, "20261127-9999")
    with pytest.raises(ReportError, match=f"recent runs: {newest}\\)"):
        find_record(tmp_path, "20261127-9999")


def test_keep_deletes_only_nova_ray_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    """`--keep` counted every runs/<name>/ with a manifest.json as a run: another project's folder
    on a shared target (a manifest of its own) sorted oldest and was deleted. Only a folder named
    as a run id whose manifest is nova-ray's (format, run_id = the folder's name) is pruned; the
    others are left alone, with a warning."""
    target = _folder(tmp_path / "shared")
    sync_run(runs[A], target)
    exp = target / "runs" / "exp-42"
    exp.mkdir()
    (exp / "manifest.json").write_text('{"experiment": "exp-42"}')
    (exp / "model.bin").write_bytes(b"weights")
    copy = target / "runs" / "copy-of-a"  # nova-ray's manifest, but of another folder's run
    copy.mkdir()
    (copy / "manifest.json").write_bytes((target / "runs" / A / "manifest.json").read_bytes())
    odd = target / "runs" / "not a run"  # no run id: never nova-ray's
    odd.mkdir()
    (odd / "manifest.json").write_text(json.dumps({"format": 1, "run_id": "not a run", "run_date": "2000"}))
    theirs = {**files_under(exp), **files_under(copy), **files_under(odd)}
    report = sync_run(runs[B], target, keep=1)
    assert report.pointer_moved and report.deleted_runs == [A]
    assert sorted(p.name for p in (target / "runs").iterdir()) == [B, "copy-of-a", "exp-42", "not a run"]
    assert {**files_under(exp), **files_under(copy), **files_under(odd)} == theirs
    assert [w for w in report.warnings if "not nova-ray runs" in w] == [
        "--keep left alone runs/ folders that are not nova-ray runs: copy-of-a, exp-42, not a run"]


def test_a_pointer_of_another_project_is_refused(runs: dict[str, Path], tmp_path: Path) -> None:
    """A valid JSON last_updated.json that is not nova-ray's (another tool's, on a shared target)
    was replaced with only a warning, as a truncated one is. Now the sync is refused before it
    writes anything (`sync` exits 2); a truncated pointer is still replaced."""
    target = _folder(tmp_path / "shared")
    (target / "runs" / "exp-42").mkdir(parents=True)
    (target / "runs" / "exp-42" / "manifest.json").write_text('{"experiment": "exp-42"}')
    for theirs in ({"last_update": "2026-12-01", "source": "other-etl"}, {"run_id": "x"}, ["a", "b"], 7):
        (target / POINTER).write_text(json.dumps(theirs))
        before = files_under(target)
        with pytest.raises(PublishError, match=rf"^{target}/{POINTER}: holds another project's "
                           "last_updated.json .*nothing was written"):
            sync_run(runs[A], target, keep=1)
        assert files_under(target) == before
    res = CliRunner().invoke(app, ["sync", "--to", str(target), "--results", str(runs[A]), "--keep", "1"])
    assert res.exit_code == 2 and "holds another project's last_updated.json" in res.output
    assert files_under(target) == before


def test_a_run_not_deleted_by_keep_is_a_warning_of_a_published_run(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that refuses to delete an old run's file (a bucket without DeleteObject, an
    immutable file) failed the sync after the pointer moved, as if nothing was published, and
    the manifest was deleted first: the old run was "incomplete" ever after. Now it is a warning,
    the run's data goes before its manifest, and the next --keep deletes what is left."""
    from nova_ray.io import location

    target = _folder(tmp_path / "shared")
    for rid in (A, B):
        sync_run(runs[rid], target)
    delete_dir = location.Location.delete_dir

    def refuse(self: location.Location, rel: str) -> None:
        if rel.startswith(f"runs/{A}"):
            raise PermissionError(13, "Permission denied", self.path(rel))
        delete_dir(self, rel)

    monkeypatch.setattr(location.Location, "delete_dir", refuse)
    report = sync_run(runs[C], target, keep=1)
    assert report.pointer_moved and report.deleted_runs == [B] and not report.incomplete_runs
    assert json.loads((target / POINTER).read_text())["run_id"] == C
    (warning,) = report.warnings
    assert warning.startswith(f"published; could not delete old run {A}: ") and "Permission denied" in warning
    assert (target / "runs" / A / "manifest.json").is_file()  # still a complete run: retried next time
    # a step after the pointer that fails (the manifest's copy) is a warning too, not a failed publish
    write_atomic = location.Location.write_atomic

    def no_copy(self: location.Location, rel: str, data: bytes) -> None:
        if rel.endswith("/manifest.json"):
            raise PermissionError(13, "Permission denied", self.path(rel))
        write_atomic(self, rel, data)

    monkeypatch.setattr(location.Location, "write_atomic", no_copy)
    (target / "runs" / C / "manifest.json").unlink()
    report = sync_run(runs[C], target, keep=1)
    assert any(w.startswith(f"published; could not write runs/{C}/manifest.json: ") for w in report.warnings)
    monkeypatch.undo()
    report = sync_run(runs[C], target, keep=1)
    assert report.deleted_runs == [A] and not report.warnings
    assert sorted(p.name for p in (target / "runs").iterdir()) == [C]
