"""`nova-ray runs` and `nova-ray doctor` through CliRunner."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

import nova_ray.cli.doctor as doctor_cli
import nova_ray.cli.runs  # noqa: F401  (registers `runs` until cli/__init__ imports it)
import nova_ray.distributed as distributed
from nova_ray.cli import app
from nova_ray.cli.common import out
from nova_ray.io.results import ResultWriter
from nova_ray.schemas import ITEMS

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables at 200 columns, so cell text is not wrapped in the assertions."""
    monkeypatch.setattr(out, "_width", 200)


def _publish(root: Path, run_id: str, run_date: date, generated_at: str, items: int, wall: float) -> None:
    """A real (tiny) run through ResultWriter: items table, run record, pointer."""
    table = pa.Table.from_pylist(
        [{"item_id": f"I-{i}", "demand_class": "smooth", "fallback": False} for i in range(items)]
    )
    table = table.append_column("failed_models", pa.array([""] * items))
    full = pa.table(
        {
            n: table[n] if n in table.column_names else pa.nulls(items, ITEMS.field(n).type)
            for n in ITEMS.names
        }
    )
    w = ResultWriter(
        root,
        run_id,
        run_date,
        {"run_id": run_id, "generated_at": generated_at, "dataset_id": "abc", "model_version": "0.1.0"},
    )
    w.write("items", full)
    w.commit({"run_id": run_id}, {"items": items, "failures": 0, "wall_seconds": wall}, replace=["items"])


def test_runs_lists_newest_first_with_status(tmp_path: Path) -> None:
    root = tmp_path / "results"
    _publish(root, "20240101-aaaaaaaa", date(2024, 1, 1), "2024-01-01T08:00:00+00:00", 3, 12.5)
    _publish(root, "20240102-bbbbbbbb", date(2024, 1, 2), "2024-01-02T08:00:00+00:00", 5, 30.25)
    _publish(root, "20240102-cccccccc", date(2024, 1, 2), "2024-01-02T09:00:00+00:00", 7, 41.0)
    res = runner.invoke(app, ["runs", "--results", str(root)])
    assert res.exit_code == 0, res.output
    ids = re.findall(r"^│ 2024010\d-(\w{8}) ", res.output, flags=re.M)  # the run id column
    assert ids == ["cccccccc", "bbbbbbbb", "aaaaaaaa"]
    lines = {i: next(ln for ln in res.output.splitlines() if i in ln) for i in ids}
    assert (
        "complete, latest" in lines["cccccccc"]
        and "41.0 s" in lines["cccccccc"]
        and " 7 " in lines["cccccccc"]
    )
    assert "replaced by 20240102-cccccccc" in lines["bbbbbbbb"]  # same run date: its partition was swapped
    assert "complete" in lines["aaaaaaaa"] and "2024-01-01" in lines["aaaaaaaa"]
    assert f"run records: {root / 'metadata' / 'runs'}/<run id>.json" in res.output
    res = runner.invoke(app, ["runs", "--results", str(root), "--limit", "1"])
    assert res.exit_code == 0 and "cccccccc" in res.output and "aaaaaaaa" not in res.output
    assert "1 of 3 runs shown" in res.output
    # a kill while a run of the date swapped its tables in: the latest's items hold another run's
    (latest,) = (root / "items" / "run_date=2024-01-02").rglob("part-*.parquet")
    (other,) = (root / "items" / "run_date=2024-01-01").rglob("part-*.parquet")
    latest.write_bytes(other.read_bytes())
    res = runner.invoke(app, ["runs", "--results", str(root), "--limit", "1"])
    assert ("latest, but its items hold another run's: rerun `nova-ray run --date 2024-01-02` (a `forecast` "
            "run: the same command with --resume completes it)") in " ".join(res.output.split())
    latest.unlink()  # moved to the trash before the new one came in: missing, not another run's
    res = runner.invoke(app, ["runs", "--results", str(root), "--limit", "1"])
    text = " ".join(res.output.split())
    assert "latest, but its items are missing: rerun `nova-ray run --date 2024-01-02`" in text


