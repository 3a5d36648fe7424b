"""Inputs on an S3-compatible store (moto over real HTTP on loopback): a demand history named by
an s3:// URI, the stock snapshot beside it (found as it is beside a local file, or named), the
`recommend` that reads the run's history again, and `doctor`'s check of the file."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from nova_ray.cli import app
from nova_ray.cli.doctor import check_data, check_publish
from nova_ray.io.source import sibling, source_exists, suffix
from nova_ray.io.stock import resolve_stock_path

BUCKET = "plant"
ITEMS = ["CAB-0001", "STL-0002", "SAF-0001"]


@pytest.fixture(scope="module")
def s3(small_demo: Path) -> Iterator[str]:
    """The bucket's in/ prefix: demand.parquet and stock.parquet of three demo items, and a stock
    CSV with a bad row."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    mp = pytest.MonkeyPatch()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": endpoint,
        }.items():
            mp.setenv(name, value)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        demand = pd.read_parquet(small_demo / "demand.parquet")
        stock = pd.read_parquet(small_demo / "stock.parquet")
        for key, frame in (("demand", demand), ("stock", stock)):
            buf = io.BytesIO()
            frame[frame["item_id"].isin(ITEMS)].to_parquet(buf)
            client.put_object(Bucket=BUCKET, Key=f"in/{key}.parquet", Body=buf.getvalue())
        client.put_object(Bucket=BUCKET, Key="bad/stock.csv",
                          Body=b"item_id,on_hand,lead_time_days\nCAB-0001,5,7\nSTL-0002,3,-7\n")
        yield f"s3://{BUCKET}/in"
    finally:
        mp.undo()
        server.stop()


def _forecast(s3: str, out: Path, *extra: str) -> object:
    args = ["forecast", "--data", f"{s3}/demand.parquet", "--horizon", "7", "--models", "naive,ets",
            "--backtest-windows", "2", "--output", str(out), "--models-dir", str(out.parent / "models"),
            "--no-exog", "--no-ray", "-q", *extra]
    return CliRunner().invoke(app, args)


def test_the_stock_snapshot_beside_an_s3_history_is_found_and_read(s3: str, tmp_path: Path) -> None:
    """It was never found (no recommendations, no warning), and a named one failed as
    `s3:/plant/...: file not found`."""
    assert sibling(f"{s3}/demand.parquet", "stock.parquet") == f"{s3}/stock.parquet"
    assert resolve_stock_path(None, f"{s3}/demand.parquet") == f"{s3}/stock.parquet"
    assert suffix(f"{s3}/stock.parquet") == ".parquet" and not source_exists(f"{s3}/stock.csv")
    out = tmp_path / "out"
    res = _forecast(s3, out)
    assert res.exit_code == 0, res.output
    recs = pl.read_parquet(next((out / "recommendations").iterdir()))
    assert sorted(recs["item_id"]) == sorted(ITEMS)
    # with the history read: the bootstrap or the backtest residuals, never the normal fallback
    assert "normal" not in recs["method"].to_list()
    named = _forecast(s3, tmp_path / "named" / "out", "--stock", f"{s3}/stock.parquet")
    assert named.exit_code == 0, named.output
    bad = _forecast(s3, tmp_path / "bad" / "out", "--stock", f"s3://{BUCKET}/bad/stock.csv")
    assert bad.exit_code == 2
    assert f"s3://{BUCKET}/bad/stock.csv: line 3:" in bad.output and "lead_time_days" in bad.output


def test_recommend_reads_the_runs_s3_history(s3: str, tmp_path: Path) -> None:
    """`recommend` (and the nightly job's recompute) said the s3:// history of the run was
    "not found" and fell back to the normal approximation for every row."""
    out = tmp_path / "out"
    assert _forecast(s3, out).exit_code == 0
    res = CliRunner().invoke(app, ["recommend", "--results", str(out), "--stock", f"{s3}/stock.parquet"])
    assert res.exit_code == 0, res.output
    assert "not found" not in res.output
    recs = pl.read_parquet(next((out / "recommendations").iterdir()))
    assert "normal" not in recs["method"].to_list() and recs.height == len(ITEMS)
    # the table made again carries the run's metadata (history_end was lost), and when it was made
    import json

    import pyarrow.parquet as pq

    meta = {k.decode(): v.decode() for k, v in
            pq.read_schema(next((out / "recommendations").rglob("*.parquet"))).metadata.items()}
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    assert meta["generated_at"] == ptr["generated_at"] and meta["history_end"] == ptr["history_end"]
    assert meta["freq"] == "D" and meta["amended_at"] >= ptr["generated_at"]


def test_doctor_checks_an_s3_history_and_publish_target(s3: str) -> None:
    """It reported `s3:/plant/...: file not found` (exit 1) for a history `forecast` reads, and
    passed an s3:// publish target without looking (a missing bucket showed after the forecast)."""
    ok = check_data(f"{s3}/demand.parquet", explicit=True)
    assert ok.status == "ok" and f"{s3}/demand.parquet" in ok.detail and "3 items" in ok.detail
    missing = check_data(f"{s3}/nope.parquet", explicit=True)
    assert missing.status == "fail" and f"{s3}/nope.parquet: file not found" in missing.detail
    assert "pass --data PATH" in missing.fix
    no_bucket = check_data("s3://nobucket/in/demand.csv", explicit=True)
    assert no_bucket.status == "fail"
    assert "bucket 'nobucket' not found (at http://127.0.0.1:" in no_bucket.detail
    target = check_publish(f"s3://{BUCKET}/prod")
    assert target.status == "ok" and "no run published there yet" in target.detail
    gone = check_publish("s3://nobucket/prod")
    assert gone.status == "fail" and "s3://nobucket: bucket not found" in gone.detail


