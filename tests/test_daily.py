"""`nova-ray run`: etl, forecast, recommendations and publish for a date; idempotent; locked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nova_ray.cli import app
from nova_ray.io.lock import LockedError, job_lock

runner = CliRunner()


@pytest.fixture()
def env(monkeypatch, tmp_path: Path, small_demo: Path) -> Path:
    for key, value in {
        "MODELS": "naive,theta",
        "HORIZON": "7",
        "BACKTEST_WINDOWS": "1",
        "OUTPUT": str(tmp_path / "out"),
        "RAW": str(small_demo / "raw"),
        "PROCESSED": str(tmp_path / "processed"),
        "MODELS_DIR": str(tmp_path / "models"),
    }.items():
        monkeypatch.setenv(f"NOVA_RAY_{key}", value)
    return tmp_path


def _run(small_demo: Path, target: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "run",
            "--date",
            "2026-11-27",
            "--data",
            str(small_demo / "demand.parquet"),
            "--to",
            str(target),
            "--num-cpus",
            "2",
            "-q",
            *extra,
        ],
    )


def test_daily_run_publishes_and_is_idempotent(env: Path, small_demo: Path, ray_session) -> None:
    target = env / "shared"
    target.mkdir()  # sync never creates its target
    res = _run(small_demo, target)
    assert res.exit_code == 0, res.output
    assert "etl" in res.output and "features" in res.output
    assert (env / "processed" / "features.parquet").exists()
    pointer = json.loads((target / "last_updated.json").read_text())
    first = json.loads((env / "out" / "metadata" / "last_updated.json").read_text())
    assert first["run_date"] == "2026-11-27" and first["run_id"] in json.dumps(pointer)
    assert "recommendations" in first["row_counts"]
    # the run's warnings reach the cron log (they were only in the run's log file), as does its path
    text = " ".join(res.output.split())
    assert "warning:" in text and "days before the run date 2026-11-27" in text
    assert "models 0 items reused stored model choices; " in text and "fitted cold: no stored models" in text
    assert f"log {env / 'out' / 'logs'}" in text

    log = next(p for p in (env / "out" / "logs").glob("run-*.log"))
    lines = log.read_text()  # one log for the whole job: its steps, the forecast's lines, the publish
    assert "step etl: " in lines and "fitted on " in lines and "step publish: " in lines
    assert lines.index("step etl: ") < lines.index("fitted on ") < lines.index("step publish: ")

    again = _run(small_demo, target)
    assert again.exit_code == 0 and "skipped" in again.output and first["run_id"] in again.output
    logs = sorted((env / "out" / "logs").glob("run-*.log"), key=lambda p: p.stat().st_mtime)
    assert len(logs) == 2 and "step forecast: skipped: " in logs[-1].read_text()  # a skipped run logs too
    assert f"log {logs[-1]}" in " ".join(again.output.split())
    assert (
        json.loads((env / "out" / "metadata" / "last_updated.json").read_text())["run_id"] == first["run_id"]
    )

    forced = _run(small_demo, target, "--force", "--keep-local", "1")
    assert forced.exit_code == 0, forced.output
    assert "prune kept all 1 run date log" in " ".join(forced.output.split())
    assert "models 12 items reused stored model choices" in " ".join(forced.output.split())
    assert (
        json.loads((env / "out" / "metadata" / "last_updated.json").read_text())["run_id"] != first["run_id"]
    )
    cold = _run(small_demo, target, "--full-refit")  # the daily job can fit every item cold too
    assert cold.exit_code == 0, cold.output
    said = " ".join(cold.output.split())
    assert "models 0 items reused stored model choices; 12 fitted cold: --full-refit" in said


class _StopAt:
    """A progress that interrupts the run (as Ctrl-C would) when it reaches `stage`."""

    def __init__(self, stage: str) -> None:
        self.at = stage

    def stage(self, name: str, total: int | None = None) -> None:
        if name == self.at:
            raise KeyboardInterrupt

    def advance(self, n: int = 1) -> None:
        pass


def test_a_killed_daily_run_resumes_and_forgotten_stages_go(env: Path, small_demo: Path, ray_session) -> None:
    """The nightly job killed after its fit goes on from its checkpoints when rerun (`run` has no
    --resume: every fit was redone); an interrupted run's stage that nobody resumed for a week
    is removed by the next run on that output instead of keeping its checkpoints for good."""
    import os
    import time
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    forgotten = Path(cfg.paths.output) / ".staging" / "0123456789abcdef"
    (forgotten / "checkpoints" / "done").mkdir(parents=True)
    (forgotten / "run.json").write_text("{}")
    week_ago = time.time() - 8 * 86400
    for p in (forgotten / "checkpoints" / "done", forgotten / "run.json", forgotten):
        os.utime(p, (week_ago, week_ago))
    with pytest.raises(KeyboardInterrupt):
        run_daily(cfg, date(2026, 11, 27), progress=_StopAt("ensemble and metrics"))
    assert not forgotten.exists()
    report = run_daily(cfg, date(2026, 11, 27))
    assert report.summary["resumed_items"] == report.summary["items"] > 0
    assert not (Path(cfg.paths.output) / ".staging").exists()  # committed: no stage left


def test_two_jobs_never_overlap(env: Path, small_demo: Path, held_elsewhere) -> None:
    with held_elsewhere(env / "out"):
        res = _run(small_demo, env / "shared")
        forecast = runner.invoke(
            app, ["forecast", "--data", str(small_demo / "demand.parquet"), "--no-ray", "-q"]
        )
    assert res.exit_code == 3
    assert "another nova-ray job is running" in res.output
    assert not (env / "shared").exists()
    # a forecast into the same results folder waits for no one either: it stops before fitting
    assert forecast.exit_code == 3, forecast.output
    assert "another nova-ray job is running" in forecast.output
    assert not (env / "out" / ".staging").exists() and not (env / "out" / "metadata").exists()


def test_the_job_lock_is_reentrant_in_one_process(tmp_path: Path, held_elsewhere) -> None:
    with job_lock(tmp_path) as outer, job_lock(tmp_path) as inner:  # `run` around its forecast
        assert outer == inner
    with held_elsewhere(tmp_path), pytest.raises(LockedError), job_lock(tmp_path):
        pass


def test_who_holds_the_lock_is_read_without_turning_a_job_away(tmp_path: Path, held_elsewhere) -> None:
    """`nova-ray runs` names the job that holds a results folder (`holder`) by probing its lock
    for an instant; a job starting at that instant waits the probe out instead of exiting 3."""
    import subprocess
    import sys

    from nova_ray.io.lock import holder

    assert holder(tmp_path) is None and not (tmp_path / ".nova-ray.lock").exists()  # creates nothing
    with held_elsewhere(tmp_path):
        held = holder(tmp_path)
        assert held is not None and held.startswith("pid ") and " since " in held
    assert holder(tmp_path) is None
    probe = subprocess.Popen([sys.executable, "-c", (
        "import time; from nova_ray.io.lock import holder\n"
        f"end = time.monotonic() + 3\nwhile time.monotonic() < end: holder({str(tmp_path)!r})")])
    try:
        taken = 0
        while probe.poll() is None:  # each take meets the probe's shared lock now and then
            with job_lock(tmp_path):
                taken += 1
        assert taken > 20 and probe.returncode == 0
    finally:
        probe.kill()


def test_a_broken_raw_file_stops_the_job_with_exit_2(env: Path, small_demo: Path, monkeypatch) -> None:
    """Bad input exits 2 with one line, as `nova-ray etl` does for the same file (it was 1)."""
    import shutil

    raw = env / "raw"
    shutil.copytree(small_demo / "raw", raw)
    (raw / "bcb" / "usd_brl.json").write_text('[{"data": "32/01/2023", "valor": "5.1"}]')
    monkeypatch.setenv("NOVA_RAY_RAW", str(raw))
    res = _run(small_demo, env / "shared")
    assert res.exit_code == 2, res.output
    assert "usd_brl.json:1: column 'data': unparsable date '32/01/2023'" in " ".join(res.output.split())
    assert not (env / "shared").exists()


def _pointer(root: Path) -> dict:
    return json.loads((root / "metadata" / "last_updated.json").read_text())


def test_the_dates_last_run_is_the_last_written_when_two_start_in_one_second(tmp_path: Path) -> None:
    """Records keep their start to the second: a rerun resuming a partial run's checkpoints right
    after it started in the same second, and the directory's order picked the date's last run
    (`run` then redid a finished day, or took the partial one for it); `runs` shares the order."""
    import os
    from datetime import date

    from nova_ray.cli.runs import read_runs
    from nova_ray.config import load_config
    from nova_ray.daily import published_run

    cfg = load_config(None, {"output": str(tmp_path / "out")}, env={}, dotenv=None)
    runs = tmp_path / "out" / "metadata" / "runs"
    runs.mkdir(parents=True)
    for rid, parts in (("20261127-aaaa", {"metrics": "m"}), ("20261127-bbbb", {"forecasts": "f"})):
        (runs / f"{rid}.json").write_text(json.dumps({
            "run_id": rid, "run_date": "2026-11-27", "generated_at": "2026-11-27T03:00:00+00:00",
            "status": "complete", "model_version": "v", "dataset_id": "d", "partitions": parts}))
    first, second = list(runs.glob("*.json"))  # the directory's order; the first written last
    os.utime(first, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    os.utime(second, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    newest = first.stem
    _, why = published_run(cfg, date(2026, 11, 27), "v", "d")
    assert why.startswith(f"{newest} has no "), why
    assert [r["run_id"] for r in read_runs(tmp_path / "out")][0] == newest


def test_only_a_finished_current_run_is_skipped(env: Path, small_demo: Path, ray_session) -> None:
    """`run` used to skip a date whose run was a partial one (`forecast --only-metrics` earlier that
    day: it then published a run without forecasts), whose tables a kill during the swap had
    taken away, or whose recommendations came from another stock file. Now: a partial or damaged
    run (a table missing, a file truncated) is rerun (resuming its checkpoints), a changed stock
    file only remakes the recommendations."""
    import shutil
    from datetime import date

    import polars as pl

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily
    from nova_ray.pipeline import run_forecast

    stock = env / "stock.parquet"
    shutil.copy(small_demo / "stock.parquet", stock)
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet"), "stock": str(stock)}, dotenv=None)
    out, day = Path(cfg.paths.output), date(2026, 11, 27)
    run_forecast(cfg, run_date=day, only="metrics")
    report = run_daily(cfg, day)
    assert not report.skipped and "(rerun: " in report.steps[1][1] and "a partial run" in report.steps[1][1]
    first = _pointer(out)
    assert {"forecasts", "metrics", "recommendations"} <= set(first["row_counts"])

    shutil.rmtree(out / "forecasts" / f"run_date={day}")  # as a kill between the swap's renames leaves it
    report = run_daily(cfg, day)
    assert not report.skipped and "forecasts are missing" in report.steps[1][1]
    assert (out / "forecasts" / f"run_date={day}").is_dir()
    damaged = next((out / "metrics" / f"run_date={day}").rglob("*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:300])  # a truncated file: the day is not finished
    report = run_daily(cfg, day)
    assert not report.skipped and f"{damaged} of " in report.steps[1][1]
    assert "is unreadable (a damaged file)" in report.steps[1][1]
    second = _pointer(out)["run_id"]

    recs = out / "recommendations" / f"run_date={day}"
    before = pl.read_parquet(recs)
    pl.read_parquet(stock).with_columns(on_hand=pl.lit(0.0)).write_parquet(stock)  # a new snapshot
    report = run_daily(cfg, day)
    assert report.skipped and report.run_id == second and _pointer(out)["run_id"] == second
    assert report.steps[-2][0] == "recommend" and "changed" in report.steps[-2][1]
    after = pl.read_parquet(recs)
    assert after["on_hand"].sum() == 0 and not after.equals(before)
    again = run_daily(cfg, day)  # now current: nothing to do
    assert again.skipped and all(step != "recommend" for step, _ in again.steps)


def test_a_rerun_killed_while_publishing_is_finished_by_the_next_run(
    env: Path, small_demo: Path, ray_session, monkeypatch
) -> None:
    """A rerun of a published date (`--force`) killed while it swapped its tables in left the
    date's folders holding both runs' files under the first run's pointer; one killed after its run
    record but before the pointer read as published. Either way the next plain `run` skipped the
    date, every sync was refused and `serve` served nothing. Now both are rerun (their checkpoints
    resumed) and the folder holds one run, the one the pointer names."""
    from datetime import date

    import pyarrow.parquet as pq

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily
    from nova_ray.io import results

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    out, day = Path(cfg.paths.output), date(2026, 11, 27)

    def owners() -> set[str]:
        files = [f for kind in ("forecasts", "backtests", "metrics") for f in (out / kind).rglob("*.parquet")]
        return {pq.read_metadata(f).metadata[b"run_id"].decode() for f in files}

    first = run_daily(cfg, day).run_id
    real_replace = results.os.replace

    def killed_mid_swap(src, dst) -> None:  # the forecasts swapped in, then killed
        if str(dst).endswith("/backtests") and "/.trash/" in str(dst):
            raise KeyboardInterrupt
        real_replace(src, dst)

    with monkeypatch.context() as mp:
        mp.setattr(results.os, "replace", killed_mid_swap)
        with pytest.raises(KeyboardInterrupt):
            run_daily(cfg, day, force=True)
    assert len(owners()) == 2 and _pointer(out)["run_id"] == first  # a mix, under the first's pointer
    report = run_daily(cfg, day)
    assert not report.skipped and "holds run" in report.steps[1][1]
    assert owners() == {report.run_id} == {_pointer(out)["run_id"]} and report.run_id != first

    real_write = results.write_json_atomic

    def killed_after_the_record(path, data) -> None:
        if Path(path).name == "model_versions.json":
            raise KeyboardInterrupt
        real_write(path, data)

    before = report.run_id
    with monkeypatch.context() as mp:
        mp.setattr(results, "write_json_atomic", killed_after_the_record)
        with pytest.raises(KeyboardInterrupt):
            run_daily(cfg, day, force=True)
    assert _pointer(out)["run_id"] == before and owners() != {before}  # its rows, the last one's pointer
    report = run_daily(cfg, day)
    assert not report.skipped and "was killed before its pointer was written" in report.steps[1][1]
    assert owners() == {report.run_id} == {_pointer(out)["run_id"]}
    assert run_daily(cfg, day).skipped  # finished now
    # a horizon past pandas' last date, on a date that has a run: one line (the check of that run
    # built the external factors' table first, which crashed with a traceback)
    from nova_ray.config import ConfigError

    far = load_config(None, {"data": str(small_demo / "demand.parquet"), "horizon": 100000}, dotenv=None)
    with pytest.raises(ConfigError, match="--horizon 100000 \\(D\\) reaches past 2262-04-11"):
        run_daily(far, day)


def test_a_backfill_keeps_the_latest_run_and_is_never_pruned_away(env: Path, small_demo: Path,
                                                                  ray_session) -> None:
    """`run --date` for an earlier day publishes that day's run without moving either pointer off
    the later run, and `--keep` prunes by run date (it went by publication time: the backfills
    pruned today's run away)."""
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    target = env / "shared"
    target.mkdir()
    today = run_daily(cfg, date(2026, 11, 27), to=str(target), keep=1)
    for day in (date(2026, 11, 20), date(2026, 11, 21)):
        back = run_daily(cfg, day, to=str(target), keep=1)
        assert back.run_id != today.run_id and "pointer unchanged" in back.steps[-1][1]
    assert _pointer(Path(cfg.paths.output))["run_id"] == today.run_id
    assert json.loads((target / "last_updated.json").read_text())["run_id"] == today.run_id
    kept = sorted(p.name for p in (target / "runs").iterdir())
    assert today.run_id in kept and back.run_id in kept and len(kept) == 2  # the 20th's pruned
    assert (Path(cfg.paths.output) / "forecasts" / "run_date=2026-11-20").is_dir()  # published locally


def test_run_date_after_tomorrow_is_refused(env: Path, small_demo: Path) -> None:
    res = runner.invoke(app, ["run", "--date", "2036-01-01", "--data", str(small_demo / "demand.parquet"),
                              "-q"])
    assert res.exit_code == 2
    assert "option --date: 2036-01-01 is after tomorrow" in " ".join(res.output.split())
    assert not (env / "out").exists()


def test_a_refused_publish_is_not_called_an_interruption() -> None:
    """Credentials or permissions a rerun cannot get past are said to be refused, not interrupted."""
    import errno

    from nova_ray.cli.common import sync_failure

    for exc in (PermissionError(errno.EACCES, "Permission denied"),
                OSError(errno.EROFS, "Read-only file system"),
                OSError("When uploading part: AWS Error ACCESS_DENIED during PutObject operation")):
        line = sync_failure("s3://b/p", exc)
        assert "to s3://b/p was refused" in line and "fix the permissions or credentials" in line
    line = sync_failure("s3://b/p", ConnectionError("Connection reset by peer"))
    assert "was interrupted" in line and "rerun to resume" in line
    # a full target: a rerun fails the same way until space is freed (it was "interrupted")
    for exc in (OSError(errno.ENOSPC, "No space left on device"),
                OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on "
                        "device")):
        line = sync_failure("/mnt/pub", exc)
        assert "publishing to /mnt/pub failed: the target is full" in line and "free space there" in line


