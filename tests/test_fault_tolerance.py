"""Faults a cluster has: a killed worker (task retried, every item once), a killed driver (`--resume`
finishes the run from its checkpoints; the previous run stays readable throughout)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

pytestmark = pytest.mark.slow
ARGS = [
    "--full-refit",
    "--models",
    "arima,ets,theta",
    "--horizon",
    "7",
    "--backtest-windows",
    "1",
    "--num-cpus",
    "2",
    "-q",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from nova_ray.demo import generate_demo

    out = tmp_path_factory.mktemp("ft")
    generate_demo(out, items=20, days=400, seed=11)
    return out / "demand.parquet"


def _cli(*args: str, env: dict | None = None) -> subprocess.Popen:
    code = "from nova_ray.cli import main; main()"
    full_env = {**os.environ, "NOVA_RAY_BATCH_SECONDS": "0.3", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code, "forecast", *args],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _run(*args: str) -> str:
    p = _cli(*args)
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out.decode()
    return out.decode()


def _forecasts(out: Path) -> pl.DataFrame:
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    df = pl.read_parquet(out / "forecasts" / f"run_date={ptr['run_date']}", hive_partitioning=True)
    return df.sort("item_id", "model", "date")


def _procs(title: str, root: int) -> list[int]:
    """Processes whose command line starts with `title` and that descend from `root` (the run this
    test started: another nova-ray run on the machine is not touched)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(title.encode()) and _descends(int(d.name), root):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def _naming(text: str) -> list[int]:
    """Processes whose command line contains `text` (Ray's GCS and raylet name their session folder)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text.encode() in (d / "cmdline").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass
    return pids


def _descends(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        try:  # the parent pid: the field after the state, after the command name's closing paren
            pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _wait_for(cond, timeout: float = 300) -> None:
    t0 = time.time()
    while not cond():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def clean(demo: Path, tmp_path_factory) -> pl.DataFrame:
    out = tmp_path_factory.mktemp("clean")
    _run("--data", str(demo), "--output", str(out), *ARGS)
    return _forecasts(out)


def _run_killing(title: str, *args: str, env: dict | None = None) -> int:
    """A forecast run in which the first process titled `title` (a Ray worker or actor) of this
    run is killed once it is busy; the run must still succeed. Returns the killed process's PID."""
    p = _cli(*args, env=env)
    _wait_for(lambda: _procs(title, p.pid) or p.poll() is not None)
    victims = _procs(title, p.pid)
    assert victims, f"the run ended before a {title} process could be killed"
    os.kill(victims[0], signal.SIGKILL)
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log.decode()
    return victims[0]


def test_killed_worker_is_retried_and_every_item_appears_once(demo: Path, tmp_path: Path, clean) -> None:
    out = tmp_path / "out"
    _run_killing("ray::_batch_task", "--data", str(demo), "--output", str(out), *ARGS)
    got = _forecasts(out)
    assert got.group_by("item_id", "model", "date").len()["len"].max() == 1
    assert_frame_equal(got, clean)


def _unpublished(out: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """`nova-ray runs`' table of the runs that stopped before publishing (whitespace collapsed)."""
    from typer.testing import CliRunner

    from nova_ray.cli import app
    from nova_ray.cli.common import out as console

    monkeypatch.setattr(console, "_width", 250)
    res = CliRunner().invoke(app, ["runs", "--results", str(out)])
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split("unpublished runs in", 1)[-1].split())


