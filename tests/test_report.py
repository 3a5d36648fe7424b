"""`nova-ray report` on a small real run (CLI forecast in this process): content, options, errors, browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import nova_ray.cli.report  # noqa: F401  (registers `report` until cli/__init__ imports it)
from nova_ray.cli import app
from nova_ray.report import fmt, infer_freq, leaderboard, sort_recommendations

runner = CliRunner()
ITEMS = "CAB-0001,CAB-0002,ELE-0001,ELE-0002,FIX-0001,FIX-0002,SAF-0001,STL-0001"
CRITICAL, HIGH = "ELE-0001", "FIX-0002"


def _recommendations(items: list[str], run_id: str) -> pa.Table:
    """A small recommendations table (the columns of the `recommendations` kind): one critical item, one
    high, the rest ok, in shuffled order so the report has to sort them."""
    rows = []
    for i, item in enumerate(items):
        urgency = {CRITICAL: "critical", HIGH: "high"}.get(item, "ok" if i % 2 else "medium")
        days = {"critical": 2.5, "high": 11.0, "medium": 25.0}.get(urgency)
        rows.append(
            {
                "item_id": item,
                "site": "Salvador",
                "abc_class": "ABC"[i % 3],
                "demand_class": "smooth",
                "service_level": 0.95,
                "on_hand": 10.0 + i,
                "on_order": 0.0,
                "lead_time_days": 14,
                "lead_time_demand": 30.0,
                "safety_stock": 12.5,
                "reorder_point": 42.5,
                "order_up_to": 80.0,
                "order_qty": 70.0 if urgency in ("critical", "medium") else 0.0,  # high: on order
                "eoq": 40.0,
                "stockout_date": date(2024, 1, 1) + timedelta(days=int(days)) if days else None,
                "days_to_stockout": days,
                "urgency": urgency,
                "unit_cost": 9.5,
                "order_value": 665.0 if urgency in ("critical", "medium") else 0.0,
                "method": "bootstrap",
                "notes": "",
            }
        )
    rows.reverse()
    return pa.Table.from_pylist(rows).replace_schema_metadata({"run_id": run_id, "kind": "recommendations"})


def _set_recommendations(root: Path, table: pa.Table | None) -> None:
    """Replace (or with None remove) the run's recommendations partition and its run record entry."""
    ptr = json.loads((root / "metadata" / "last_updated.json").read_text())
    part = f"recommendations/run_date={ptr['run_date']}"
    shutil.rmtree(root / part, ignore_errors=True)
    rec_path = root / "metadata" / "runs" / f"{ptr['run_id']}.json"
    record = json.loads(rec_path.read_text())
    record["partitions"].pop("recommendations", None)
    record["row_counts"].pop("recommendations", None)
    if table is not None:
        (root / part).mkdir(parents=True)
        pq.write_table(table, root / part / "part-00000.parquet")
        record["partitions"]["recommendations"] = part
        record["row_counts"]["recommendations"] = table.num_rows
    rec_path.write_text(json.dumps(record))