def test_a_full_disk_names_the_folders_the_run_writes_to(tmp_path: Path) -> None:
    import errno

    from nova_ray.cli.common import write_failure
    from nova_ray.config import load_config

    cfg = load_config(None, {"output": str(tmp_path / "out"), "models_dir": str(tmp_path / "m")}, env={},
                      dotenv=None)
    line = write_failure(cfg, OSError("[Errno 28] Error writing bytes to file. Detail: [errno 28] No space "
                                      "left on device"))
    assert line.startswith(f"no space left on a device the run writes to (results {tmp_path / 'out'}, "
                           f"models {tmp_path / 'm'}, temp ")
    assert line.endswith("free space there, then rerun (it resumes from its checkpoints)")  # `run`
    # forecast and train go on from their checkpoints only with --resume: a plain rerun refitted all
    from nova_ray.cli.forecast import RESUME_AGAIN

    again = write_failure(cfg, OSError(errno.ENOSPC, "No space left on device"), RESUME_AGAIN)
    assert again.endswith("free space there, then rerun with --resume (it goes on from its checkpoints; "
                          "without it the run starts afresh)")
    assert write_failure(cfg, OSError(errno.EIO, "I/O error")) == "OSError: [Errno 5] I/O error"


def test_an_unreadable_pointer_is_one_line_naming_it(env: Path, small_demo: Path) -> None:
    """An empty or cut pointer stopped `run` with `Expecting value: line 1 column 1` and no file."""
    meta = env / "out" / "metadata"
    meta.mkdir(parents=True)
    (meta / "last_updated.json").write_text("")
    res = runner.invoke(app, ["recommend", "--results", str(env / "out"), "--stock",
                              str(small_demo / "stock.parquet")])
    assert res.exit_code == 2
    assert f"{meta / 'last_updated.json'}: not a valid pointer" in " ".join(res.output.split())