def test_killed_driver_resumes_to_the_clean_result(
    demo: Path, tmp_path: Path, clean, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    _run("--data", str(demo), "--output", str(out), "--items", "CAB-0001", *ARGS)  # the previous run
    before = json.loads((out / "metadata" / "last_updated.json").read_text())
    p = _cli("--data", str(demo), "--output", str(out), *ARGS)
    done = lambda: list(out.glob(".staging/*/checkpoints/done/b-*"))  # noqa: E731  (batches of items)
    _wait_for(lambda: len(done()) >= 3 or p.poll() is not None)
    live = _unpublished(out, monkeypatch)  # `runs` while the run goes on: its stage, the folder locked
    assert p.poll() is None, "the run ended before the driver could be killed"
    assert f"running (pid {p.pid} since" in live, live
    os.killpg(p.pid, signal.SIGKILL)  # the driver and the local Ray it started
    p.wait()
    n_done = len(done())
    # `runs` lists the killed run with what its checkpoints hold, and how to go on
    listed = _unpublished(out, monkeypatch)
    items = sum(pl.read_parquet(f.parent.parent / "items" / f"{f.name}.parquet").height for f in done())
    assert f"{items} of 20 items" in listed and "interrupted" in listed and "running" not in listed, listed
    assert "with --resume" in listed
    # the killed driver left its run scratch and Ray session folders; the next run removes them
    left = [
        *Path(tempfile.gettempdir()).glob(f"nova-ray-run-{p.pid}-*"),
        *Path("/tmp").glob(f"nova-ray-ray-{p.pid}-*"),
    ]
    assert len(left) == 2, left
    # the previous run is still what readers see, complete
    assert json.loads((out / "metadata" / "last_updated.json").read_text()) == before
    assert _forecasts(out)["item_id"].unique().to_list() == ["CAB-0001"]
    log = _run("--data", str(demo), "--output", str(out), "--resume", *ARGS)
    record = json.loads((out / "metadata" / "runs" / f"{_pointer(out)['run_id']}.json").read_text())
    assert record["summary"]["resumed_items"] >= n_done, log
    assert "this attempt only" in log  # the wall time does not cover the killed attempt
    assert not list(out.glob(".staging/*")) and "unpublished" not in _unpublished(out, monkeypatch)
    assert not [d for d in left if d.exists()]
    assert_frame_equal(_forecasts(out), clean)


def test_sigterm_and_ctrl_c_end_a_run_with_a_message_and_resume(demo: Path, tmp_path: Path, clean) -> None:
    """SIGTERM to the driver (`timeout`, `kill`, a service manager) ends the run as Ctrl-C does: one
    line on how to go on, exit 143 (Ctrl-C: 130), nothing published, the run's Ray stopped and its
    temp folder removed; `--resume` then finishes it. Ray's own SIGTERM handler used to dump a C++
    stack and abort (134); typer used to swallow Ctrl-C's message."""
    out = tmp_path / "out"
    done = lambda: list(out.glob(".staging/*/checkpoints/done/b-*"))  # noqa: E731
    for sig, code, word in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")):
        p = _cli("--data", str(demo), "--output", str(out), "--resume", *ARGS)
        n = len(done())
        _wait_for(lambda: len(done()) > n or p.poll() is not None)  # noqa: B023
        assert p.poll() is None, "the run ended before it could be signalled"
        os.kill(p.pid, sig)  # the driver alone
        log = p.communicate(timeout=120)[0].decode()
        assert p.returncode == code, log
        assert f"{word}: nothing was published; rerun `nova-ray forecast --data {demo} " in log, log
        assert "--resume` to continue (the same day or the next)" in log, log
        assert "SIGTERM received" not in log and not (out / "metadata" / "last_updated.json").exists()
        assert not list(Path("/tmp").glob(f"nova-ray-ray-{p.pid}-*"))  # Ray stopped, its folder gone
        _wait_for(lambda: not _naming(f"nova-ray-ray-{p.pid}-"), timeout=60)  # noqa: B023  (GCS, raylet)
    log = _run("--data", str(demo), "--output", str(out), "--resume", *ARGS)
    assert_frame_equal(_forecasts(out), clean)


def _pointer(out: Path) -> dict:
    return json.loads((out / "metadata" / "last_updated.json").read_text())


LSTM_ARGS = ["--full-refit", "--models", "naive,lstm", *ARGS[3:]]  # the global LSTM on every item


def test_killed_lstm_actor_is_restarted_and_the_run_completes(demo: Path, tmp_path: Path) -> None:
    env = {"NOVA_RAY_EPOCHS": "3"}
    p = _cli("--data", str(demo), "--output", str(tmp_path / "clean"), *LSTM_ARGS, env=env)
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log.decode()
    clean = _forecasts(tmp_path / "clean")
    out = tmp_path / "out"
    args = ["--data", str(demo), "--output", str(out), *LSTM_ARGS]
    victim = _run_killing("ray::_LstmActor.run", *args, env=env)
    got = _forecasts(out)
    lstm = got.filter(pl.col("model") == "lstm")
    assert sorted(lstm["item_id"].unique()) == sorted(clean["item_id"].unique())
    assert got.group_by("item_id", "model", "date").len()["len"].max() == 1
    assert_frame_equal(got, clean)
    # the LSTM's rows came from the restarted actor, not from the process killed
    workers = json.loads((out / "metadata" / "runs" / f"{_pointer(out)['run_id']}.json").read_text())
    assert not [w for w in workers["summary"]["workers"] if w.endswith(f":{victim}")]


CRASH = '''
import os
import time
import numpy as np
import nova_ray.models.theta as theta

def _crashing(fit):
    def run(y, *args, **kwargs):
        y = np.asarray(y, dtype=float)
        if np.any(np.isclose(y, 4.2424)):
            os.abort()  # as a C extension's segfault or abort would end the worker
        if np.any(np.isclose(y, 4.2525)):
            time.sleep(3600)  # a fit that never returns
        return fit(y, *args, **kwargs)
    return run

theta.forecast, theta.backtest = _crashing(theta.forecast), _crashing(theta.backtest)
'''


def test_items_that_crash_their_worker_or_never_return_fall_back_and_the_run_completes(
    demo: Path, tmp_path: Path, clean: pl.DataFrame
) -> None:
    """One item whose fit crashed its worker every time (a C extension's abort; here Theta aborts
    on the one series holding 4.2424, injected by a sitecustomize the workers import) failed its
    batch after the retries, and the run with it: nothing published, and `--resume` failed the
    same way; one whose fit never returned (4.2525: Theta sleeps) stalled the night for good. A
    failed or late batch's items are now fitted one by one, such an item with seasonal naive
    only, flagged with why; every other item's forecasts are the clean run's."""
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(CRASH)
    df = pl.read_parquet(demo)
    bad, stuck = sorted(df["item_id"].unique().to_list())[3:5]
    day = df["date"].sort()[10]
    shutil.copytree(demo.parent, tmp_path / "demo")  # its raw/ folder: the same external factors
    data = tmp_path / "demo" / "demand.parquet"
    on = pl.col("date") == day
    df.with_columns(quantity=pl.when((pl.col("item_id") == bad) & on).then(4.2424)
                    .when((pl.col("item_id") == stuck) & on).then(4.2525)
                    .otherwise(pl.col("quantity"))).write_parquet(data)
    out = tmp_path / "out"
    env = {"PYTHONPATH": str(inject), "NOVA_RAY_TASK_TIMEOUT_SECONDS": "20"}
    p = _cli("--data", str(data), "--output", str(out), *ARGS, env=env)
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log.decode()
    got = _forecasts(out)
    others = ~pl.col("item_id").is_in([bad, stuck])
    assert_frame_equal(got.filter(others), clean.filter(others))
    for item in (bad, stuck):
        assert sorted(got.filter(pl.col("item_id") == item)["model"].unique()) == ["ensemble", "naive"]
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    items = pl.read_parquet(out / "items" / f"run_date={ptr['run_date']}")
    notes = dict(zip(items["item_id"], items["notes"], strict=True))
    assert "its fit failed (WorkerCrashedError" in notes[bad]
    assert "its fit failed (TimeoutError: no result 20 s after it was submitted)" in notes[stuck]
    assert items.filter(pl.col("fallback"))["item_id"].sort().to_list() == sorted([bad, stuck])
