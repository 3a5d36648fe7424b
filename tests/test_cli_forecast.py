"""`nova-ray forecast` end to end through CliRunner on real local Ray (num_cpus=2)."""

import json
import shutil
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow.dataset as ds
import pytest
from typer.testing import CliRunner

from nova_ray.cli import app
from nova_ray.schemas import FORECASTS

runner = CliRunner()


def _forecast(data: Path, out: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "forecast",
            "--data",
            str(data),
            "--output",
            str(out),
            "--horizon",
            "14",
            "--num-cpus",
            "2",
            "--quiet",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def run_once(small_demo: Path, tmp_path_factory, ray_session):
    out = tmp_path_factory.mktemp("results")
    res = _forecast(small_demo / "demand.parquet", out)
    assert res.exit_code == 0, res.output
    return out, res


def test_outputs_schema_partitions_and_counts(run_once, small_demo: Path) -> None:
    out, res = run_once
    assert "items" in res.output and "output" in res.output
    pointer = json.loads((out / "metadata" / "last_updated.json").read_text())
    run_date = pointer["run_date"]
    fc_dir = out / "forecasts" / f"run_date={run_date}"
    models = sorted(p.name.split("=")[1] for p in fc_dir.iterdir())
    assert "ensemble" in models and "naive" in models
    table = ds.dataset(out / "forecasts", format="parquet", partitioning="hive").to_table()
    assert set(FORECASTS.names) <= set(table.column_names) and {"run_date", "model"} <= set(
        table.column_names
    )
    df = pl.from_arrow(table)
    n_items = pl.read_parquet(small_demo / "demand.parquet")["item_id"].n_unique()
    ens = df.filter(pl.col("model") == "ensemble")
    assert ens["item_id"].n_unique() == n_items and ens.height == n_items * 14
    assert (df["lo_95"] <= df["forecast"] + 1e-9).all() and (df["forecast"] >= 0).all()
    # polars and pandas read the folder as a dataset too
    assert (
        pl.scan_parquet(str(out / "forecasts" / "**" / "*.parquet"), hive_partitioning=True).collect().height
        == df.height
    )
    import pandas as pd

    assert len(pd.read_parquet(out / "forecasts")) == df.height
    versions = json.loads((out / "metadata" / "model_versions.json").read_text())
    assert versions["run_id"] == pointer["run_id"] and versions["dataset_id"] == pointer["dataset_id"]
    assert {"mape", "rmse", "mase", "accuracy"} <= set(versions["models"]["ensemble"])
    assert versions["row_counts"]["forecasts"] == df.height
    # the demo's external factors: the backtest windows saw the rows known at their origins
    assert versions["exog"]["backtest_exog"] == {"rows": "known at each origin", "windows_back": [14, 28, 42]}
    meta = table.schema.metadata
    assert (
        meta[b"run_id"].decode() == pointer["run_id"] and b"model_version" in meta and b"dataset_id" in meta
    )
    metrics = pl.read_parquet(out / "metrics" / f"run_date={run_date}")
    assert {"mae", "rmse", "smape", "mase", "mape", "bias", "coverage_80"} <= set(metrics.columns)
    # the recorded WAPE: total absolute error over total demand of the windows (not a mean of ratios)
    bt = pl.read_parquet(out / "backtests" / f"run_date={run_date}", hive_partitioning=True)
    win = (bt.filter(pl.col("model") == "ensemble").group_by("item_id", "window")
           .agg(e=(pl.col("actual") - pl.col("forecast")).abs().sum(), a=pl.col("actual").abs().sum())
           .filter((pl.col("a") > 0) & (pl.col("e") > 0)))
    ens_versions = versions["models"]["ensemble"]
    assert ens_versions["wape"] == pytest.approx(win["e"].sum() / win["a"].sum(), rel=1e-9)
    assert ens_versions["accuracy"] == pytest.approx(max(0.0, 1 - ens_versions["wape"]))
    assert pl.read_parquet(out / "ensemble_weights" / f"run_date={run_date}").group_by("item_id").agg(
        pl.col("weight").sum()
    )["weight"].to_list() == pytest.approx([1.0] * n_items)


def test_second_run_replaces_the_partition(run_once, small_demo: Path) -> None:
    out, _ = run_once
    before = json.loads((out / "metadata" / "last_updated.json").read_text())
    res = _forecast(
        small_demo / "demand.parquet", out, "--items", "CAB-0001,ELE-0001", "--models", "naive,theta"
    )
    assert res.exit_code == 0, res.output
    after = json.loads((out / "metadata" / "last_updated.json").read_text())
    assert after["run_id"] != before["run_id"]
    df = pl.read_parquet(out / "forecasts" / f"run_date={after['run_date']}", hive_partitioning=True)
    assert sorted(df["item_id"].unique()) == ["CAB-0001", "ELE-0001"]
    assert sorted(df["model"].unique()) == ["ensemble", "naive", "theta"]
    assert not (out / ".staging").exists()


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path, small_demo: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,date,quantity\nA,2024-01-01,1\nA,2024-01-02,-5\n")
    out = tmp_path / "out"
    res = _forecast(bad, out)
    assert res.exit_code == 2
    assert "bad.csv: line 3: quantity -5" in res.output
    assert not out.exists()
    res = _forecast(small_demo / "demand.parquet", out, "--items", "CAB-001")
    assert res.exit_code == 2 and "did you mean CAB-0001" in res.output and not out.exists()
    res = _forecast(small_demo / "demand.parquet", out, "--models", "prophet,sarima")
    assert res.exit_code == 2 and "unknown model 'sarima'" in res.output


def test_failed_run_leaves_previous_output_untouched(run_once, small_demo: Path, tmp_path: Path) -> None:
    out, _ = run_once
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    res = _forecast(small_demo / "demand.parquet", copy, "--freq", "Z")
    assert res.exit_code == 2 and "freq" in res.output
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


def test_help_explains_every_option() -> None:
    res = runner.invoke(app, ["forecast", "--help"])
    assert res.exit_code == 0
    for opt in ("--data", "--items", "--horizon", "--freq", "--models", "--output", "--address", "--config"):
        assert opt in res.output


def test_only_metrics_then_only_forecasts(small_demo: Path, tmp_path: Path, ray_session) -> None:
    out = tmp_path / "only"
    args = ("--items", "CAB-0002,ELE-0001", "--models", "naive,theta")
    res = _forecast(small_demo / "demand.parquet", out, *args, "--only-metrics")
    assert res.exit_code == 0, res.output
    run_date = json.loads((out / "metadata" / "last_updated.json").read_text())["run_date"]
    assert (out / "metrics" / f"run_date={run_date}").exists()
    assert not (out / "forecasts").exists()
    metrics = pl.read_parquet(out / "metrics" / f"run_date={run_date}")
    assert set(metrics["model"]) == {"naive", "theta", "ensemble"}
    res = _forecast(small_demo / "demand.parquet", out, *args, "--only-forecasts")
    assert res.exit_code == 0, res.output
    assert (out / "forecasts" / f"run_date={run_date}").exists()
    assert (out / "metrics" / f"run_date={run_date}").exists()  # not this run's kind: left as it was
    res = _forecast(small_demo / "demand.parquet", out, *args, "--only-forecasts", "--only-metrics")
    assert res.exit_code == 2


def test_failure_while_writing_publishes_nothing(small_demo: Path, tmp_path: Path, monkeypatch) -> None:
    from nova_ray.config import load_config
    from nova_ray.io.results import ResultWriter
    from nova_ray.pipeline import run_forecast

    out = tmp_path / "out"
    cfg = load_config(
        None,
        {
            "data": str(small_demo / "demand.parquet"),
            "output": str(out),
            "horizon": 7,
            "models": "naive",
            "backtest_windows": 1,
            "models_dir": str(tmp_path / "models"),
        },
        env={},
        dotenv=None,
    )
    run_forecast(cfg, ["CAB-0001"], use_ray=False)
    before = {
        p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and "logs" not in p.parts
    }

    def boom(self, kind, table):
        raise OSError("disk full")

    monkeypatch.setattr(ResultWriter, "write", boom)
    with pytest.raises(OSError, match="disk full"):
        run_forecast(cfg, ["CAB-0001", "CAB-0002"], use_ray=False)
    after = {
        p.relative_to(out): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and not {".staging", "logs"} & set(p.parts)
    }
    assert after == before  # checkpoints stay hidden in .staging for --resume; nothing was published
    logs = sorted((out / "logs").glob("*.log"))
    assert len(logs) == 2 and any("run failed: OSError: disk full" in p.read_text() for p in logs)


def test_console_entry_point_exit_codes(tmp_path: Path) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", "from nova_ray.cli import main; main()", *args],
            capture_output=True,
            text=True,
            timeout=120,
        )

    bad = run("forecast", "--models", "bogus", "--output", str(tmp_path / "o"))
    assert bad.returncode == 2 and "unknown model 'bogus'" in bad.stderr
    assert run("forecast", "--data", str(tmp_path / "none.csv")).returncode == 2
    assert run("--help").returncode == 0
    # usage errors: click's message on one line and exit 2, never a traceback (typer raises its own
    # copy of click's exceptions, which the entry point once let through as exit 1) nor click's
    # four lines (usage, "Try ... --help", blank, "Error: ...")
    for args, line in (
        (["forecast", "--bogus"], "error: No such option: --bogus"),
        (["forecast", "--horizon", "0"], "error: Invalid value for '--horizon': Input should be greater "
         "than or equal to 1 (see nova-ray forecast --help)"),
        (["forecst"], "error: No such command 'forecst'. Did you mean 'forecast'? (see nova-ray --help)"),
        (["sync"], "error: Missing option '--to' (see nova-ray sync --help)"),
    ):
        res = run(*args)
        assert res.returncode == 2 and res.stderr.startswith(line), (args, res.stderr)
        assert res.stderr.count("\n") == 1 and not res.stdout, (args, res.stderr)
    help_text = run("forecast", "--help")
    assert help_text.returncode == 0 and "Usage: nova-ray forecast [OPTIONS]" in help_text.stdout
    # a message with brackets keeps them (rich markup would eat '[forecast]')
    toml = tmp_path / "bad.toml"
    toml.write_text("[forecast]\nhorizonn = 3\n")
    res = run("forecast", "--config", str(toml))
    assert res.returncode == 2 and "unknown setting 'horizonn' in [forecast]" in " ".join(res.stderr.split())