def test_keep_local_prunes_the_oldest_run_dates_of_the_results_folder(env: Path, small_demo: Path,
                                                                       ray_session) -> None:
    """`run --keep-local N` keeps the N newest run dates in the results folder (the pointer's and
    the run's own always): the others' partitions of every table, their run records and the logs
    older than the oldest kept run go; what is kept reads as before."""
    import os
    import time
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily
    from nova_ray.io.results import read_table
    from nova_ray.io.retention import prune_results, run_dates

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    out = Path(cfg.paths.output)
    days = [date(2026, 11, d) for d in (24, 25, 26)]
    reports = [run_daily(cfg, d) for d in days]
    assert run_dates(out) == {d.isoformat() for d in days}
    old_log = out / "logs" / "run-20200101T000000Z-000000.log"
    old_log.write_text("an old run's log\n")
    os.utime(old_log, (time.time() - 400 * 86400,) * 2)
    before = read_table(out, "forecasts").num_rows

    last = run_daily(cfg, date(2026, 11, 27), keep_local=2)
    assert last.steps[-1][0] == "prune"
    assert last.steps[-1][1].startswith("removed 2 run dates (2026-11-24 .. 2026-11-25): ")
    assert run_dates(out) == {"2026-11-26", "2026-11-27"}
    for kind in ("forecasts", "metrics", "backtests", "items", "recommendations", "ensemble_weights"):
        assert not list((out / kind).glob("run_date=2026-11-2[45]")), kind
    records = {json.loads(p.read_text())["run_id"] for p in (out / "metadata" / "runs").glob("*.json")}
    assert records == {reports[2].run_id, last.run_id}
    assert not old_log.exists() and list((out / "logs").glob("run-*.log"))  # recent logs stay
    assert read_table(out, "forecasts").num_rows == before  # the latest run reads as before
    assert not (out / ".trash").exists()

    # a backfill older than the kept dates stays (pinned, with the pointer's run date): the 26th goes
    back = run_daily(cfg, date(2026, 11, 20), keep_local=2)
    assert run_dates(out) == {"2026-11-20", "2026-11-27"}
    assert back.steps[-1][1].startswith("removed 1 run date (2026-11-26): ")
    assert prune_results(out, 5).describe() == "kept all 2 run dates"
    with pytest.raises(ValueError, match="keep must be >= 1"):
        prune_results(out, 0)


