"""Tests for the seeded demo-data generator."""

from __future__ import annotations

import csv
import json
from datetime import date
from pathlib import Path

import holidays
import numpy as np
import polars as pl
import pytest

from nova_ray.demo import FAMILIES, SITES, demo_factors, generate_demo

ITEMS, DAYS, SEED, START = 24, 400, 11, "2023-01-01"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_demo(tmp_path_factory.mktemp("demo"), items=ITEMS, days=DAYS, seed=SEED, start=START)


@pytest.fixture(scope="module")
def demand(demo: dict[str, Path]) -> pl.DataFrame:
    items = pl.read_parquet(demo["items"]).select("item_id", "pattern", "driver")
    return pl.read_parquet(demo["demand"]).join(items, on="item_id")


def _read_inmet(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_bytes().decode("latin-1").splitlines()
    return lines, list(csv.reader(lines[9:], delimiter=";"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_deterministic_per_seed_and_seeds_differ(tmp_path: Path, demo: dict[str, Path]) -> None:
    again = generate_demo(tmp_path / "a", items=ITEMS, days=DAYS, seed=SEED, start=START)
    for name in ("demand", "stock", "items"):
        assert pl.read_parquet(again[name]).equals(pl.read_parquet(demo[name])), name
    assert _files(again["demand"].parent) == _files(demo["demand"].parent)  # byte-identical

    other = generate_demo(tmp_path / "b", items=ITEMS, days=DAYS, seed=SEED + 1, start=START)
    q1 = pl.read_parquet(demo["demand"])["quantity"].to_numpy()
    q2 = pl.read_parquet(other["demand"])["quantity"].to_numpy()
    assert not np.array_equal(q1, q2)
    assert _files(other["raw"])["bcb/usd_brl.json"] != _files(demo["raw"])["bcb/usd_brl.json"]


def test_progress_and_returned_paths(tmp_path: Path) -> None:
    messages: list[str] = []
    paths = generate_demo(tmp_path, items=3, days=40, seed=1, start="2024-12-20", progress=messages.append)
    assert messages and all(isinstance(m, str) for m in messages)
    for key in (
        "demand",
        "stock",
        "items",
        "usd_brl",
        "ipca",
        "selic",
        "5g_rollout",
        "inmet_2024",
        "inmet_2025",
    ):
        assert paths[key].is_file(), key
    assert paths["inmet_2024"].name == "INMET_NE_BA_A401_SALVADOR_20-12-2024_A_31-12-2024.CSV"
    assert paths["inmet_2025"].name == "INMET_NE_BA_A401_SALVADOR_01-01-2025_A_28-01-2025.CSV"
    with pytest.raises(ValueError):
        generate_demo(tmp_path, items=0)


def test_demand_schema_and_values(demo: dict[str, Path]) -> None:
    df = pl.read_parquet(demo["demand"])
    assert df.schema == pl.Schema(
        {
            "item_id": pl.String,
            "date": pl.Date,
            "quantity": pl.Float64,
            "site": pl.String,
            "family": pl.String,
        }
    )
    assert df.height == ITEMS * DAYS
    assert df["date"].min() == date(2023, 1, 1) and df["date"].n_unique() == DAYS
    assert df.null_count().sum_horizontal().item() == 0
    assert (df["quantity"] >= 0).all() and df["quantity"].sum() > 0
    assert df.group_by("item_id").agg(pl.col("site").n_unique())["site"].max() == 1
    assert set(df["site"]) <= set(SITES) and set(df["family"]) <= set(FAMILIES.values())
    prefixes = {k: v for k, v in FAMILIES.items()}
    pairs = df.select(pl.col("item_id").str.slice(0, 3).alias("p"), "family").unique()
    assert all(prefixes[p] == f for p, f in pairs.iter_rows())
    assert df["item_id"].str.contains(r"^[A-Z]{3}-\d{4}$").all()


def test_items_and_stock_tables(demo: dict[str, Path]) -> None:
    items = pl.read_parquet(demo["items"])
    assert items.columns == ["item_id", "family", "site", "pattern", "driver"]
    assert items.height == ITEMS and items["item_id"].is_unique().all()
    assert set(items["pattern"]) == {"smooth", "erratic", "intermittent", "lumpy"}
    assert set(items["driver"]) == {"rain", "fx", "5g", "none"}
    driven = (items["driver"] != "none").mean()
    assert 0.25 <= driven <= 0.45

    stock = pl.read_parquet(demo["stock"])
    assert stock["item_id"].to_list() == items["item_id"].to_list()
    assert stock.schema["lead_time_days"] == pl.Int64
    for col in (
        "on_hand",
        "unit_cost",
        "on_order",
        "order_cost",
        "holding_cost_rate",
        "min_order_qty",
        "pack_size",
    ):
        assert stock.schema[col] == pl.Float64, col
        assert (stock[col] >= 0).all(), col
    assert stock["lead_time_days"].is_between(3, 60).all()
    assert (stock["unit_cost"] > 0).all() and (stock["pack_size"] >= 1).all()
    assert ((stock["min_order_qty"] % stock["pack_size"]) == 0).all()
    assert (stock["on_hand"] <= 1).sum() >= 1  # something urgent to show


def test_slow_movers_share(demand: pl.DataFrame) -> None:
    zero_share = demand.group_by("item_id").agg((pl.col("quantity") == 0).mean().alias("z"))
    assert (zero_share["z"] > 0.5).mean() >= 1 / 3
    lumpy = demand.filter(pl.col("pattern") == "lumpy")
    assert lumpy.height and lumpy.filter(pl.col("quantity") > 0)["quantity"].mean() > 5


def test_weekends_and_holidays_lower(demand: pl.DataFrame) -> None:
    hol = list(holidays.Brazil(subdiv="BA", years=[2023, 2024]).keys())
    df = demand.with_columns(weekend=pl.col("date").dt.weekday() >= 6, holiday=pl.col("date").is_in(hol))
    weekday = df.filter(~pl.col("weekend") & ~pl.col("holiday"))["quantity"].mean()
    assert df.filter(pl.col("weekend") & ~pl.col("holiday"))["quantity"].mean() < 0.6 * weekday
    assert df.filter(pl.col("holiday"))["quantity"].mean() < 0.6 * weekday


@pytest.mark.parametrize("which", ["smooth", "rain"])
def test_rainy_season_rise(demand: pl.DataFrame, which: str) -> None:
    col = "pattern" if which == "smooth" else "driver"
    df = demand.filter(pl.col(col) == which).with_columns(
        wet=pl.col("date").dt.month().is_between(4, 7),
        q=pl.col("quantity") / pl.col("quantity").mean().over("item_id"),
    )
    assert df.height
    assert df.filter(pl.col("wet"))["q"].mean() > 1.1 * df.filter(~pl.col("wet"))["q"].mean()


def test_drivers_move_their_items(demand: pl.DataFrame) -> None:
    f = demo_factors(DAYS, SEED, START)
    rain = f["rain_mm"].to_numpy()
    rain_eff = rain + 0.5 * np.r_[0.0, rain[:-1]]
    weekday = f["date"].dt.weekday().to_numpy() <= 5

    def norm_total(driver: str) -> np.ndarray:
        d = demand.filter(pl.col("driver") == driver)
        d = d.with_columns(q=pl.col("quantity") / pl.col("quantity").mean().over("item_id"))
        return d.group_by("date").agg(pl.col("q").mean()).sort("date")["q"].to_numpy()

    def rain_ratio(driver: str) -> float:
        q = norm_total(driver)
        return q[weekday & (rain_eff > 20)].mean() / q[weekday & (rain_eff == 0)].mean()

    def monthly_corr(x: np.ndarray, driver: str) -> float:
        roll = np.ones(28) / 28
        return np.corrcoef(np.convolve(x, roll, "valid"), np.convolve(norm_total(driver), roll, "valid"))[
            0, 1
        ]

    assert rain_ratio("rain") > 1.3 and rain_ratio("rain") > rain_ratio("none") + 0.2
    assert monthly_corr(f["usd_brl"].to_numpy(), "fx") < -0.3
    assert monthly_corr(f["g5_new_sites_14d"].to_numpy(), "5g") > 0.5
    assert monthly_corr(f["g5_new_sites_14d"].to_numpy(), "5g") > monthly_corr(
        f["g5_new_sites_14d"].to_numpy(), "none"
    )


def test_inmet_format(demo: dict[str, Path]) -> None:
    files = sorted((demo["raw"] / "inmet").glob("*.CSV"))
    assert [p.name for p in files] == [
        "INMET_NE_BA_A401_SALVADOR_01-01-2023_A_31-12-2023.CSV",
        "INMET_NE_BA_A401_SALVADOR_01-01-2024_A_04-02-2024.CSV",
    ]
    lines, rows = _read_inmet(files[0])
    assert lines[0] == "REGIAO:;NE" and lines[3] == "CODIGO (WMO):;A401"
    assert lines[7].startswith("DATA DE FUNDACAO:;")
    assert lines[8].startswith("Data;Hora UTC;PRECIPITAÇÃO TOTAL, HORÁRIO (mm);") and lines[8].endswith(";")
    assert "°C" in lines[8] and "Kj/m²" in lines[8]
    with pytest.raises(UnicodeDecodeError):
        files[0].read_bytes().decode("utf-8")  # latin-1, not utf-8
    assert len(rows) == 365 * 24
    assert all(line.endswith(";") for line in lines[8:])
    assert all(len(r) == 20 and r[-1] == "" for r in rows)
    assert rows[0][:2] == ["2023/01/01", "0000 UTC"] and rows[-1][:2] == ["2023/12/31", "2300 UTC"]
    values = [v for r in rows for v in r[2:-1]]
    assert all("." not in v for v in values)
    assert any("," in v for v in values) and "-9999" in values
    pressure = [float(r[3].replace(",", ".")) for r in rows if r[3] != "-9999"]
    assert 990 < min(pressure) and max(pressure) < 1030


def test_daily_rain_from_hourly_rows_equals_driver(demo: dict[str, Path]) -> None:
    totals: dict[str, float] = {}
    temps: dict[str, list[float]] = {}
    for path in sorted((demo["raw"] / "inmet").glob("*.CSV")):
        for r in _read_inmet(path)[1]:
            p = float(r[2].replace(",", "."))
            totals[r[0]] = totals.get(r[0], 0.0) + (0.0 if p == -9999 else p)
            if r[7] != "-9999":
                temps.setdefault(r[0], []).append(float(r[7].replace(",", ".")))
    f = demo_factors(DAYS, SEED, START)
    keys = [d.strftime("%Y/%m/%d") for d in f["date"]]
    assert list(totals) == keys
    np.testing.assert_allclose([totals[k] for k in keys], f["rain_mm"].to_numpy(), atol=1e-9)
    np.testing.assert_allclose([np.mean(temps[k]) for k in keys], f["temp_mean_c"].to_numpy(), atol=1e-9)
    rain = f["rain_mm"].to_numpy()
    months = f["date"].dt.month().to_numpy()
    assert rain[(months >= 4) & (months <= 7)].mean() > 1.5 * rain[(months < 4) | (months > 7)].mean()
    assert rain.max() > 40  # storms
    # The factors do not depend on the number of items.
    assert demo_factors(DAYS, SEED, START).equals(f)


def test_bcb_and_anatel_match_factors(demo: dict[str, Path]) -> None:
    f = demo_factors(DAYS, SEED, START)
    raw = demo["raw"]

    def ffill(dates: list[str], values: list[float]) -> np.ndarray:
        d = np.array([f"{s[6:]}-{s[3:5]}-{s[:2]}" for s in dates], dtype="datetime64[D]")
        assert np.all(np.diff(d) > np.timedelta64(0, "D"))
        idx = np.searchsorted(d, f["date"].to_numpy().astype("datetime64[D]"), side="right") - 1
        assert idx.min() >= 0
        return np.array(values)[idx]

    fx = json.loads((raw / "bcb" / "usd_brl.json").read_text())
    assert set(fx[0]) == {"data", "valor"} and isinstance(fx[0]["valor"], str)
    weekdays = {
        np.datetime64(f"{r['data'][6:]}-{r['data'][3:5]}-{r['data'][:2]}").astype(object).weekday()
        for r in fx
    }
    assert weekdays <= {0, 1, 2, 3, 4}
    np.testing.assert_allclose(ffill([r["data"] for r in fx], [float(r["valor"]) for r in fx]), f["usd_brl"])

    ipca = json.loads((raw / "bcb" / "ipca.json").read_text())
    assert all(r["data"].startswith("01/") for r in ipca)
    np.testing.assert_allclose(ffill([r["data"] for r in ipca], [float(r["valor"]) for r in ipca]), f["ipca"])

    selic = list(csv.reader((raw / "bcb" / "selic.csv").read_text().splitlines(), delimiter=";"))
    assert selic[0] == ["data", "valor"]
    assert (raw / "bcb" / "selic.csv").read_text().splitlines()[1].count('"') == 4
    vals = [float(v.replace(",", ".")) for _, v in selic[1:]]
    assert all("," in v for _, v in selic[1:])
    np.testing.assert_allclose(ffill([d for d, _ in selic[1:]], vals), f["selic"])

    g5 = list(csv.reader((raw / "anatel" / "5g_rollout.csv").read_text().splitlines(), delimiter=";"))
    assert g5[0] == ["Data", "Municipios_5G", "Estacoes_5G"]
    sites = [float(r[2]) for r in g5[1:]]
    assert np.all(np.diff(sites) >= 0) and np.all(np.diff([float(r[1]) for r in g5[1:]]) >= 0)
    np.testing.assert_allclose(ffill([r[0] for r in g5[1:]], sites), f["g5_estacoes_5g"])