def test_local_paths_given_as_uris_are_refused(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--output, --models-dir, etl --out, report --out and sync --results name local files: an
    s3:// URI there ended in a traceback or was written to a local folder named `s3:`, exit 0."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for args in (
        ["forecast", "--data", f"{s3}/demand.parquet", "--output", "s3://plant/res", "--no-ray", "-q"],
        ["forecast", "--data", f"{s3}/demand.parquet", "--models-dir", "s3://plant/m", "--no-ray", "-q"],
        ["etl", "--raw", str(tmp_path), "--out", "s3://plant/processed"],
        ["report", "--results", str(tmp_path), "--out", "s3://plant/report.html"],
        ["report", "--results", "s3://plant/prod"],
        ["sync", "--results", "s3://plant/prod", "--to", str(tmp_path)],
        ["runs", "--results", "s3://plant/prod"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        assert "local (or mounted) path" in res.output and "s3:// is read for the demand" in res.output, args
    assert not (tmp_path / "s3:").exists()


def test_an_unreachable_store_exits_1_and_says_rerun(s3: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage is not bad input (exit 2): exit 1, naming the file, with what to check."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    res = _forecast(s3, tmp_path / "out")
    assert res.exit_code == 1, res.output
    text = " ".join(res.output.split())
    assert f"{s3}/demand.parquet: cannot reach it:" in text and "then rerun" in text
    assert not (tmp_path / "out").exists()


def test_keys_with_spaces_and_accents_are_read_as_written(s3: str) -> None:
    """An ERP export named by a person: it needed percent-encoding ("Cannot parse URI")."""
    import boto3

    from nova_ray.io.demand import read_demand

    client = boto3.client("s3")
    body = client.get_object(Bucket=BUCKET, Key="in/demand.parquet")["Body"].read()
    client.put_object(Bucket=BUCKET, Key="ERP export/consumo março.parquet", Body=body)
    df = read_demand(f"s3://{BUCKET}/ERP export/consumo março.parquet")
    assert sorted(df["item_id"].unique()) == sorted(ITEMS)


def test_a_night_without_its_stock_snapshot_says_so(s3: str, tmp_path: Path) -> None:
    """The stock export failed: the run publishes forecasts without recommendations, exit 0, as
    before, but with a warning naming the last run's stock file (it said nothing)."""
    import boto3

    client = boto3.client("s3")
    for name in ("demand.parquet", "stock.parquet"):
        client.copy_object(Bucket=BUCKET, Key=f"night/{name}",
                           CopySource={"Bucket": BUCKET, "Key": f"in/{name}"})
    night = f"s3://{BUCKET}/night"
    out = tmp_path / "out"
    assert _forecast(night, out).exit_code == 0
    client.delete_object(Bucket=BUCKET, Key="night/stock.parquet")
    res = _forecast(night, out)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "no stock snapshot found" in text and f"had them from {night}/stock.parquet" in text


def test_factors_a_run_cannot_read_are_said_not_dropped(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw/ folder beside an s3:// history is not read, and the run's record says why (it said
    there was none); a future-values table without a feature table is an error (it was ignored)."""
    import json

    monkeypatch.chdir(tmp_path)  # no data/processed/features.parquet here
    out = tmp_path / "out"
    args = ["forecast", "--data", f"{s3}/demand.parquet", "--horizon", "7", "--models", "naive",
            "--backtest-windows", "1", "--output", str(out), "--models-dir", str(tmp_path / "models"),
            "--no-ray", "-q"]
    future = tmp_path / "future.csv"
    future.write_text("date,usd_brl\n2030-01-01,5.5\n")
    res = CliRunner().invoke(app, [*args, "--future-features", str(future)])
    assert res.exit_code == 2 and "the run has no feature table" in " ".join(res.output.split())
    assert not out.exists()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    record = json.loads(next((out / "metadata" / "runs").glob("*.json")).read_text())
    assert "a raw/ folder beside an s3:// demand file is not read" in record["summary"]["exog"]["reason"]


def test_run_stops_before_forecasting_when_the_target_bucket_is_missing(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in --to showed only after the night's forecast."""
    out = tmp_path / "out"
    monkeypatch.setenv("NOVA_RAY_OUTPUT", str(out))
    monkeypatch.setenv("NOVA_RAY_MODELS_DIR", str(tmp_path / "models"))
    res = CliRunner().invoke(app, ["run", "--data", f"{s3}/demand.parquet", "--to", "s3://nobucket/prod",
                                   "-q"])
    assert res.exit_code == 2 and "s3://nobucket: bucket not found" in res.output
    assert not (out / "metadata" / "runs").exists()
