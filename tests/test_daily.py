"""`nova-ray run`: etl, forecast, recommendations and publish for a date; idempotent; locked."""

from __future__ import annotations

import json
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
    res = _run(small_demo, target)
    assert res.exit_code == 0, res.output
    assert "etl" in res.output and "features" in res.output
    assert (env / "processed" / "features.parquet").exists()
    pointer = json.loads((target / "last_updated.json").read_text())
    first = json.loads((env / "out" / "metadata" / "last_updated.json").read_text())
    assert first["run_date"] == "2026-11-27" and first["run_id"] in json.dumps(pointer)
    assert "recommendations" in first["row_counts"]

    again = _run(small_demo, target)
    assert again.exit_code == 0 and "skipped" in again.output and first["run_id"] in again.output
    assert (
        json.loads((env / "out" / "metadata" / "last_updated.json").read_text())["run_id"] == first["run_id"]
    )

    forced = _run(small_demo, target, "--force")
    assert forced.exit_code == 0, forced.output
    assert (
        json.loads((env / "out" / "metadata" / "last_updated.json").read_text())["run_id"] != first["run_id"]
    )


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