def test_new_factor_values_from_the_etl_rerun_the_day(env: Path, small_demo: Path, ray_session,
                                                      monkeypatch) -> None:
    """The ETL rewrote the features with other USD/BRL values: the date's run is not 'the same data
    and settings' (only the features' names were in the settings' hash), so it is rerun. The job's
    forecast reads what its etl step wrote (`[etl] processed`, not the default `features`)."""
    import shutil
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.daily import run_daily

    raw = env / "raw"
    shutil.copytree(small_demo / "raw", raw)
    monkeypatch.setenv("NOVA_RAY_RAW", str(raw))
    monkeypatch.setenv("NOVA_RAY_MODELS", "naive,arima")
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    first = run_daily(cfg, date(2026, 11, 27))
    # `features` left at its default: the forecast read the table the job's etl step wrote into
    # `[etl] processed` (it ran without it, noted only in the log)
    import hashlib

    etl_table = (env / "processed" / "features.parquet").read_bytes()
    assert first.summary["exog"]["features_sha256"] == hashlib.sha256(etl_table).hexdigest()[:16]
    same = run_daily(cfg, date(2026, 11, 27))
    assert same.skipped and same.run_id == first.run_id
    fx = raw / "bcb" / "usd_brl.json"
    rows = json.loads(fx.read_text())
    for r in rows[-100:]:
        r["valor"] = f"{float(r['valor'].replace(',', '.')) * 1.2:.4f}".replace(".", ",")
    # `run --fetch` downloads them (a loopback SGS with the revised rates; INMET without a token
    # answers 404): the download's failures are warnings, what it got is used
    with _sgs(json.dumps(rows[-100:]).encode()) as base:
        monkeypatch.setenv("NOVA_RAY_BCB_BASE_URL", f"{base}/bcb/{{code}}/dados")
        monkeypatch.setenv("NOVA_RAY_BCB_SERIES", "usd_brl:1")
        monkeypatch.setenv("NOVA_RAY_INMET_BASE_URL", f"{base}/inmet")
        failed = ("fetch", "failed: the files on disk are used (see the warnings)")
        unreachable = {"data": str(small_demo / "demand.parquet"), "bcb_base_url": "http://127.0.0.1:9/x",
                       "fetch_retries": 1}
        down = run_daily(load_config(None, unreachable, dotenv=None), date(2026, 11, 27), fetch=True)
        assert down.skipped and down.steps[0] == failed  # nothing reached: the files on disk, as they were
        (warned,) = down.warnings
        assert warned.startswith("etl --fetch failed, the external factors' files on disk are used: cannot "
                                 "reach http://127.0.0.1:9/x?formato=json&dataInicial=01/01/2025&")
        fetched = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
        (station,) = (raw / "inmet").glob("*.CSV")  # and the station's file stops 60 days early
        lines = station.read_bytes().splitlines(keepends=True)
        station.write_bytes(b"".join(lines[: -60 * 24]))
        again = run_daily(fetched, date(2026, 11, 27), fetch=True)
    assert json.loads(fx.read_text())[-100:] == rows[-100:]  # merged into the file
    assert again.steps[0] == failed  # INMET's 404, after the SGS series was fetched
    assert "HTTP 404" in again.warnings[0] and "NOVA_RAY_INMET_TOKEN" in again.warnings[0]
    # the etl step's warnings reach the job's (`run` printed the step and dropped them)
    assert [w for w in again.warnings if w.startswith("etl: climate: the data end ")]
    assert not again.skipped and "the external factors' values changed since" in again.steps[2][1]