def test_runs_lists_unpublished_runs_in_a_cron_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage left by a run that did not publish: the items its checkpoints hold of the run's, the
    LSTM's, and its status whole at cron's 80 columns (it was cut to "interrupt…")."""
    monkeypatch.setattr(out, "_width", 80)
    root = tmp_path / "results"
    meta = {"run_id": "20261206-abcdef12", "generated_at": "2026-12-06T02:00:00+00:00"}
    w = ResultWriter(root, meta["run_id"], date(2026, 12, 6), meta, stage_key="k", items=2000)
    w.checkpoint("b-1", {"items": pa.table({"item_id": ["A"] * 600})})
    w.checkpoint("lstm", {"forecasts": pa.table({"x": [1]})})
    old = ResultWriter(root, "20261205-00000000", date(2026, 12, 5), {"run_id": "20261205-00000000"},
                       stage_key="k0")  # a stage of an earlier version: its item count unknown
    old.checkpoint("b-2", {"items": pa.table({"item_id": ["B"] * 7})})
    import os
    import time

    later = time.time() + 60  # written last, whatever the file system's clock resolution
    for mark in (old.stage, old.stage / "run.json", old.stage / "checkpoints" / "done"):
        os.utime(mark, (later, later))
    res = runner.invoke(app, ["runs", "--results", str(root)])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.output.splitlines() if ln.startswith("│ 2026120")]
    ids = [r.split("│")[1].strip() for r in rows]
    assert ids == ["20261205-00000000", "20261206-abcdef12"]  # the last written first
    assert "600 of 2000" in rows[1] and "interrupted" in rows[1] and "interrupted" in rows[0]
    assert "7 items" in rows[0] and res.output.count("LSTM") == 1  # the first stage's LSTM is done
    text = " ".join(res.output.split())
    assert "with --resume, on the same day or the next" in text
    assert "nova-ray run --date <run date>" in text


@pytest.mark.parametrize("width", [60, 80, 120])
def test_runs_never_wraps_or_cuts_a_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    """At 120 columns the run id wrapped over two lines; a cron log (80) cut paths. Each row is
    now on one line with its run id whole, also in a console narrower than the table."""
    root = tmp_path / "results"
    _publish(root, "20240101-aaaaaaaa", date(2024, 1, 1), "2024-01-01T08:00:00+00:00", 3, 12.5)
    _publish(root, "20240101-bbbbbbbb", date(2024, 1, 1), "2024-01-01T09:00:00+00:00", 5, 30.25)
    monkeypatch.setattr(out, "_width", width)
    res = runner.invoke(app, ["runs", "--results", str(root)])
    assert res.exit_code == 0, res.output
    rows = [ln for ln in res.output.splitlines() if ln.startswith("│ 2024")]
    assert len(rows) == 2 and "…" not in res.output
    assert re.match(r"│ 20240101-bbbbbbbb .*complete, latest", rows[0])
    assert re.match(r"│ 20240101-aaaaaaaa .*replaced by 20240101-bbbbbbbb", rows[1])
    if width >= 120:
        assert max(len(ln) for ln in res.output.splitlines() if ln.startswith("│")) <= width


def test_runs_on_empty_and_missing_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nova_ray.cli.common import out

    monkeypatch.setattr(out, "_width", 80)  # cron's: the hint's command is whole on its line
    res = runner.invoke(app, ["runs", "--results", str(tmp_path)])
    assert res.exit_code == 0 and "no runs in" in res.output
    assert f"run `nova-ray forecast --output {tmp_path}`" in res.output
    res = runner.invoke(app, ["runs", "--results", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "no such folder" in res.output
    # a folder set elsewhere is named as set there (it said --results for a value from .env)
    res = runner.invoke(app, ["runs"], env={"NOVA_RAY_OUTPUT": str(tmp_path / "gone")})
    assert res.exit_code == 2 and f"paths.output {tmp_path / 'gone'} (" in " ".join(res.output.split())


def _rows(output: str) -> dict[str, str]:
    """check name -> its table row, cells joined by ' | ' (text wrapped inside a cell is re-joined)."""
    rows: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")][1:-1]
        if len(cells) < 3:
            continue
        if cells[1]:
            last = rows[cells[1]] = cells
        elif last is not None:
            last[:] = [f"{a} {b}".strip() for a, b in zip(last, cells, strict=False)]
    return {k: " | ".join(v) for k, v in rows.items()}


def test_doctor_passes_on_a_good_setup(small_demo: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "doctor",
            "--data",
            str(small_demo / "demand.parquet"),
            "--results",
            str(tmp_path / "new" / "results"),
            "--no-ray",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = _rows(res.output)
    for name in (
        "python",
        "config",
        "numpy",
        "pandas",
        "polars",
        "pyarrow",
        "statsforecast",
        "prophet",
        "pmdarima",
        "tensorflow",
        "statsmodels",
        "fastapi",
        "ray",
        "demand data",
        "gpu",
        "results folder",
    ):
        assert "✓" in rows[name], (name, res.output)
    assert "12 items" in rows["demand data"] and "will be created in" in rows["results folder"]
    assert "skipped" in rows["ray runtime"] and "ready" in res.output
    assert "✓" in rows["external factors"] and "(the demo layout)" in rows["external factors"]


def test_doctor_names_the_factor_sources_that_end_early(
    small_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feature table a run reads, its days, and the sources that end long before it (an
    Anatel extract months behind: the forecast continues it at its pace, with a warning)."""
    import shutil

    import pandas as pd

    from nova_ray.config import load_config
    from nova_ray.etl import build_features

    raw = tmp_path / "raw"
    shutil.copytree(small_demo / "raw", raw)
    rollout = raw / "anatel" / "5g_rollout.csv"
    rows = rollout.read_text().splitlines()
    rollout.write_text("\n".join(rows[:-90]) + "\n")  # 90 days behind the other sources
    table = build_features(raw, tmp_path / "processed").path
    cfg = load_config(None, {"features": str(table)}, env={}, dotenv=None)
    check = doctor_cli.check_features(cfg, str(small_demo / "demand.parquet"))
    last = pd.read_parquet(table)["date"].max()
    assert check.status == "warn" and check.detail.startswith(f"{table}: ") and str(last) in check.detail
    assert "sources that end over 31 days before it: g5_estacoes_5g " in check.detail
    assert "--fetch" in check.fix
    gone = doctor_cli.check_features(load_config(None, {"features": str(tmp_path / "gone.parquet")}, env={},
                                                 dotenv=None), str(small_demo / "demand.parquet"))
    assert gone.status == "fail" and "gone.parquet not found" in gone.detail  # as a run stops on it
    empty = load_config(None, {"features": ""}, env={}, dotenv=None)  # no table, as a run reads it
    assert doctor_cli.check_features(empty, str(small_demo / "demand.parquet")).status == "ok"
    monkeypatch.chdir(tmp_path)  # the default table (data/processed/features.parquet) is not there
    cfg = load_config(None, {"processed": str(tmp_path / "empty")}, env={}, dotenv=None)
    none = doctor_cli.check_features(cfg, str(tmp_path / "elsewhere" / "demand.parquet"))
    assert none.status == "warn" and "the models run without them" in none.detail