@pytest.fixture(scope="module")
def run_dirs(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real forecast run through the CLI (no Ray: the report does not care where it ran), a copy with
    known recommendations (one critical, one high item) and a copy without recommendations."""
    base = tmp_path_factory.mktemp("report")
    data = small_demo / "demand.parquet"
    args = [
        "forecast",
        "--data",
        str(data),
        "--output",
        str(base / "real"),
        "--items",
        ITEMS,
        "--horizon",
        "14",
        "--models",
        "naive,ets,theta,croston,tsb",
        "--backtest-windows",
        "2",
        "--no-ray",
        "--quiet",
    ]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run_id = json.loads((base / "real" / "metadata" / "last_updated.json").read_text())["run_id"]
    shutil.copytree(base / "real", base / "known")
    _set_recommendations(base / "known", _recommendations(ITEMS.split(","), run_id))
    shutil.copytree(base / "real", base / "bare")
    _set_recommendations(base / "bare", None)
    return {"real": base / "real", "known": base / "known", "bare": base / "bare", "data": data}


def _tables(root: Path) -> dict[str, pl.DataFrame]:
    run_date = json.loads((root / "metadata" / "last_updated.json").read_text())["run_date"]
    return {
        k: pl.read_parquet(root / k / f"run_date={run_date}", hive_partitioning=True)
        for k in ("metrics", "ensemble_weights", "items")
    }


def _report(tmp_path: Path, root: Path, *extra: str) -> tuple[str, object]:
    out = tmp_path / "report.html"
    res = runner.invoke(app, ["report", "--results", str(root), "--out", str(out), *extra])
    return (out.read_text() if out.exists() else ""), res


def _charted(html: str) -> list[str]:
    return re.findall(r'<h3 id="item-([^"]+)">', html)


def test_report_content_matches_the_parquet_outputs(run_dirs, tmp_path: Path) -> None:
    root, data = run_dirs["known"], run_dirs["data"]
    html, res = _report(tmp_path, root, "--data", str(data))
    assert res.exit_code == 0, res.output
    record = json.loads((root / "metadata" / "last_updated.json").read_text())
    for text in (
        "Run overview",
        "Items",
        "Model leaderboard by demand class",
        "Ensemble weights",
        "Purchasing recommendations",
        record["run_id"],
        record["dataset_id"],
        "units/day",
        str(data),
    ):
        assert text in html, text
    t = _tables(root)
    # charts: the critical and high items first, then the 3 worst and 3 best by ensemble MASE
    ens = (
        t["metrics"]
        .filter(pl.col("model") == "ensemble")
        .with_columns(pl.col("mase").fill_nan(None))
        .group_by("item_id")
        .agg(pl.col("mase").mean())
        .drop_nulls()
        .sort("mase", "item_id")
    )
    worst, best = ens.reverse()["item_id"].to_list()[:3], ens["item_id"].to_list()[:3]
    charted = _charted(html)
    assert charted[:2] == [CRITICAL, HIGH]
    assert set(charted) == {CRITICAL, HIGH, *worst, *best}
    imgs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(charted) and all(len(b) > 20_000 for b in imgs)
    # numbers from the tables, formatted as the report formats them
    w = t["ensemble_weights"].sort("item_id", "model").row(0, named=True)
    row = re.search(rf"<tr><td>{w['item_id']}</td>.*?</tr>", html.split('id="weights"')[1])
    assert row and f">{fmt(w['weight'])}<" in row.group(0)
    for item in worst + best:
        mase = ens.filter(pl.col("item_id") == item)["mase"][0]
        assert f"MASE <b>{fmt(mase)}</b>" in html
    per = (
        t["metrics"]
        .group_by("item_id", "model")
        .agg(pl.col("mase").mean())
        .join(t["items"].select("item_id", "demand_class"), on="item_id")
    )
    cls, model = per.filter(pl.col("model") == "ets").row(0, named=True)["demand_class"], "ets"
    median = per.filter((pl.col("demand_class") == cls) & (pl.col("model") == model))["mase"].median()
    board = html.split('id="leaderboard"')[1].split("</section>")[0]
    assert f"<td>{model}</td>" in board and f">{fmt(median)}<" in board
    # the tile counts orders to place: the high item's order is covered by what is on order
    assert '<div class="v">1 / 0</div><div class="k">critical / high orders</div>' in html
    # recommendations sorted by urgency: critical, high, medium, ok
    recs = html.split('id="recommendations"')[1]
    order = [m for m in re.findall(r'class="badge u-(\w+)"', recs)]
    assert order == sorted(order, key=["critical", "high", "medium", "ok"].index) and order[0] == "critical"
    assert "http://" not in html and "https://" not in html and "<script" not in html  # opens offline


def test_report_of_the_run_as_the_pipeline_wrote_it(run_dirs, tmp_path: Path) -> None:
    """No --data: the demand file comes from the run record (or the config) and charts show history."""
    root = run_dirs["real"]
    html, res = _report(tmp_path, root)
    assert res.exit_code == 0, res.output
    record = json.loads((root / "metadata" / "last_updated.json").read_text())
    run = json.loads((root / "metadata" / "runs" / f"{record['run_id']}.json").read_text())
    gap = (date.fromisoformat(run["run_date"]) - date.fromisoformat(run["history_end"])).days
    ends = run["history_end"] + (f" ({gap} days before the run date)" if gap > 1 else "")
    assert f"<tr><th>history ends</th><td>{ends}</td></tr>" in html  # stale demand is not shown as current
    if run.get("data_path") or run["summary"].get("data_path"):  # recorded by the pipeline
        assert 'class="warn"' not in html and str(run_dirs["data"]) in html
    else:  # older runs: paths.data of the config, which the test does not set up
        assert "demand history not shown" in html
    recs_dir = root / "recommendations" / f"run_date={record['run_date']}"
    if recs_dir.exists():  # the pipeline writes recommendations when a stock snapshot sits next to the data
        recs = pl.read_parquet(recs_dir)
        section = html.split('id="recommendations"')[1]
        assert len(re.findall(r'<span class="badge u-', section)) == recs.height
        urgent = set(recs.filter(pl.col("urgency").is_in(["critical", "high"]))["item_id"].to_list())
        assert urgent <= set(_charted(html))


def test_report_says_when_the_run_forecast_the_demo_data(run_dirs, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A run on the generated demo data (its record's summary says so) is marked in the report."""
    root = tmp_path / "demo-run"
    shutil.copytree(run_dirs["real"], root)
    html, _ = _report(tmp_path, root)
    assert "DEMO data" not in html  # the fixture's runs read a data file of their own
    run_id = json.loads((root / "metadata" / "last_updated.json").read_text())["run_id"]
    path = root / "metadata" / "runs" / f"{run_id}.json"
    record = json.loads(path.read_text())
    record["summary"]["demo_data"] = True
    path.write_text(json.dumps(record))
    html, res = _report(tmp_path, root)
    assert res.exit_code == 0, res.output
    assert "(DEMO data: generated, not real demand)" in html
    # a file of one's own given to the report is not called the demo's; one without any of the
    # run's items is said (it drew charts without history, and no word)
    other = tmp_path / "other.csv"
    other.write_text("item_id,date,quantity\nZZZ-0001,2024-01-01,3\n")
    html, res = _report(tmp_path, root, "--data", str(other))
    assert res.exit_code == 0, res.output
    assert "DEMO data: generated" not in html
    assert "(the run forecast the generated DEMO data, not this file)" in html
    assert f"{other} holds none of this run&#x27;s items: the charts show no history" in html
    # the run's own file named relatively (the record holds it absolute) is the demo's still
    recorded = Path(record["summary"]["data_path"])
    monkeypatch.chdir(recorded.parent)
    html, res = _report(tmp_path, root, "--data", recorded.name)
    assert res.exit_code == 0 and "(DEMO data: generated, not real demand)" in html, res.output


def test_report_without_recommendations_or_history(run_dirs, tmp_path: Path) -> None:
    html, res = _report(tmp_path, run_dirs["bare"], "--data", str(tmp_path / "missing.parquet"))
    assert res.exit_code == 0, res.output
    assert "Purchasing recommendations" not in html and 'href="#recommendations"' not in html
    assert "demand history not shown" in html and "file not found" in html
    assert len(_charted(html)) == 6  # 3 worst + 3 best, forecasts without history
    # --quiet silences progress, not the warning (it wrote the report without a word)
    html, res = _report(tmp_path, run_dirs["bare"], "--data", str(tmp_path / "missing.parquet"), "-q")
    assert res.exit_code == 0 and "warning: demand history not shown" in res.output
    assert "wrote" not in res.output


def test_report_items_option_and_run_option(run_dirs, tmp_path: Path) -> None:
    root, data = run_dirs["real"], run_dirs["data"]
    run_id = json.loads((root / "metadata" / "last_updated.json").read_text())["run_id"]
    html, res = _report(tmp_path, root, "--items", "SAF-0001,CAB-0002", "--run", run_id, "--data", str(data))
    assert res.exit_code == 0, res.output
    assert _charted(html) == ["SAF-0001", "CAB-0002"]
    _, res = _report(tmp_path, root, "--items", "CAB-001")
    assert res.exit_code == 2 and "unknown item 'CAB-001'" in res.output and "did you mean" in res.output
    _, res = _report(tmp_path, root, "--run", "20200101-deadbeef")
    assert res.exit_code == 2 and "no run '20200101-deadbeef'" in res.output and run_id in res.output


def test_report_on_a_folder_without_a_run_exits_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    html, res = _report(tmp_path, empty)
    assert res.exit_code == 2 and not html
    assert len(res.output.strip().splitlines()) == 1 and "no run found" in res.output
    _, res = _report(tmp_path, tmp_path / "nope")
    assert res.exit_code == 2 and "results folder not found" in res.output


def test_pure_helpers() -> None:
    assert infer_freq([date(2024, 1, 1) + timedelta(weeks=i) for i in range(5)]) == "W"
    assert infer_freq([date(2024, m, 1) for m in range(1, 6)]) == "M"
    assert infer_freq([date(2024, 1, 1), date(2024, 1, 2)]) == "D"
    assert fmt(None) == fmt(float("nan")) == "–" and fmt(1234.5678, 1) == "1,234.6"
    recs = pl.DataFrame(
        {
            "urgency": ["ok", "high", "critical", "high"],
            "days_to_stockout": [None, 9.0, 1.0, 3.0],
            "order_value": [0.0, 5.0, 1.0, 2.0],
        }
    )
    assert sort_recommendations(recs)["days_to_stockout"].to_list() == [1.0, 3.0, 9.0, None]
    m = pl.DataFrame(
        {
            "item_id": ["a", "a", "b"],
            "model": ["x", "x", "x"],
            "window": [0, 1, 0],
            "mase": [1.0, 3.0, 5.0],
            "smape": [1.0] * 3,
            "coverage_80": [1.0] * 3,
            "coverage_95": [1.0] * 3,
        }
    )
    board = leaderboard(m, pl.DataFrame({"item_id": ["a", "b"], "demand_class": ["smooth", "smooth"]}))
    assert board.row(0, named=True)["median_mase"] == 3.5  # item means 2 and 5, then the median


def test_odd_item_codes_ties_and_a_failed_write(tmp_path: Path) -> None:
    """An ERP's item code with two `$` went through matplotlib's mathtext and crashed the report;
    rows of one urgency came out in a different order from one report to the next (Polars' sort
    is not stable) and from `nova-ray recommend`'s; a report that could not be written (`--out` a
    folder) left its temp file beside it."""
    from nova_ray.report.render import item_chart, write_report

    days = [date(2024, 1, 1) + timedelta(days=i) for i in range(7)]
    bands = {"lo_80": 0.5, "hi_80": 1.5, "lo_95": 0.2, "hi_95": 2.0}
    fc = pl.DataFrame({"date": days, "model": ["ensemble"] * 7, "forecast": [1.0] * 7,
                       **{c: [v] * 7 for c, v in bands.items()}})
    assert item_chart("ELE$^$1", None, fc).startswith(b"\x89PNG")
    recs = pl.DataFrame({"urgency": ["ok"] * 4, "days_to_stockout": [None] * 4, "order_value": [0.0] * 4,
                         "item_id": ["C", "A", "B", "A"], "site": ["s", "t", "s", "s"]})
    assert sort_recommendations(recs).select("item_id", "site").rows() == [
        ("A", "s"), ("A", "t"), ("B", "s"), ("C", "s")]
    (tmp_path / "out").mkdir()
    with pytest.raises(OSError):
        write_report("<html></html>", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_a_headless_browser(run_dirs, tmp_path: Path) -> None:
    """The page loads in Chromium without console errors, the charts decode and show the ensemble."""
    from PIL import Image

    html, res = _report(tmp_path, run_dirs["known"], "--data", str(run_dirs["data"]))
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report.html").resolve().as_uri()
    base = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1400,3000",
    ]
    shot = tmp_path / "shot.png"
    run = subprocess.run([*base, f"--screenshot={shot}", page], capture_output=True, text=True, timeout=120)
    assert shot.exists(), run.stderr[-2000:]
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    for log in (run.stderr, dom.stderr):
        assert "CONSOLE" not in log and "Uncaught" not in log and "Failed to load resource" not in log, log
    assert "Run overview" in dom.stdout and "Model leaderboard by demand class" in dom.stdout
    imgs = re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', dom.stdout)
    assert len(imgs) == len(_charted(html)) and min(len(b) for b in imgs) > 20_000
    # the charts were decoded and painted: the ensemble line's colour fills pixels below the header
    img = Image.open(shot).convert("RGB")
    assert img.size == (1400, 3000)
    body = img.crop((0, 400, 1400, 3000))
    colors = body.getcolors(maxcolors=1 << 20) or []
    ensemble = sum(
        n for n, (r, g, b) in colors if abs(r - 31) < 12 and abs(g - 78) < 12 and abs(b - 121) < 12
    )
    assert ensemble > 500, ensemble  # broken images (alt text only) give 0 here


def test_report_and_recommend_read_only_what_the_latest_run_wrote(run_dirs, tmp_path: Path) -> None:
    """A run with --only-forecasts after a full run of the same date leaves the earlier run's
    metrics and backtests in their date folders: the report of the latest run no longer looks
    there (it failed with 'holds run A, not B'), nor do recommendations pair its forecasts with
    the earlier run's backtests."""
    from nova_ray.io.recommendations import read_published_run

    root = tmp_path / "later"
    shutil.copytree(run_dirs["real"], root)
    first = read_published_run(root)
    assert first.backtests is not None
    args = ["forecast", "--data", str(run_dirs["data"]), "--output", str(root), "--items", ITEMS,
            "--horizon", "14", "--models", "naive,theta", "--only-forecasts", "--no-ray", "--quiet"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    later = read_published_run(root)
    assert later.run_id != first.run_id and later.backtests is None
    assert (root / "metrics" / f"run_date={later.run_date}").exists()  # the earlier run's, left
    html, res = _report(tmp_path, root, "--data", str(run_dirs["data"]))
    assert res.exit_code == 0, res.output
    assert later.run_id in html and len(_charted(html)) > 0