@contextmanager
def _sgs(body: bytes) -> Iterator[str]:
    """A loopback server answering `body` to every Banco Central SGS path (/bcb/...) and 404 to
    the rest (INMET's open data path, which now wants a token)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if not self.path.startswith("/bcb/"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_failed_job_still_shows_its_steps_and_log(env: Path, small_demo: Path, ray_session) -> None:
    """The cron log got only the error line of a job whose publish was refused: the steps done and
    the log's path come first (and the log's error line names the errno once)."""
    res = _run(small_demo, Path("/proc/1"))  # a folder that cannot be written to, even by root
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert "etl " in text and "forecast 2026" in text and "log " + str(env / "out" / "logs") in text
    assert "publishing to /proc/1 was" in text or "error:" in text
    log = next((env / "out" / "logs").glob("run-*.log")).read_text()
    assert "run failed: PublishFailed" in log and "[Errno" in log and log.count("[Errno") == 1


def test_a_backfill_forecasts_from_the_history_up_to_its_date(small_demo: Path) -> None:
    """`run --date` before the history's end: the later rows are left out, with a note (the run
    filed under 2023-12-20 forecast from 2024-01-01, like today's run); none left is an error."""
    from datetime import date

    import pandas as pd

    from nova_ray.config import load_config
    from nova_ray.io.errors import InputError
    from nova_ray.pipeline import load_demand

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, env={}, dotenv=None)
    whole = load_demand(cfg, None)
    back = load_demand(cfg, None, until=date(2023, 12, 20))
    assert back.rows["date"].max() == pd.Timestamp("2023-12-20") and back.end == pd.Timestamp("2023-12-20")
    assert len(back.rows) < len(whole.rows) and not any("past the run date" in n for n in whole.notes)
    assert any("runs to 2023-12-31, past the run date 2023-12-20: its later rows are left out" in n
               for n in back.notes)
    assert load_demand(cfg, None, until=date(2024, 1, 5)).notes == whole.notes  # nothing after it
    with pytest.raises(InputError, match="no history up to the run date 2022-12-01"):
        load_demand(cfg, None, until=date(2022, 12, 1))