def test_demo_run_writes_recommendations_and_backtests(run_once) -> None:
    out, res = run_once
    pointer = json.loads((out / "metadata" / "last_updated.json").read_text())
    recs = pl.read_parquet(out / "recommendations" / f"run_date={pointer['run_date']}")
    assert recs.height == pointer["row_counts"]["recommendations"] > 0
    assert set(recs["urgency"]) <= {"critical", "high", "medium", "ok"}
    order = {"critical": 0, "high": 1, "medium": 2, "ok": 3}
    ranks = [order[u] for u in recs["urgency"]]
    assert ranks == sorted(ranks)  # most urgent first
    assert (out / "backtests" / f"run_date={pointer['run_date']}" / "model=ensemble").exists()
    assert "recommendations" in res.output


def test_bad_stock_exits_2_before_fitting(small_demo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "stock.csv"
    bad.write_text("item_id,on_hand,lead_time_days\nCAB-0001,3,-5\n")  # (a negative on_hand is units owed)
    out = tmp_path / "out"
    res = _forecast(small_demo / "demand.parquet", out, "--stock", str(bad))
    assert res.exit_code == 2 and "stock.csv" in res.output and "lead_time_days" in res.output
    assert not out.exists()


def test_run_record_times_each_stage(run_once) -> None:
    """The run record and the summary say where the wall time went, stage by stage."""
    out, res = run_once
    pointer = json.loads((out / "metadata" / "last_updated.json").read_text())
    record = json.loads((out / "metadata" / "runs" / f"{pointer['run_id']}.json").read_text())["summary"]
    stages = record["stage_seconds"]
    assert set(stages) == {"read input", "start Ray", "fit and backtest", "ensemble and metrics",
                           "recommendations"}  # publish ends after the record is written
    assert all(v >= 0 for v in stages.values()) and stages["fit and backtest"] > 0
    assert sum(stages.values()) <= record["wall_seconds"] + 0.01
    assert "stages" in res.output  # the summary table's row (its text wraps)


def test_warnings_print_as_text_and_ray_errors_name_the_ray(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings are plain text (a stock file under `data/[old]/` or an item id `[/x]` broke or
    vanished as rich markup); a Ray that cannot be reached is named even when it came from
    RAY_ADDRESS (inside a Ray job) or is the local one, not 'cannot reach Ray at :'."""
    from nova_ray.cli.common import ray_target, ray_unreachable, warn
    from nova_ray.config import Config

    warn(["stock data/[old]/stock.csv: line 3: item '[/x]' unknown", "b", "c"], most=2)
    text = " ".join(capsys.readouterr().err.split())
    assert "data/[old]/stock.csv: line 3: item '[/x]' unknown" in text and "... and 1 more" in text
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_target(Config()) == "a local Ray (started here)"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert ray_target(Config()) == "10.0.0.5:6379"
    # a refused driver without RAY_AUTH_MODE is told the likely cause
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    line = ray_unreachable(Config(), ConnectionError("Failed to connect to Ray cluster at 10.0.0.5:6379"))
    assert line.startswith("cannot reach Ray at 10.0.0.5:6379: Failed")
    assert "export RAY_AUTH_MODE=token" in line
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    line = ray_unreachable(Config(), ConnectionError("x"))  # in token mode: the token may be another's
    assert "RAY_AUTH_MODE" not in line and "check that this shell's token" in line
    from nova_ray.distributed import HeadUnreachable

    down = ray_unreachable(Config(), HeadUnreachable("cannot connect to 10.0.0.5:6379 within 15 s: refused"))
    assert "token" not in down  # the port did not answer: no token hint


def test_a_cluster_address_that_cannot_work_fails_fast(tmp_path: Path, small_demo: Path) -> None:
    """An unreachable head: one line within the connect timeout (ray.init waited for ever, holding
    the job lock); an HTTP or malformed address: a usage error naming it (a traceback, exit 1)."""
    from nova_ray.distributed import AddressError, check_address

    with pytest.raises(ConnectionError, match="cannot connect to 127.0.0.1:1 within 2 s"):
        check_address("127.0.0.1:1", timeout=2)
    for bad, why in (("http://127.0.0.1:8265", "not a URL"), ("foo bar", "expected HOST:PORT"),
                     ("127.0.0.1:notaport", "expected HOST:PORT"),
                     ("127.0.0.1:112547", "port 112547 is not one"),
                     ("fd00::5:6379", r"an IPv6 host goes in brackets, e.g. \[fd00::5\]:6379")):
        with pytest.raises(AddressError, match=why):
            check_address(bad)
    check_address("auto")  # left to Ray
    # a port that takes connections but is no Ray head (ray.init waited for ever, holding the job
    # locks): one that says nothing, an HTTP server
    import http.server
    import socket
    import threading

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ConnectionError, match=f"^{where} accepts connections but is not a Ray head's GCS "
                           r"port \(no gRPC answer within 1 s"):
            check_address(where, timeout=1)
    if socket.has_ipv6:  # an IPv6 head, in brackets as Ray writes it: reached (the brackets were
        # handed to the socket: "Name or service not known")
        with socket.socket(socket.AF_INET6) as silent:
            try:
                silent.bind(("::1", 0))
            except OSError:  # no IPv6 loopback here
                pass
            else:
                silent.listen(4)
                where = f"[::1]:{silent.getsockname()[1]}"
                with pytest.raises(ConnectionError, match=r"accepts connections but is not a Ray head"):
                    check_address(where, timeout=1)
    quiet = type("Quiet", (http.server.BaseHTTPRequestHandler,), {"log_message": lambda *a: None})
    web = http.server.HTTPServer(("127.0.0.1", 0), quiet)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConnectionError, match="accepts connections but is not a Ray head"):
            check_address(f"127.0.0.1:{web.server_address[1]}", timeout=5)
    finally:
        web.shutdown()
    # RAY_ADDRESS, when no address is given, is named as the one that cannot work
    with pytest.raises(AddressError, match=r"^environment variable RAY_ADDRESS: Ray address 'http://"):
        check_address("http://127.0.0.1:8265", named="environment variable RAY_ADDRESS")
    from nova_ray.distributed import RayBackend

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ADDRESS", "http://127.0.0.1:8265")
        assert RayBackend()._from_env and not RayBackend("10.0.0.5:6379")._from_env
    res = CliRunner().invoke(app, ["forecast", "--address", "http://127.0.0.1:8265", "--data",
                                   str(small_demo / "demand.parquet"), "--models", "naive",
                                   "--output", str(tmp_path / "out"), "-q"])
    assert res.exit_code == 2 and "not a URL" in res.output
    # a head that cannot be reached: said before the run's lock, log or checkpoints are written
    # (`nova-ray runs` listed the run as one to resume); in a process of its own, as a user runs it
    # (this module's Ray session would be used instead, with a warning)
    import subprocess
    import sys

    out, models = tmp_path / "unreached", tmp_path / "unreached-models"
    res = subprocess.run(
        [sys.executable, "-c", "from nova_ray.cli import main; main()", "forecast", "--address",
         "127.0.0.1:1", "--data", str(small_demo / "demand.parquet"), "--models", "naive",
         "--output", str(out), "--models-dir", str(models), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 1 and "cannot reach Ray at 127.0.0.1:1" in res.stderr, res.stderr
    assert not out.exists() and not models.exists()


def test_an_interrupted_command_says_how_to_go_on(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """`run` resumes by itself (it has no --resume, which the message used to name for every
    command); forecast and train take --resume."""
    import sys

    from nova_ray.cli import _resume_hint
    from nova_ray.io import results

    # before any checkpoint (reading, Ray's start, an address that hangs) there is nothing to resume
    monkeypatch.setattr(results, "CHECKPOINTED", 0)
    for argv in (["nova-ray", "forecast"], ["nova-ray", "train"]):
        monkeypatch.setattr(sys, "argv", argv)
        assert _resume_hint() == "nothing was checkpointed yet: rerun to start again"
    monkeypatch.setattr(results, "CHECKPOINTED", 3)
    from datetime import date

    import nova_ray.cli.run as run_cli

    # the command as it was given (a `run --full-refit` rerun without it did not resume: a new warm
    # run), with --resume, and `run`'s date (a rerun after midnight would run another date)
    monkeypatch.setattr(run_cli, "RUN_DATE", date(2026, 11, 27))
    for argv, hint in ((["nova-ray", "run", "--date", "2026-11-25", "--full-refit"],
                        "rerun `nova-ray run --date 2026-11-25 --full-refit` to continue (it resumes)"),
                       (["nova-ray", "run", "--force", "--fetch", "-q"],  # new factor files: no resume
                        "rerun `nova-ray run --force -q --date 2026-11-27` to continue (it resumes)"),
                       (["nova-ray", "-q", "forecast", "--data", "a b.csv"],
                        "rerun `nova-ray -q forecast --data 'a b.csv' --resume` to continue (the same day"),
                       (["nova-ray", "train", "--resume"], "rerun `nova-ray train --resume` to continue"),
                       (["nova-ray", "etl"], "rerun to start again")):
        monkeypatch.setattr(sys, "argv", argv)
        assert hint in _resume_hint()
    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0 and "--resume" in res.output
    # a `run` stopped while it published its saved run: that run is not "nothing published"
    from nova_ray.cli import _interrupted

    monkeypatch.setattr(sys, "argv", ["nova-ray", "run", "--to", "s3://b/p"])
    monkeypatch.setattr(run_cli, "SAVED_RUN", "20261127-0a1b2c3d")
    with pytest.raises(SystemExit) as stop:
        _interrupted()
    assert stop.value.code == 130
    assert capsys.readouterr().err.strip() == (
        "interrupted: run 20261127-0a1b2c3d is saved in the results folder, its publish was cut short; rerun "
        "`nova-ray run --to s3://b/p --date 2026-11-27` to continue (it resumes)")


def test_demo_data_only_for_the_default_path_and_help_keeps_brackets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing demand file in a folder named demo is the run's error, not replaced with generated
    demo data that would then be forecast and published; at the default path it is written, the
    Quick start's 60 items (it was 200); help text keeps its [section] names."""
    import pandas as pd

    from nova_ray.cli.forecast import ensure_demo
    from nova_ray.config import Paths

    ensure_demo(str(tmp_path / "demo" / "demand.parquet"))
    assert not (tmp_path / "demo").exists()
    monkeypatch.chdir(tmp_path)
    ensure_demo(Paths.data)
    assert pd.read_parquet(Paths.data, columns=["item_id"])["item_id"].nunique() == 60
    res = CliRunner().invoke(app, ["forecast", "--help"], terminal_width=200)
    assert "[forecast] features" in res.output
    import re

    import typer

    group, checked = typer.main.get_command(app), 0
    for name, command in group.commands.items():  # every [section] of every command's help (run's ate [etl])
        shown = " ".join(CliRunner().invoke(app, [name, "--help"], terminal_width=300).output.split())
        for param in command.params:
            for section in re.findall(r"\[[a-z_]+\]", (getattr(param, "help", "") or "").replace("\\", "")):
                assert section in shown, (name, param.name, section)
                checked += 1
    assert checked >= 5
    # the command list shows each command's first docstring paragraph on one line (Rich kept the
    # docstring's line breaks: "... the results folder, the" / "model store and ...")
    for name, command in group.commands.items():
        assert command.short_help and "\n" not in command.short_help, name


def test_a_chosen_features_file_that_is_missing_stops_the_run(small_demo: Path, tmp_path: Path) -> None:
    """--features with a typo ran silently without the factors (or on the raw/ folder); now a
    one-line error naming the setting and its source, exit 2, nothing written. An output folder
    that cannot be made is one line and exit 1, not a traceback."""
    out = tmp_path / "out"
    args = ["forecast", "--data", str(small_demo / "demand.parquet"), "--output", str(out),
            "--features", str(tmp_path / "featurs.parquet"), "--no-ray", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "option --features: setting 'features':" in res.output
    assert "featurs.parquet not found" in " ".join(res.output.split()) and not out.exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    args = ["forecast", "--data", str(small_demo / "demand.parquet"), "--output", str(blocked / "out"),
            "--models", "naive", "--horizon", "7", "--no-ray", "-q"]
    res = CliRunner().invoke(app, args)  # a file where the output folder would be made: one line, exit 2
    assert res.exit_code == 2
    assert res.output.strip() == f"error: --output {blocked / 'out'}: {blocked} is a file, not a folder"
    assert blocked.read_text() == ""


def test_a_file_in_place_of_an_output_folder_is_one_line_and_exit_2(
    small_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`X/logs: Not a directory` (exit 1) was what a file given as --output got; now every command
    that writes a folder says so on one line, exit 2, before writing anything (not even the demo)."""
    monkeypatch.chdir(tmp_path)  # no --data: the demo data would be written to ./data/demo
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    data = str(small_demo / "demand.parquet")
    cases = [
        (["forecast", "--output", str(blocked)], f"--output {blocked} is a file, not a folder"),
        (["forecast", "--data", data, "--models-dir", str(blocked / "m")],
         f"--models-dir {blocked / 'm'}: {blocked} is a file, not a folder"),
        (["train", "--models-dir", str(blocked)], f"--models-dir {blocked} is a file, not a folder"),
        (["run", "--to", str(blocked / "pub")], f"--to {blocked / 'pub'}: {blocked} is a file, not a folder"),
        (["recommend", "--results", str(blocked)], f"--results {blocked} is a file, not a folder"),
        (["sync", "--to", str(blocked / "pub"), "--results", str(tmp_path)],
         f"--to {blocked / 'pub'}: {blocked} is a file, not a folder"),
        (["etl", "--out", str(blocked / "p")], f"--out {blocked / 'p'}: {blocked} is a file, not a folder"),
        (["demo-data", "--out", str(blocked / "d")],
         f"--out {blocked / 'd'}: {blocked} is a file, not a folder"),
        (["runs", "--results", str(blocked)], f"--results {blocked} is a file, not a folder"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(app, args, terminal_width=400)
        assert res.exit_code == 2 and res.output.strip() == f"error: {message}", (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and blocked.read_text() == "x"
    # a folder set in the config is named by its setting and where it was set
    monkeypatch.setenv("NOVA_RAY_OUTPUT", str(blocked))
    res = CliRunner().invoke(app, ["forecast", "--data", data], terminal_width=400)
    assert res.exit_code == 2 and res.output.strip() == (
        f"error: paths.output {blocked} (environment variable NOVA_RAY_OUTPUT) is a file, not a folder")


def test_the_demo_default_is_announced_and_recorded(
    small_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --data (and no paths.data of one's own) `forecast` runs on the demo data set: a
    warning on stderr says so, the summary's data line says DEMO, the run record has demo_data.
    The summary's paths are whole on a narrow console (an 80-column cron log cut the log's)."""
    from nova_ray.cli.common import out

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(out, "_width", 40)
    demo = tmp_path / "data" / "demo"
    demo.mkdir(parents=True)
    for name in ("demand.parquet", "stock.parquet"):
        shutil.copy(small_demo / name, demo / name)
    args = ["forecast", "--items", "CAB-0001,STL-0002,ELE-0003", "--models", "naive", "--horizon", "7",
            "--backtest-windows", "1", "--no-ray", "-q", "--output", str(tmp_path / "out")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert ("warning: no --data and no paths.data of your own: forecasting the generated DEMO data in "
            "data/demo/demand.parquet (invented demand, not yours)") in res.output
    assert "data   data/demo/demand.parquet (DEMO data: generated, not real demand)\n" in res.output
    pointer = json.loads((tmp_path / "out" / "metadata" / "last_updated.json").read_text())
    record = json.loads((tmp_path / "out" / "metadata" / "runs" / f"{pointer['run_id']}.json").read_text())
    assert record["summary"]["demo_data"] is True
    # the demo's history ends on a fixed day (2023-12-31 here): a stock-out projected after it is
    # not "before the run date", critical (9 of the Quick start's 25 critical rows were only that)
    recs = pl.read_parquet(tmp_path / "out" / "recommendations" / f"run_date={pointer['run_date']}")
    assert recs.height and recs["stockout_date"].max() < date(2024, 6, 1)
    assert not recs.filter(pl.col("notes").str.contains("before the run date")).height
    again = CliRunner().invoke(app, ["recommend", "--results", str(tmp_path / "out")])  # recomputed alike
    assert again.exit_code == 0 and "before the run date" not in again.output, again.output
    log = record["summary"]["log_path"]
    assert len(log) > 40 and f"output {tmp_path / 'out'}\n" in res.output and f"log    {log}\n" in res.output
    # the same rows as a file of one's own: no warning, no DEMO
    mine = tmp_path / "mine.parquet"
    shutil.copy(demo / "demand.parquet", mine)
    res = CliRunner().invoke(app, [*args, "--data", str(mine), "--stock", str(demo / "stock.parquet")])
    assert res.exit_code == 0 and "DEMO" not in res.output, res.output
    assert f"data   {mine}\n" in res.output
    pointer = json.loads((tmp_path / "out" / "metadata" / "last_updated.json").read_text())
    record = json.loads((tmp_path / "out" / "metadata" / "runs" / f"{pointer['run_id']}.json").read_text())
    assert record["summary"]["demo_data"] is False
    recs = pl.read_parquet(tmp_path / "out" / "recommendations" / f"run_date={pointer['run_date']}")
    assert recs.filter(pl.col("notes").str.contains("before the run date")).height  # your data: late


def test_sigterm_while_joining_a_cluster_ends_as_a_sigterm_does() -> None:
    """Ray's handler, installed during ray.init, exits with code 15 on SIGTERM (no line, not 143):
    inside `_sigterm_kept` that exit goes to the handler the CLI had (which ends the run)."""
    import signal

    from nova_ray.distributed.session import _sigterm_kept

    class Ended(Exception):
        pass

    def cli_handler(signum: int, frame: object) -> None:
        raise Ended(signum)

    before = signal.signal(signal.SIGTERM, cli_handler)
    try:
        with pytest.raises(Ended), _sigterm_kept():
            raise SystemExit(signal.SIGTERM)  # what Ray's sigterm_handler does
        with pytest.raises(SystemExit), _sigterm_kept():
            raise SystemExit(1)  # other exits pass through
        assert signal.getsignal(signal.SIGTERM) is cli_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def _unwritable_folder(tmp_path: Path) -> Path | None:
    """A folder this process cannot write: a read-only one of its own, or as root (which writes
    any mode) a read-only mount such as /proc/sys; None when there is none."""
    import os

    mine = tmp_path / "read-only"
    mine.mkdir()
    mine.chmod(0o500)
    for candidate in (mine, Path("/proc/sys")):
        if candidate.is_dir() and not os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return None


def test_a_folder_that_cannot_be_written_is_one_line_and_exit_2(small_demo: Path, tmp_path: Path) -> None:
    """A results or models folder that cannot be created or written failed with a bare
    `PermissionError` (exit 1) naming no option; a read-only results folder stays fine to list."""
    locked = _unwritable_folder(tmp_path)
    if locked is None:
        pytest.skip("no folder here that this process cannot write")
    data = str(small_demo / "demand.parquet")
    try:
        for args, label in ((["--output", str(locked / "out")], "--output"),
                            (["--models-dir", str(locked / "m")], "--models-dir")):
            res = CliRunner().invoke(app, ["forecast", "--data", data, *args], terminal_width=400)
            assert res.exit_code == 2 and res.output.strip() == (
                f"error: {label} {args[1]}: {locked} cannot be written (it would be created in {locked}): "
                "permission denied or a read-only file system"), res.output
        res = CliRunner().invoke(app, ["runs", "--results", str(locked)], terminal_width=400)
        assert "cannot be written" not in res.output  # reading needs no write access
    finally:
        (tmp_path / "read-only").chmod(0o700)


def test_a_horizon_past_the_tables_last_date_is_one_line(small_demo: Path, tmp_path: Path) -> None:
    """`--freq M --horizon 3000` crashed with a traceback (pandas' last timestamp is in 2262) after
    the run had staged checkpoints and a log, which `nova-ray runs` then listed as a run to resume."""
    out, models = tmp_path / "out", tmp_path / "models"
    for freq, horizon in (("D", "100000"), ("M", "3000"), ("Y", "300")):
        res = CliRunner().invoke(app, ["forecast", "--data", str(small_demo / "demand.parquet"), "--output",
                                       str(out), "--models-dir", str(models), "--no-ray", "--models", "naive",
                                       "-q", "--freq", freq, "--horizon", horizon])
        assert res.exit_code == 2, res.output
        assert f"--horizon {horizon} ({freq}) reaches past 2262-04-11" in res.output
        assert "Traceback" not in res.output and not out.exists() and not models.exists()


def test_num_cpus_that_does_nothing_or_oversubscribes_is_said(monkeypatch: pytest.MonkeyPatch) -> None:
    """--num-cpus with --address (or RAY_ADDRESS) was ignored without a word, and 16 on 2 cores
    accepted silently. The CPUs counted are those the process may use (its affinity mask, a
    container's quota), not the host's cores."""
    import os

    from nova_ray.cli.forecast import _cpus_notes
    from nova_ray.config import load_config
    from nova_ray.distributed import local_cpus

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cores = local_cpus()
    assert _cpus_notes(load_config(None, {"num_cpus": cores}, env={}, dotenv=None)) == []
    assert _cpus_notes(load_config(None, {"num_cpus": cores + 1}, env={}, dotenv=None)) == [
        f"--num-cpus {cores + 1} is more than the {cores} CPU(s) this machine gives it: tasks share them"]
    if cores > 1:  # pinned to one CPU (taskset): 2 is more than it has, whatever the host's count
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert _cpus_notes(load_config(None, {"num_cpus": 2}, env={}, dotenv=None)) == [
            "--num-cpus 2 is more than the 1 CPU(s) this machine gives it: tasks share them"]
        monkeypatch.undo()
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    on_cluster = load_config(None, {"num_cpus": 1, "address": "10.0.0.5:6379"}, env={}, dotenv=None)
    local_only = "applies to a local Ray only: a cluster's runs use its CPUs"
    assert _cpus_notes(on_cluster) == [f"--num-cpus 1 {local_only}"]
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    from_env = load_config(None, {}, env={"NOVA_RAY_NUM_CPUS": "1"}, dotenv=None)
    assert _cpus_notes(from_env) == [f"ray.num_cpus (environment variable NOVA_RAY_NUM_CPUS) 1 {local_only}"]
