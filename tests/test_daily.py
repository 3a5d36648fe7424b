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