def test_the_day_in_progress_is_left_out(small_demo: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows dated today (an export made after midnight, or during the day) hold the day's demand
    so far: taken for the whole day's, it read as a slow day, and the next night's export, with
    the day complete, as a history that changed (every such item fitted cold again). They are left
    out with a note, by `forecast` and by a `run` of today; a backfill keeps its date's rows."""
    from datetime import date

    import pandas as pd

    from nova_ray import clock
    from nova_ray.config import load_config
    from nova_ray.io.errors import InputError
    from nova_ray.pipeline import load_demand

    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, env={}, dotenv=None)
    whole = load_demand(cfg, None)
    assert whole.rows["date"].max() == pd.Timestamp("2023-12-31")
    assert not any("in progress" in n for n in whole.notes)
    monkeypatch.setattr(clock, "today", lambda: date(2023, 12, 31))  # the export's last day is today
    for until in (None, date(2023, 12, 31), date(2024, 1, 1)):  # forecast; run of today, of tomorrow
        now = load_demand(cfg, None, until=until)
        assert now.rows["date"].max() == pd.Timestamp("2023-12-30") and now.end == pd.Timestamp("2023-12-30")
        today = (whole.rows["date"] == pd.Timestamp("2023-12-31")).sum()
        assert len(now.rows) == len(whole.rows) - today
        assert [n for n in now.notes if n not in whole.notes] == [
            f"{small_demo / 'demand.parquet'}: {today} row(s) dated today 2023-12-31 or later, a day still "
            "in progress, are left out: the forecast starts with it"]
    back = load_demand(cfg, None, until=date(2023, 12, 30))  # yesterday's date: a complete day, kept
    assert back.rows["date"].max() == pd.Timestamp("2023-12-30")
    assert not any("in progress" in n for n in back.notes)
    fresh = tmp_path / "today.csv"  # a first export, of today only
    fresh.write_text("item_id,date,quantity\nA,2023-12-31,1\nB,2023-12-31,2\n")
    with pytest.raises(InputError, match="today.csv: no history before today 2023-12-31, a day still in"):
        load_demand(load_config(None, {"data": str(fresh)}, env={}, dotenv=None), None)