def test_doctor_reports_missing_data_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "demand.parquet"
    res = runner.invoke(app, ["doctor", "--data", str(missing), "--results", str(tmp_path), "--no-ray"])
    assert res.exit_code == 1, res.output
    row = _rows(res.output)["demand data"]
    assert "✗" in row and "file not found" in row and "pass --data PATH" in row
    assert "1 check(s) failed: demand data" in res.output


def test_doctor_ray_check_explains_failures(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delattr(distributed, "probe_ray", raising=False)
    check, _ = doctor_cli.check_ray(None, 10)
    assert check.status == "fail" and "probe_ray" in check.detail
    monkeypatch.setattr(distributed, "probe_ray", lambda address=None: {}, raising=False)
    check, _ = doctor_cli.check_ray("127.0.0.1:1", 10)  # nothing listens there: fails at once, no ray.init
    assert check.status == "fail" and "cannot connect to 127.0.0.1:1" in check.detail
    assert "ray status --address 127.0.0.1:1" in check.fix
    check, _ = doctor_cli.check_ray("ray://127.0.0.1:1", 10)  # a Ray Client address: its port at once
    assert check.status == "fail" and "cannot connect to 127.0.0.1:1" in check.detail
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # none given: the variable's is named as such
    check, _ = doctor_cli.check_ray(None, 10)
    assert check.status == "fail" and check.detail.startswith(
        "cluster at 127.0.0.1:1 (from the environment variable RAY_ADDRESS): cannot connect"), check.detail
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(
        doctor_cli,
        "run_probe",
        lambda address, timeout: (_ for _ in ()).throw(TimeoutError(f"no answer within {timeout:.0f} s")),
    )
    check, _ = doctor_cli.check_ray(None, 7)
    assert check.status == "fail" and "no answer within 7 s" in check.detail
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert doctor_cli.check_output(str(blocker / "results")).status == "fail"
    store = doctor_cli.check_output(str(blocker / "models"), "model store", "--models-dir")
    assert store.name == "model store" and store.status == "fail" and "--models-dir" in store.fix
    # the publish target: never created by a run, so a missing one (a share not mounted) fails
    missing = doctor_cli.check_publish(str(tmp_path / "mnt" / "share"))
    assert missing.status == "fail" and "no such folder" in missing.detail
    assert "mount the share" in missing.fix
    assert doctor_cli.check_publish(str(tmp_path)).status == "ok"
    assert doctor_cli.check_publish("").status == "ok"  # an s3:// target: tests/test_s3_inputs.py
    gpu = doctor_cli.check_gpu(ray_gpus=1.0)
    assert gpu.status == "ok" or (gpu.status == "warn" and "tensorflow[and-cuda]" in gpu.fix)


@pytest.mark.skipif(
    not hasattr(distributed, "probe_ray"), reason="nova_ray.distributed.probe_ray not added yet"
)
def test_doctor_starts_a_local_ray(small_demo: Path, tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["doctor", "--data", str(small_demo / "demand.parquet"), "--results", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    row = _rows(res.output)["ray runtime"]
    assert "✓" in row and "1 CPU" in row and "a task ran on" in row


def test_doctor_prints_an_install_fix_with_its_brackets(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    """The fixes went through Rich's markup: `pip install -e '.[dev]'` printed as `-e '.'`, and the
    GPU hint's `tensorflow[and-cuda]` as plain `tensorflow` (no CUDA)."""
    import importlib

    from nova_ray.cli import doctor
    from nova_ray.cli.common import out

    real = importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == "fastapi":
            raise ImportError("simulated broken install")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(doctor.importlib, "import_module", broken)
    monkeypatch.setattr(out, "_width", 250)
    res = runner.invoke(app, ["doctor", "--results", str(tmp_path), "--no-ray"])
    row = _rows(res.output)["fastapi"]
    assert "✗" in row and "pip install -e '.[dev]'" in row, res.output
