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

import nova_ray.cli.recommend  # noqa: F401  (registers the command)
from nova_ray.cli import app
from nova_ray.cli.doctor import check_data
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
                          Body=b"item_id,on_hand,lead_time_days\nCAB-0001,5,7\nSTL-0002,-3,7\n")
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
    assert f"s3://{BUCKET}/bad/stock.csv: line 3:" in bad.output and "on_hand" in bad.output


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


def test_doctor_checks_an_s3_history(s3: str) -> None:
    """It reported `s3:/plant/...: file not found` (exit 1) for a file `forecast` reads."""
    ok = check_data(f"{s3}/demand.parquet", explicit=True)
    assert ok.status == "ok" and f"{s3}/demand.parquet" in ok.detail and "3 items" in ok.detail
    missing = check_data(f"{s3}/nope.parquet", explicit=True)
    assert missing.status == "fail" and f"{s3}/nope.parquet: file not found" in missing.detail
    assert "pass --data PATH" in missing.fix