def test_today_is_the_local_date_that_tz_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run dates, backfills and the day in progress count from the machine's local date, as cron's
    schedule does: `TZ=America/Sao_Paulo` on a server kept on UTC. 14 hours east and 12 west of
    UTC are never on the same date."""
    import time
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from nova_ray import clock

    try:
        days = {}
        for zone in ("Etc/GMT-14", "Etc/GMT+12", "America/Sao_Paulo"):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            before = datetime.now(ZoneInfo(zone)).date()
            days[zone] = clock.today()
            assert days[zone] in (before, datetime.now(ZoneInfo(zone)).date())  # midnight between
        assert days["Etc/GMT-14"] > days["Etc/GMT+12"]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_lagging_5g_count_is_one_warning_of_the_run(env: Path, small_demo: Path, ray_session,
                                                      monkeypatch) -> None:
    """An Anatel file two months behind: the ETL warns that its last value is repeated, and the
    forecast that it continues the count at its recent pace. `run` showed both lines for the
    same file; it shows the forecast's, and the ETL's where no forecast says it (`_said_again`),
    also when the forecast fails."""
    import shutil
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.daily import DailyReport, _said_again, run_daily
    from nova_ray.io.errors import InputError

    raw = env / "raw"
    shutil.copytree(small_demo / "raw", raw)
    (count,) = (raw / "anatel").glob("*.csv")
    lines = count.read_text(encoding="utf-8").splitlines(keepends=True)
    count.write_text("".join(lines[:-60]), encoding="utf-8")
    monkeypatch.setenv("NOVA_RAY_RAW", str(raw))
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet")}, dotenv=None)
    report = run_daily(cfg, date(2026, 11, 27))
    said = report.warnings + report.summary["warnings"]
    g5 = [w for w in said if "5G" in w or "5g" in w]
    assert len(g5) == 2 and all(w.split(":")[0].startswith("g5_") for w in g5), said  # sites, municipalities
    assert all(": the 5G count ends " in w and "60 days before" in w for w in g5)

    note = "5g g5_a, g5_b: the data end 2025-10-31, 60 days before the range's end 2025-12-30: ..."
    held = {note: ["g5_a", "g5_b"]}
    ends = "g5_{}: the 5G count ends 2025-10-31, 60 days before the features' last day 2025-12-30: ..."
    assert _said_again(held, [ends.format("a"), ends.format("b")]) == {f"etl: {note}"}
    assert _said_again(held, [ends.format("a")]) == set()  # b not said: the ETL's line stays
    assert _said_again(held, []) == set()  # no forecast, or one without external factors
    # a forecast that fails: the job's warnings (shown with the error) keep the ETL's line
    failing = DailyReport(run_date="2026-11-28")
    with pytest.raises(InputError):  # after the etl step: the demand file is gone
        run_daily(load_config(None, {"data": str(env / "gone.parquet")}, dotenv=None), date(2026, 11, 28),
                  report=failing)
    assert any(w.startswith("etl: 5g ") and "the data end" in w for w in failing.warnings), failing.warnings


def test_a_target_with_another_projects_pointer_is_refused_before_the_forecast(
    env: Path, small_demo: Path, monkeypatch
) -> None:
    """`run --to` a shared target whose last_updated.json is another tool's: the pointer was
    replaced (and `--keep` deleted the other project's folders), exit 0. Now the job stops with
    one line (exit 2) before the night's forecast, and the target is as it was."""
    import nova_ray.pipeline

    def no_forecast(*args, **kwargs):
        raise AssertionError("the forecast ran")

    monkeypatch.setattr(nova_ray.pipeline, "run_forecast", no_forecast)
    target = env / "shared"
    (target / "runs" / "exp-42").mkdir(parents=True)
    (target / "runs" / "exp-42" / "manifest.json").write_text('{"experiment": "exp-42"}')
    (target / "last_updated.json").write_text('{"last_update": "2026-12-01", "source": "other-etl"}')
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    res = _run(small_demo, target, "--keep", "1")
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert f"error: {target / 'last_updated.json'}: holds another project's last_updated.json" in text
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before


def test_an_old_run_keep_cannot_delete_is_a_warning_of_a_published_run(
    env: Path, small_demo: Path, ray_session, monkeypatch
) -> None:
    """A store that refuses to delete an old run (`--keep`) after the new run's pointer moved: `run`
    said the publish was refused (exit 1, "the previously published run is intact") and skipped
    `--keep-local`. Now the run is published with a warning, exit 0, and the old run stays whole."""
    from nova_ray.io import location

    target = env / "shared"
    old = target / "runs" / "20200101-old"
    (old / "forecasts").mkdir(parents=True)
    (old / "forecasts" / "part.parquet").write_bytes(b"old rows")
    manifest = {"format": 1, "run_id": "20200101-old", "run_date": "2020-01-01",
                "published_at": "2020-01-01T06:00:00+00:00"}
    (old / "manifest.json").write_text(json.dumps(manifest))
    pointer = {**manifest, "manifest": f"runs/{old.name}/manifest.json"}
    (target / "last_updated.json").write_text(json.dumps(pointer))
    delete_dir = location.Location.delete_dir

    def refuse(self, rel: str) -> None:
        if rel.startswith(f"runs/{old.name}"):
            raise PermissionError(13, "Permission denied", self.path(rel))
        delete_dir(self, rel)

    monkeypatch.setattr(location.Location, "delete_dir", refuse)
    res = _run(small_demo, target, "--keep", "1", "--keep-local", "1")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "pointer moved" in text and f"warning: published; could not delete old run {old.name}: " in text
    assert "prune kept all 1 run date" in text  # --keep-local ran
    assert json.loads((target / "last_updated.json").read_text())["run_id"] == _pointer(env / "out")["run_id"]
    assert (old / "manifest.json").is_file() and (old / "forecasts" / "part.parquet").is_file()
