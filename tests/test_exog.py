"""External factors: the regressor matrix per frequency, its alignment with series and backtest
windows (no window sees realised values it may not), models with regressors, the etl command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from typer.testing import CliRunner

from nova_ray.engine import EngineSpec, exog_slices, forecast_batch
from nova_ray.etl import build_features, calendar_features, read_features
from nova_ray.exog import (
    DEFAULT_FEATURES,
    attach_exog,
    backtest_rows,
    build_exog,
    without_exog,
)
from nova_ray.global_lstm import forecast_lstm
from nova_ray.io.features import load_features
from nova_ray.series import SeriesSet, build_series, period_index

ALIAS = {"D": "D", "W": "W-MON", "M": "MS", "Q": "QS"}


def _series(values: dict[str, np.ndarray], freq: str = "D", start: str = "2023-01-02") -> SeriesSet:
    rows = []
    for k, v in values.items():
        dates = pd.date_range(start, periods=len(v), freq=ALIAS[freq])
        rows.append(pd.DataFrame({"item_id": k, "date": dates, "quantity": v}))
    return build_series(pd.concat(rows), freq)


def _mase(res, model: str) -> float:
    bt = pl.from_arrow(res.backtests).filter(pl.col("model") == model)
    per = bt.group_by("item_id", "window").agg(
        ((pl.col("actual") - pl.col("forecast")).abs().mean() / pl.col("scale").first()).alias("mase")
    )
    return float(per["mase"].mean())


@pytest.fixture(scope="module")
def demo_features(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("processed")
    res = build_features(small_demo / "raw", out, "2023-01-01", "2023-12-31")
    return read_features(res.path)


# ---------------------------------------------------------------- alignment


@pytest.mark.parametrize("freq", ["D", "W", "M", "Q"])
def test_series_exog_rows_follow_each_series_start(freq: str) -> None:
    dates = pd.date_range("2023-01-02", periods=20, freq=ALIAS[freq])
    demand = pd.DataFrame({"item_id": ["A"] * 20 + ["B"] * 12, "date": [*dates, *dates[8:]], "quantity": 1.0})
    s = build_series(demand, freq)  # B starts 8 periods after A
    h = 3
    rows = len(s.values_of(0)) + h
    x = np.arange(rows, dtype=float)[:, None]  # row number = period number on the global grid
    s2 = s.with_exog(x, ("t",), s.starts.min())
    assert s2.exog_horizon == h
    assert s2.exog_of(0)[:, 0].tolist() == list(range(rows))
    xb = s2.exog_of(1)[:, 0]
    assert xb[0] == 8 and len(xb) == len(s2.values_of(1)) + h
    assert period_index(s2.exog_start, s2.starts[1], freq) == 8
    sub = s2.subset([1])
    assert sub.exog_of(0).tolist() == s2.exog_of(1).tolist() and sub.exog_names == ("t",)
    with pytest.raises(ValueError):
        s.with_exog(x[:5], ("t",), s.starts.min())  # does not reach the last period


def test_exog_slices_stop_at_the_window() -> None:
    x = np.arange(50, dtype=float)[:, None]
    past, fut = exog_slices(x, 30, 7)
    assert past[-1, 0] == 29 and fut[:, 0].tolist() == list(range(30, 37))
    with pytest.raises(ValueError):
        exog_slices(x, 45, 7)


def _driven(seed: int, n: int = 240, h: int = 14) -> tuple[SeriesSet, np.ndarray, np.random.Generator]:
    """One weekly series of `n` days driven by the first of two regressors (`n + h` rows)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + h, 2))
    y = 20 + 3 * np.sin(2 * np.pi * np.arange(n) / 7) + 4 * x[:n, 0] + rng.normal(0, 1, n)
    return _series({"A": y}), x, rng


def test_backtest_windows_see_only_history_and_their_own_window() -> None:
    n, h = 240, 14
    s, x, rng = _driven(3, n, h)
    spec = EngineSpec(horizon=h, models=("arima",), backtest_windows=2)
    base = forecast_batch(s.with_exog(x, ("a", "b"), s.starts[0]), [0], spec)
    bt = pl.from_arrow(base.backtests).sort("window", "date")
    assert "regressors (2) used by arima" in pl.from_arrow(base.items)["notes"][0]
    assert json.loads(pl.from_arrow(base.items)["params"][0])["exog"]["features"] == ["a", "b"]

    # rows from the newest window on change: the oldest window's forecasts must not move
    x2 = x.copy()
    x2[n - h :] = rng.normal(size=(h + h, 2)) * 5
    moved = forecast_batch(s.with_exog(x2, ("a", "b"), s.starts[0]), [0], spec)
    bt2 = pl.from_arrow(moved.backtests).sort("window", "date")
    assert bt2.filter(pl.col("window") == 0)["forecast"].to_list() == (
        bt.filter(pl.col("window") == 0)["forecast"].to_list()
    )
    assert bt2.filter(pl.col("window") == 1)["forecast"].to_list() != (
        bt.filter(pl.col("window") == 1)["forecast"].to_list()
    )

    # future rows unusable (NaN): backtests (no final fit) are untouched and still use regressors
    x3 = x.copy()
    x3[n:] = np.nan
    only_bt = forecast_batch(
        s.with_exog(x3, ("a", "b"), s.starts[0]), [0], EngineSpec(**{**spec.__dict__, "final_fit": False})
    )
    assert (
        pl.from_arrow(only_bt.backtests).sort("window", "date")["forecast"].to_list()
        == bt["forecast"].to_list()
    )
    assert "without" not in pl.from_arrow(only_bt.items)["notes"][0]
    # with a final fit the NaN rows make the fit with regressors fail: refitted without, noted
    fallback = pl.from_arrow(forecast_batch(s.with_exog(x3, ("a", "b"), s.starts[0]), [0], spec).items)
    assert "arima with regressors failed" in fallback["notes"][0] and fallback["models"][0] == "arima"


def test_backtest_windows_get_the_rows_known_at_their_origins() -> None:
    n, h = 240, 14
    s, x, _ = _driven(11, n, h)
    spec = EngineSpec(horizon=h, models=("arima", "prophet"), backtest_windows=2)
    realised = forecast_batch(s.with_exog(x, ("a", "b"), s.starts[0]), [0], spec)
    backs = (h, 2 * h)  # the two windows start h and 2h periods before the end
    # rows "known" that equal the realised ones: the same backtests as the realised setting
    same = {b: x[n - b : n - b + h] for b in backs}
    again = forecast_batch(s.with_exog(x, ("a", "b"), s.starts[0], same), [0], spec)
    assert again.backtests.equals(realised.backtests) and again.forecasts.equals(realised.forecasts)
    # other rows (say a climatology): every window of both models moves, the final forecast does not
    known = {b: np.zeros((h, 2)) for b in backs}
    honest = forecast_batch(s.with_exog(x, ("a", "b"), s.starts[0], known), [0], spec)
    assert honest.forecasts.equals(realised.forecasts)
    a, b = (pl.from_arrow(r.backtests).sort("model", "window", "date") for r in (realised, honest))
    assert a["actual"].to_list() == b["actual"].to_list()
    for (model, window), part in a.group_by("model", "window"):
        other = b.filter((pl.col("model") == model) & (pl.col("window") == window))
        assert part["forecast"].to_list() != other["forecast"].to_list(), (model, window)
    # the driver is unknown ahead here (zeros), so the windows' error grows: no oracle optimism
    assert _mase(honest, "arima") > 1.5 * _mase(realised, "arima")
    assert "regressors (2) used by arima,prophet" in pl.from_arrow(honest.items)["notes"][0]


def test_backtest_rows_are_what_the_origin_knew(demo_features: pd.DataFrame) -> None:
    ex = build_exog(demo_features, "D", "2023-01-01", "2023-12-31", 14)
    rows = backtest_rows(demo_features, ex, [14, 28, 400, 5])
    assert sorted(rows) == [14, 28]  # 400: before the history; 5: shorter than the horizon
    for b, r in rows.items():
        g = ex.n_hist - b
        before = pd.Timestamp(ex.start) + pd.Timedelta(days=g - 1)  # the last day the origin knew
        cut = build_exog(demo_features, "D", "2023-01-01", before, 14, known_until=before)
        raw = r * ex.std + ex.mean  # the horizon rows of a forecast made at the origin
        for j, name in enumerate(ex.names):
            k = cut.names.index(name)
            np.testing.assert_allclose(raw[:, j], cut.values[-14:, k] * cut.std[k] + cut.mean[k], atol=1e-9)
        fx = demo_features.loc[demo_features["date"] == before, "usd_brl"].iloc[0]
        np.testing.assert_allclose(raw[:, ex.names.index("usd_brl")], fx)  # economy: last value
        j = ex.names.index("is_holiday")  # calendar: exact
        np.testing.assert_allclose(r[:, j], ex.values[g : g + 14, j])
        j = ex.names.index("rain_log")  # climate: not the realised rain
        assert not np.allclose(r[:, j], ex.values[g : g + 14, j])


def test_no_exog_paths_are_identical() -> None:
    rng = np.random.default_rng(5)
    s = _series({"A": rng.poisson(8, 150).astype(float), "B": rng.poisson(2, 120).astype(float)})
    spec = EngineSpec(horizon=7, models=("arima", "ets", "naive"), backtest_windows=2)
    with_x = s.with_exog(rng.normal(size=(157, 1)), ("noise",), s.starts.min())
    runs = [
        forecast_batch(s, [0, 1], spec),
        forecast_batch(with_x, [0, 1], EngineSpec(**{**spec.__dict__, "use_exog": False})),
        forecast_batch(without_exog(with_x), [0, 1], spec),
    ]
    for r in runs[1:]:
        assert r.forecasts.equals(runs[0].forecasts) and r.backtests.equals(runs[0].backtests)
        assert r.items.drop_columns(["cpu_seconds"]).equals(runs[0].items.drop_columns(["cpu_seconds"]))
    assert "regressors" not in " ".join(pl.from_arrow(runs[0].items)["notes"].to_list())


def test_short_series_get_fewer_regressors() -> None:
    rng = np.random.default_rng(8)
    s = _series({"M": 50 + rng.normal(0, 5, 36)}, freq="M")  # oldest window trains on 30 months
    x = rng.normal(size=(36 + 3, 4))
    res = forecast_batch(
        s.with_exog(x, ("a", "b", "c", "d"), s.starts[0]),
        [0],
        EngineSpec(3, "M", ("arima",), backtest_windows=2),
    )
    items = pl.from_arrow(res.items)
    assert "3 of 4 regressors" in items["notes"][0]
    params = json.loads(items["params"][0])
    assert params["exog"]["features"] == ["a", "b", "c"]
    # four months later a warm rerun (no backtest: 40 // 10 would allow all 4) keeps the cold fit's 3
    grown = _series({"M": np.r_[s.values_of(0), 50 + rng.normal(0, 5, 4)]}, freq="M")
    warm = forecast_batch(
        grown.with_exog(rng.normal(size=(40 + 3, 4)), ("a", "b", "c", "d"), grown.starts[0]),
        [0],
        EngineSpec(3, "M", ("arima",), backtest_windows=0),
        {str(s.item_ids[0]): params},
    )
    assert json.loads(pl.from_arrow(warm.items)["params"][0])["exog"]["features"] == ["a", "b", "c"]


# ---------------------------------------------------------------- features per frequency


@pytest.mark.parametrize("freq,h", [("D", 14), ("W", 6), ("M", 3), ("Q", 2)])
def test_features_for_each_frequency(
    small_demo: Path, demo_features: pd.DataFrame, freq: str, h: int
) -> None:
    demand = pd.read_parquet(small_demo / "demand.parquet")
    s = build_series(demand, freq)
    s2, ex = attach_exog(s, demo_features, h)
    n_grid = int(period_index(ex.start, s.end, freq)) + 1
    assert ex.names == DEFAULT_FEATURES[freq] and not ex.dropped
    assert s2.exog.shape == (n_grid + h, len(ex.names)) and s2.exog_horizon == h
    assert np.isfinite(s2.exog).all()
    np.testing.assert_allclose(s2.exog[:n_grid].mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(s2.exog[:n_grid].std(0), 1, atol=1e-9)
    raw = s2.exog * ex.std + ex.mean  # back to feature units
    cal = calendar_features("2023-01-01", "2024-12-31")
    grid = pd.date_range(str(ex.start), periods=len(raw), freq=ALIAS[freq])
    if freq == "D":
        assert raw[:, 0].tolist() == cal.set_index("date")["is_holiday"].reindex(grid).astype(float).tolist()
    else:
        key = {"W": "holidays", "M": "business_days", "Q": "business_days"}[freq]
        bd = cal.assign(bd=(1 - cal[["is_holiday", "is_weekend"]].max(axis=1)), h=cal["is_holiday"])
        per = bd.groupby(bd["date"].dt.to_period({"W": "W-SUN", "M": "M", "Q": "Q"}[freq]).dt.start_time)
        want = (per["h"] if key == "holidays" else per["bd"]).sum().reindex(grid).to_numpy(float)
        np.testing.assert_allclose(raw[:, ex.names.index(key)], want, atol=1e-9)


def test_future_rows_use_nothing_after_the_known_day(demo_features: pd.DataFrame) -> None:
    cut = pd.Timestamp("2023-11-30")
    ex = build_exog(demo_features, "D", "2023-01-01", cut, 31, known_until=cut)
    # realised values after the cut (rain, FX, 5G) change: the matrix must not
    changed = demo_features.copy()
    after = changed["date"] > cut
    for col in ("rain_mm", "usd_brl", "g5_estacoes_5g"):
        changed.loc[after, col] = changed.loc[after, col] * 3 + 1
    ex2 = build_exog(changed, "D", "2023-01-01", cut, 31, known_until=cut)
    np.testing.assert_array_equal(ex.values, ex2.values)
    fut = ex.values[-31:] * ex.std + ex.mean
    hist_fx = demo_features.loc[demo_features["date"] == cut, "usd_brl"].iloc[0]
    np.testing.assert_allclose(fut[:, ex.names.index("usd_brl")], hist_fx)  # economy: last value
    np.testing.assert_allclose(fut[22:26, 0], [0, 0, 1, 0], atol=1e-9)  # 25 December: calendar exact
    # the oracle setting (no cut) reads the realised values instead
    oracle = build_exog(changed, "D", "2023-01-01", cut, 31)
    assert not np.allclose(oracle.values[-31:], ex2.values[-31:])


def test_a_weather_forecast_in_the_future_table_reaches_the_rain_features(
    demo_features: pd.DataFrame,
) -> None:
    """Rain supplied by a future table (a weather forecast) is what the horizon rows read; the
    climatology fills only the days it leaves out, and it is the whole table's, not that of the
    days next to the series."""

    def rain_log(ex) -> np.ndarray:  # the horizon's rain_log, unscaled
        i = ex.names.index("rain_log")
        return ex.values[-10:, i] * ex.std[i] + ex.mean[i]

    cut = pd.Timestamp("2023-11-30")
    plain = build_exog(demo_features, "D", "2023-01-01", cut, 10, known_until=cut)
    storm = pd.DataFrame({"date": pd.date_range("2023-12-01", periods=5), "rain_mm": 80.0})
    wet = build_exog(demo_features, "D", "2023-01-01", cut, 10, known_until=cut, future_table=storm)
    i = wet.names.index("rain_log")
    top = float(np.log1p(demo_features["rain_mm"]).max()) + wet.std[i]  # the clip: history's max + 1 sd
    np.testing.assert_allclose(rain_log(wet)[:5], min(np.log1p(80.0), top), rtol=1e-9)
    np.testing.assert_allclose(rain_log(wet)[5:], rain_log(plain)[5:])  # the days it leaves out
    assert (rain_log(wet)[:5] > rain_log(plain)[:5] + 1).all()
    # a series that starts in June reads the same climatology for its horizon as one from January
    late = build_exog(demo_features, "D", "2023-06-01", cut, 10, known_until=cut)
    np.testing.assert_allclose(rain_log(late), rain_log(plain), atol=1e-9)


def test_constant_and_missing_features_are_dropped(demo_features: pd.DataFrame) -> None:
    f = demo_features.assign(usd_brl=5.0)
    ex = build_exog(
        f, "D", "2023-01-01", "2023-06-30", 7, columns=["is_holiday", "usd_brl", "nope", "rain_log"]
    )
    assert ex.names == ("is_holiday", "rain_log")
    assert ex.dropped == {"usd_brl": "constant on the history", "nope": "not in the feature table"}


# ---------------------------------------------------------------- do the factors help?


def test_noise_regressor_does_not_hurt() -> None:
    rng = np.random.default_rng(11)
    n, h = 210, 14
    ys = {}
    for k in range(4):
        e = np.zeros(n)
        for t in range(1, n):
            e[t] = 0.6 * e[t - 1] + rng.normal(0, 2)
        ys[f"S{k}"] = np.maximum(30 + 6 * np.sin(2 * np.pi * np.arange(n) / 7 + k) + e, 0)
    s = _series(ys)
    spec = EngineSpec(horizon=h, models=("arima",), backtest_windows=3)
    plain = forecast_batch(s, range(4), spec)
    noisy = forecast_batch(
        s.with_exog(rng.normal(size=(n + h, 2)), ("n1", "n2"), s.starts[0]), range(4), spec
    )
    assert "used by arima" in pl.from_arrow(noisy.items)["notes"][0]
    assert _mase(noisy, "arima") / _mase(plain, "arima") < 1.1


def test_a_real_driver_helps_arima_and_prophet() -> None:
    rng = np.random.default_rng(2)
    n, h = 400, 14
    rain = rng.gamma(0.5, 10, n + h) * (rng.random(n + h) < 0.4)
    x = np.log1p(rain)[:, None]
    y = 10 + 6 * x[:n, 0] + rng.normal(0, 1, n)
    s = _series({"R": np.maximum(y, 0)})
    with_x = s.with_exog((x - x[:n].mean()) / x[:n].std(), ("rain_log",), s.starts[0])
    for model in ("arima", "prophet"):
        spec = EngineSpec(horizon=h, models=(model,), backtest_windows=3)
        ratio = _mase(forecast_batch(with_x, [0], spec), model) / _mase(forecast_batch(s, [0], spec), model)
        assert ratio < 0.7, (model, ratio)


def test_lstm_windows_read_the_regressors_of_their_forecast_periods() -> None:
    from nova_ray.models import lstm

    y = np.arange(40, dtype=float)
    x = np.stack([np.arange(47.0), -np.arange(47.0)], axis=1)  # 40 history rows + 7 future rows
    seq, _, target, fut = lstm._Flat([y], 10, 7, 7, 200, exog=[x], dtype=np.float64).dense()
    # each window's regressor input is the rows of its own target periods, never later ones
    np.testing.assert_allclose(fut.reshape(len(fut), 7, 2)[:, :, 0], target * lstm._scale(y, 7))
    assert fut.max() <= 39  # training windows stay inside the history
    # for training the windows are built as float32 (what Keras trains in), values as cast
    as32 = lstm._Flat([y], 10, 7, 7, 200, exog=[x]).dense()
    for a, b in zip(as32, (seq, _, target, fut), strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b.astype(np.float32))
    np.testing.assert_array_equal(lstm._future_exog([x], [y], 7).reshape(7, 2), x[40:47])
    with pytest.raises(ValueError):
        lstm._future_exog([x[:44]], [y], 7)  # the horizon rows are missing


def test_lstm_trains_and_forecasts_with_regressors() -> None:
    rng = np.random.default_rng(4)
    n, h = 120, 7
    x = rng.normal(size=(n + h, 1))
    s = _series({f"L{i}": np.maximum(10 + 3 * x[:n, 0] + rng.normal(0, 1, n), 0) for i in range(3)})
    s = s.with_exog(x, ("x",), s.starts[0])
    spec = EngineSpec(horizon=h, models=("lstm",), backtest_windows=1)
    spec = EngineSpec(**{**spec.__dict__, "lstm": type(spec.lstm)(lookback=14, units=8, epochs=2)})
    res = forecast_lstm(s, [0, 1, 2], spec)
    assert res.forecasts.num_rows == 3 * h and res.backtests.num_rows == 3 * h
    # its backtest window predicts with the rows known at the origin; the network is the same
    known = s.with_exog(x, ("x",), s.starts[0], {h: np.zeros((h, 1))})
    honest = forecast_lstm(known, [0, 1, 2], spec)
    assert honest.forecasts.equals(res.forecasts)
    assert honest.backtests["forecast"].to_pylist() != res.backtests["forecast"].to_pylist()


# ---------------------------------------------------------------- where features come from; the etl command


def test_load_features_builds_from_the_demo_raw_folder(small_demo: Path) -> None:
    found = load_features(small_demo / "missing.parquet", small_demo / "demand.parquet")
    assert found is not None
    frame, regressors, sources, continued = found
    assert continued == {}  # the demo's 5G count is as current as the other sources
    assert {"rain_mm", "usd_brl", "is_holiday"} <= set(frame.columns) and regressors == ()
    assert any("inmet" in s for s in sources)
    assert load_features(None, small_demo / "nowhere" / "demand.parquet") is None


def test_etl_command_writes_features_and_reports_broken_files(small_demo: Path, tmp_path: Path) -> None:
    import nova_ray.cli.etl  # noqa: F401  (registers the command)
    from nova_ray.cli import app

    runner = CliRunner()
    out = tmp_path / "processed"
    res = runner.invoke(
        app,
        [
            "etl",
            "--raw",
            str(small_demo / "raw"),
            "--out",
            str(out),
            "--start",
            "2023-01-01",
            "--end",
            "2023-12-31",
        ],
    )
    assert res.exit_code == 0, res.output
    frame = read_features(out / "features.parquet")
    assert len(frame) == 365 and "rain_mm" in frame.columns
    quiet = runner.invoke(app, ["etl", "--raw", str(small_demo / "raw"), "--out", str(out), "-q"])
    assert quiet.exit_code == 0 and quiet.output.strip() == f"etl: {out / 'features.parquet'}", quiet.output
    assert json.loads((out / "features_dictionary.json").read_text())["usd_brl"]["group"] == "economy"

    raw = tmp_path / "raw"
    shutil.copytree(small_demo / "raw", raw)
    bad = raw / "bcb" / "usd_brl.json"
    bad.write_text(
        '[\n{"data": "02/01/2023", "valor": "5.35"},\n{"data": "32/01/2023", "valor": "5.40"}\n]\n'
    )
    res = runner.invoke(app, ["etl", "--raw", str(raw), "--out", str(tmp_path / "p2")])
    assert res.exit_code == 2
    msg = " ".join(res.output.split())
    assert "usd_brl.json:3:" in msg and "32/01/2023" in msg


def test_a_monthly_5g_count_keeps_its_pace_in_history_and_horizon() -> None:
    """Anatel tables updated on the 1st of each month: the new-sites feature was a sawtooth
    (the month's additions for 14 days, then 0) and the horizon's pace 0 (no update in the last 28
    days). Now the pace of the latest update, and the last two updates' pace carried forward."""
    from nova_ray.exog import daily_table, derive_daily

    days = pd.date_range("2023-01-01", "2025-12-30")
    cum = np.array([300.0 * ((d.year - 2023) * 12 + d.month) for d in days])
    feats = pd.DataFrame({"date": days, "g5_estacoes_5g": cum})
    pace = derive_daily(feats)["g5_new_sites_14d"].to_numpy()
    assert pace[:31].max() == 0 and np.allclose(pace[-29:], 300 / 30)  # December: November's 300 / 30 days
    assert pace[60:].min() > 9.6 and pace[60:].max() < 10.8  # every month: 300 over 28-31 days
    table = daily_table(feats, days[0], days[-1] + pd.Timedelta(days=30))
    future = table["g5_estacoes_5g"].to_numpy()[-31:]
    step = np.diff(future)  # two updates' pace over the last two intervals, not 0
    assert np.allclose(step, step[0]) and 9.5 < step[0] < 10.2


def test_a_monthly_5g_count_has_its_pace_from_the_grids_first_day() -> None:
    """The daily columns were derived from 28 days before the grid: a monthly count's pace needs
    two updates, so it read 0 for the grid's first weeks (M: its first month 0.21 for ~6.7), and
    as a rolling export's start moved a day, the history's factors moved and every stored fit
    went cold about once a month. They are derived from the table's first day now."""
    from nova_ray.exog import build_exog
    from nova_ray.factor_history import moved

    days = pd.date_range("2023-01-01", "2025-12-30")
    cum = np.array([300.0 * ((d.year - 2023) * 12 + d.month) for d in days])
    feats = pd.DataFrame({"date": days, "g5_estacoes_5g": cum})

    def pace(start: pd.Timestamp, freq: str = "D") -> tuple[np.ndarray, float]:
        """The new-sites feature on the history from `start` (in sites a day), and its spread."""
        ex = build_exog(feats, freq, start, "2025-11-30", 30 if freq == "D" else 3)
        j = ex.names.index("g5_new_sites_14d" if freq == "D" else "g5_new_sites")
        return (ex.values[:, j] * ex.std[j] + ex.mean[j])[: ex.n_hist], float(ex.std[j])

    for start in ("2024-06-01", "2024-06-17"):
        assert pace(pd.Timestamp(start))[0].min() > 9.4  # 300 a month from the first day on, not 0
    assert pace(pd.Timestamp("2024-06-01"), "M")[0][0] > 9.4
    for day in pd.date_range("2024-03-25", periods=8):  # consecutive nights of a rolling export
        (a, std), (b, _) = pace(day), pace(day + pd.Timedelta(days=1))
        first = np.datetime64(day.date(), "D")
        then, now = (first, a[:, None]), (first + 1, b[:, None])
        assert moved(then, now, np.array([std]), ("g5_new_sites_14d",), "D") is None


def test_a_monthly_5g_count_is_a_pace_in_weekly_periods_too() -> None:
    """Weekly models read `g5_new_sites`: with a monthly count it was the month's additions in the
    week of its update and 0 in the others, while the horizon held a smooth pace."""
    from nova_ray.exog import aggregate, daily_table, derive_daily

    days = pd.date_range("2023-01-01", "2025-12-30")
    cum = np.array([300.0 * ((d.year - 2023) * 12 + d.month) for d in days])
    feats = pd.DataFrame({"date": days, "g5_estacoes_5g": cum})
    grid = pd.date_range("2024-01-01", "2025-12-22", freq="W-MON")
    weekly = aggregate(derive_daily(feats), ["g5_new_sites"], "W", grid)["g5_new_sites"].to_numpy()
    assert weekly.min() > 9.0 and weekly.max() < 11.0  # ~300 a month every week, no spikes
    table = derive_daily(daily_table(feats, days[0], days[-1] + pd.Timedelta(days=28)))
    ahead = table["g5_new_sites"].to_numpy()[-28:]  # the first forecast day too, not 300/30 days
    assert 9.0 < ahead.min() <= ahead.max() < 11


def test_a_daily_5g_count_keeps_its_meaning_as_it_grows() -> None:
    """A daily Anatel file whose count changes on about half of the days (as the demo's): the
    median gap between changes went 1, 2, 1 as the history grew, and with 2 the whole history of
    the 5G feature was redefined as a monthly count's (two nights in a row fitted every item
    cold, for "g5_new_sites_14d moved 2.022 of its spread"), and a lagging file was continued at
    2.6 times its pace (a 4-day window). A count that changes every few days is a daily one."""
    from nova_ray.exog import derive_daily
    from nova_ray.rollout import recent_pace, report_interval

    rng = np.random.default_rng(8)
    days = pd.date_range("2023-01-01", periods=700)
    count = np.cumsum((rng.random(700) < 0.45) * rng.integers(1, 12, 700)).astype(float)
    ends = range(len(count) - 60, len(count) + 1)
    gaps = {int(np.median(np.diff(np.flatnonzero(np.diff(count[:n]) != 0)))) for n in ends}
    assert gaps == {1, 2}  # the median gap between changes flips as the history grows
    assert {report_interval(count[:n]) for n in ends} == {1}
    table = pd.DataFrame({"date": days, "g5_estacoes_5g": count})
    full = derive_daily(table)["g5_new_sites_14d"].to_numpy()
    for n in ends:  # a history that only grew: the same feature on the days both hold
        assert np.array_equal(derive_daily(table.iloc[:n])["g5_new_sites_14d"].to_numpy(), full[:n])
        assert recent_pace(count[:n]) == pytest.approx((count[n - 1] - count[n - 29]) / 28)


def test_a_5g_count_behind_the_other_sources_goes_on_at_its_pace(tmp_path: Path) -> None:
    """An Anatel extract that ends before the other sources (it lags by months) was forward-filled
    to the table's end, which read as a roll-out that had stopped: the monthly count's horizon pace
    0, a daily count's trailing mean falling to 0. The ETL records each source's observed days in
    the dictionary and the run continues such a count at its recent pace, in its own steps."""
    from nova_ray.exog import for_run

    raw = tmp_path / "raw"
    (raw / "anatel").mkdir(parents=True)
    (raw / "bcb").mkdir()
    months = pd.date_range("2023-01-31", "2025-09-30", freq="ME")  # monthly, ends 2025-09-30
    rows = [f"{d:%d/%m/%Y};{300 * (i + 1)}" for i, d in enumerate(months)]
    (raw / "anatel" / "5g.csv").write_text("Data;Estacoes\n" + "\n".join(rows) + "\n")
    days = pd.date_range("2023-01-01", "2025-12-30")  # the exchange rate is current
    (raw / "bcb" / "usd_brl.csv").write_text(
        "data;valor\n" + "\n".join(f"{d:%d/%m/%Y};5,{i % 97:02d}" for i, d in enumerate(days)) + "\n")
    res = build_features(raw, tmp_path / "out")
    entries = json.loads(res.dictionary_path.read_text())
    assert entries["g5_estacoes"]["observed"] == ["2023-01-31", "2025-09-30"]
    assert entries["usd_brl"]["observed"] == ["2023-01-01", "2025-12-30"]
    assert "observed" not in entries["is_holiday"]
    assert any("2025-09-30, 91 days before" in w and "continues the count at its recent pace" in w
               for w in res.warnings)
    assert read_features(res.path)["g5_estacoes"].iloc[-1] == 300 * len(months)  # the table keeps the data

    found = load_features(res.path)
    assert found is not None and found.continued == {
        "g5_estacoes": {"observed_until": "2025-09-30", "pace_per_day": pytest.approx(300 / 30.5, rel=0.02)}}
    count = found.frame.set_index("date")["g5_estacoes"]
    assert count["2025-10-01":"2025-10-29"].eq(300 * len(months)).all()  # still a monthly step
    steps = np.diff(count["2025-09-30":].to_numpy())
    assert (steps > 0).sum() == 2 and steps.max() == pytest.approx(300, rel=0.05)  # two of ~300

    demand = _series({"A": np.full(len(days) - 1, 5.0)}, start="2023-01-02")
    out, record = for_run(demand, 30, res.path)
    assert record["continued"]["g5_estacoes"]["observed_until"] == "2025-09-30"
    warned = "g5_estacoes: the 5G count ends 2025-09-30, 91 days before"
    assert any(w.startswith(warned) for w in record["warnings"])
    j = out.exog_names.index("g5_new_sites_14d")
    pace = out.exog[:, j] * record["std"][j] + record["mean"][j]
    n = len(pace) - out.exog_horizon  # the roll-out goes on in the horizon (it was 0), at the history's pace
    assert pace[n:].min() > 9 and pace[n - 1] == pytest.approx(pace[n], rel=0.1)


def test_an_imputed_last_day_is_unknown_rain_not_a_wet_day(demo_features: pd.DataFrame) -> None:
    """The ETL fills a day without station rain (a gap, the partial last day of a nightly
    download) with the day-of-year mean rain, and the models read log1p of it as observed rain: a
    wet day (the mean is far above the typical day's). Such days now take the climatology of log
    rain, as the horizon does, and so do the two days after them for `rain_prev2d_log`."""
    from nova_ray.etl import climatology
    from nova_ray.etl.features import IMPUTED
    from nova_ray.exog import KNOWN, RAIN_GIVEN, _observed_days, daily_table

    cut = pd.Timestamp("2023-11-30")
    feats = demo_features[demo_features["date"] <= cut].copy()
    feats.loc[feats["date"] == cut, IMPUTED] = 1  # as the ETL leaves a day without station rain
    feats.loc[feats["date"] == cut, "rain_mm"] = 9.0  # the day-of-year mean rain it filled in
    ex = build_exog(feats, "D", "2023-01-01", cut, 5, known_until=cut)
    i, j = ex.names.index("rain_log"), ex.names.index("rain_prev2d_log")
    rows = ex.values * ex.std + ex.mean  # unscaled; row -6 is the imputed day, -5 the first forecast day
    clim = climatology(_observed_days(feats, cut), ["rain_log", "rain_prev2d_log"])
    assert rows[-6, i] == pytest.approx(clim.loc[cut.dayofyear, "rain_log"])  # not log1p(9.0) = 2.30
    assert rows[-6, i] < np.log1p(9.0) - 1
    # the first forecast day's two previous days include the imputed one
    assert rows[-5, j] == pytest.approx(clim.loc[cut.dayofyear + 1, "rain_prev2d_log"])
    table = daily_table(feats, cut - pd.Timedelta(days=2), cut)
    assert table[KNOWN].tolist() == [1, 1, 1] and table[RAIN_GIVEN].tolist() == [1, 1, 0]


def test_a_5g_extract_that_starts_late_does_not_jump_from_zero(tmp_path: Path) -> None:
    """Before an Anatel extract's first row the count is its first value: a jump from 0 to 10,000
    sites in one day was a huge outlier in every 5G regressor."""
    from nova_ray.etl import build_features

    raw = tmp_path / "raw"
    (raw / "anatel").mkdir(parents=True)
    (raw / "anatel" / "5g.csv").write_text("Data;Estacoes\n01/01/2024;10.000\n01/02/2024;10.300\n")
    res = build_features(raw, tmp_path / "out", start="2023-06-01", end="2024-03-01")
    f = pd.read_parquet(res.path).set_index("date")
    assert f["g5_estacoes"].iloc[0] == 10000 and f["g5_estacoes"].iloc[-1] == 10300


def test_a_future_table_as_planners_write_it(demo_features: pd.DataFrame, tmp_path: Path) -> None:
    """A Brazilian `;` CSV (decimal commas, dd/mm/yyyy) reads as the demand does: it was rejected
    for lacking a 'date' column, and dd/mm dates were read as mm/dd. A value that is not a number
    names its line (it dropped the factor from the whole run); rows of days the history covers do
    not override the realised values (a stale row carried forward past them)."""
    from nova_ray.etl import future_features
    from nova_ray.io.features import read_future_table

    semi = tmp_path / "fut.csv"
    semi.write_text("Date;USD_BRL\n01/01/2024;5,9\n12/01/2024;6,1\n", encoding="cp1252")
    table = read_future_table(semi)
    assert table["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-12"]
    assert table["usd_brl"].tolist() == [5.9, 6.1]
    bad = tmp_path / "bad.csv"
    bad.write_text("date,usd_brl\n2024-01-01,5.9\n2024-01-02,cinco\n")
    with pytest.raises(ValueError, match=r"bad.csv: line 3: 'cinco' in column 'usd_brl' is not a number"):
        read_future_table(bad)
    last = demo_features["date"].max()
    stale = pd.DataFrame({"date": [last - pd.Timedelta(days=10)], "usd_brl": [9.9]})
    fut = future_features(demo_features, pd.date_range(last + pd.Timedelta(days=1), periods=5), stale)
    assert (fut["usd_brl"] == demo_features["usd_brl"].iloc[-1]).all()


def test_a_planned_5g_roll_out_in_month_end_counts_is_a_steady_pace() -> None:
    """A plan of +150 sites by each month end (the Anatel table's own form) was carried forward
    as a step: the horizon's pace read 0 for most of each month and a clipped spike on its last
    day (mean 0.5 a day for a plan of 5), and the clip warning pointed the planner the wrong way.
    The count now grows linearly between the last known day and the plan's dates."""
    from nova_ray.exog import build_exog

    days = pd.date_range("2023-01-01", "2025-03-10")
    months = np.array([(d.year - 2023) * 12 + d.month for d in days])
    cum = 250.0 * months + 150.0 * (months % 2)  # 400 and 100 new sites in turn, monthly
    feats = pd.DataFrame({"date": days, "g5_estacoes_5g": cum})
    plan = pd.DataFrame({"date": pd.to_datetime(["2025-03-31", "2025-04-30", "2025-05-31"]),
                         "g5_estacoes_5g": cum[-1] + np.array([150.0, 300.0, 450.0])})
    ex = build_exog(feats, "D", "2024-01-01", "2025-03-10", 60, future_table=plan)
    j = ex.names.index("g5_new_sites_14d")
    pace = (ex.values[:, j] * ex.std[j] + ex.mean[j])[ex.n_hist:]
    assert np.allclose(pace[:21], 150 / 21) and np.allclose(pace[21:51], 5.0)  # to 31 March, then April
    assert not ex.clipped


def test_a_misspelt_future_column_is_an_error_not_ignored(small_demo: Path, tmp_path: Path) -> None:
    from nova_ray.config import ConfigError, load_config
    from nova_ray.pipeline import attach_exog, load_series

    fut = tmp_path / "fut.csv"
    fut.write_text("date,chuva_mm\n2030-01-01,80\n")
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet"), "future_features": str(fut)},
                      dotenv=None)
    series, _ = load_series(cfg, None)
    # named by where the setting came from, as --features is
    with pytest.raises(ConfigError, match=r"^option --future-features: setting 'future_features': .*"
                       r"column 'chuva_mm' is not a feature \(the features: ") as exc:
        attach_exog(cfg, series)
    assert "usd_brl" in str(exc.value) and "holiday_name" not in str(exc.value)  # numbers only
    # a folder given as the feature table: said so, with the file it holds (it said "not found")
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet"), "features": str(tmp_path)},
                      dotenv=None)
    inside = tmp_path / "features.parquet"
    with pytest.raises(ConfigError, match=f"setting 'features': {tmp_path} is a folder \\(the table "
                       f"`nova-ray etl` writes: {inside}\\)$"):
        attach_exog(cfg, series)


@pytest.mark.parametrize(("content", "message"), [
    (b"date,usd_brl\n2024-01-01,5\n", "not a Parquet feature table"),
    (None, "not a feature table: no 'date' column"),
    ("empty", "the feature table has no rows"),  # blamed future_features, naming no file
    ("text", "row 3: column 'date': cannot parse date 'garbage'"),  # pandas' 5 lines, ditto
])
def test_a_features_file_that_is_not_one_is_one_line_naming_it(
    small_demo: Path, tmp_path: Path, content: bytes | str | None, message: str
) -> None:
    """A CSV, or a Parquet file without a date column, given as --features: a traceback
    (KeyError: 'date'), or an error blaming the setting future_features."""
    from nova_ray.config import load_config
    from nova_ray.io.errors import InputError
    from nova_ray.pipeline import attach_exog, load_series

    path = tmp_path / "features.parquet"
    if content is None:
        pd.DataFrame({"day": pd.date_range("2024-01-01", periods=3), "x": 1.0}).to_parquet(path)
    elif content == "empty":
        pd.DataFrame({"date": pd.to_datetime([]), "usd_brl": []}).to_parquet(path)
    elif content == "text":
        pd.DataFrame({"date": ["2024-01-01", "02/01/2024", "garbage"], "usd_brl": 5.0}).to_parquet(path)
    else:
        path.write_bytes(content)
    cfg = load_config(None, {"data": str(small_demo / "demand.parquet"), "features": str(path)}, dotenv=None)
    series, _ = load_series(cfg, None)
    with pytest.raises(InputError, match=f"{path}: {message}") as exc:
        attach_exog(cfg, series)
    assert "future_features" not in str(exc.value)


def test_features_that_end_long_before_the_demand_are_a_warning(small_demo: Path, tmp_path: Path) -> None:
    """An ETL run with an early --end left the last months of history on climatology and last
    values without a word."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import attach_exog, load_series

    res = build_features(small_demo / "raw", tmp_path / "out", "2023-01-01", "2023-06-30")
    paths = {"data": str(small_demo / "demand.parquet"), "features": str(res.path)}
    cfg = load_config(None, paths, dotenv=None)
    series, _ = load_series(cfg, None)
    _, record = attach_exog(cfg, series)
    (msg,) = record["warnings"]
    assert msg.startswith("the features end 2023-06-30, ") and "days before the demand's last period" in msg
    # the record names the table (absolute), its content hash and the raw files behind it
    assert record["sources"][0] == str(res.path.resolve()) and len(record["features_sha256"]) == 16
    sources = record["sources"]
    assert "raw:bcb/usd_brl.json" in sources and any(s.startswith("raw:inmet/") for s in sources)


def test_features_that_start_long_after_the_demand_are_a_warning(small_demo: Path, tmp_path: Path) -> None:
    """A table built with a late --start (or from a year of raw files too few) gave months of
    history the first values and the climatology as if observed, without a word."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import attach_exog, load_series

    paths = {"data": str(small_demo / "demand.parquet")}
    series, _ = load_series(load_config(None, paths, dotenv=None), None)
    first = pd.Timestamp(series.starts.min())
    start = first + pd.Timedelta(days=90)
    res = build_features(small_demo / "raw", tmp_path / "out", start.date().isoformat())
    cfg = load_config(None, paths | {"features": str(res.path)}, dotenv=None)
    _, record = attach_exog(cfg, series)
    (msg,) = record["warnings"]
    assert msg.startswith(f"the features start {start.date()}, 90 days after the demand's first day "
                          f"{first.date()}: those days use the climatology and the first values")
    assert record["features_from"] == str(start.date())


def test_a_future_table_that_changes_nothing_is_said(small_demo: Path, tmp_path: Path) -> None:
    """A future table whose rows all lie in the history, one with a header only, one given with
    --no-exog: exit 0, no effect, no word. An empty file's error named no file."""
    from nova_ray.config import ConfigError, load_config
    from nova_ray.pipeline import attach_exog, load_series

    base = {"data": str(small_demo / "demand.parquet")}
    series, _ = load_series(load_config(None, base, dotenv=None), None)
    fut = tmp_path / "fut.csv"
    for text in ("date,usd_brl\n2023-03-01,6.5\n", "date,usd_brl\n"):
        fut.write_text(text)
        _, record = attach_exog(load_config(None, base | {"future_features": str(fut)}, dotenv=None), series)
        (msg,) = record["warnings"]
        assert msg.startswith(f"{fut}: no row after the feature table's last day ")
        assert msg.endswith(": the future values change nothing")
    fut.write_text("date,usd_brl\n2099-01-01,6.5\n")
    off = load_config(None, base | {"future_features": str(fut), "exog": False}, dotenv=None)
    _, record = attach_exog(off, series)
    assert not record["enabled"] and record["warnings"] == [
        f"option --future-features: future feature values {fut} not used: external factors are switched off"]
    fut.write_bytes(b"")
    with pytest.raises(ConfigError, match=f"setting 'future_features': {fut}: file is empty$"):
        attach_exog(load_config(None, base | {"future_features": str(fut)}, dotenv=None), series)


def test_a_feature_table_without_its_dictionary_is_said(small_demo: Path, tmp_path: Path) -> None:
    """The regressors/ columns are known from the data dictionary beside the table: a table copied
    alone (to shared storage for a Ray job) silently lost them."""
    import shutil

    from nova_ray.config import load_config
    from nova_ray.pipeline import attach_exog, load_series

    res = build_features(small_demo / "raw", tmp_path / "out")
    alone = tmp_path / "alone" / "features.parquet"
    alone.parent.mkdir()
    shutil.copy(res.path, alone)
    paths = {"data": str(small_demo / "demand.parquet")}
    series, _ = load_series(load_config(None, paths, dotenv=None), None)
    for table, said in ((res.path, False), (alone, True)):
        _, record = attach_exog(load_config(None, paths | {"features": str(table)}, dotenv=None), series)
        warned = [w for w in record.get("warnings", []) if "features_dictionary.json" in w]
        expected = (f"{alone}: no features_dictionary.json beside it: the columns of your own regressors/ "
                    "files are not used (copy the dictionary with the table)")
        assert warned == ([expected] if said else [])


def test_a_scenario_past_the_history_range_is_clipped_and_said(small_demo: Path, tmp_path: Path) -> None:
    """Future values are clipped to the history's range widened by one spread (documented): a
    planner's scenario of USD/BRL at 9 became ~6 on every horizon day without a word."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import attach_exog, load_series

    base = {"data": str(small_demo / "demand.parquet")}
    series, _ = load_series(load_config(None, base, dotenv=None), None)
    days = pd.date_range(pd.Timestamp(series.end) + pd.Timedelta(days=1), periods=60)
    fut = tmp_path / "fut.csv"
    pd.DataFrame({"date": days.strftime("%Y-%m-%d"), "usd_brl": 9.0}).to_csv(fut, index=False)
    out, record = attach_exog(load_config(None, base | {"future_features": str(fut)}, dotenv=None), series)
    (msg,) = [w for w in record["warnings"] if "clipped" in w]
    assert msg.startswith(f"{fut}: horizon values past the history's range widened by one spread are "
                          "clipped: usd_brl 9 to ")
    limit = float(msg.rsplit(" ", 1)[1])
    j = out.exog_names.index("usd_brl")
    mean, std = record["mean"][j], record["std"][j]
    assert np.allclose(out.exog[-30:, j] * std + mean, limit, rtol=1e-3)  # what the models see (4 digits)
    fut.write_text("date,usd_brl\n" + "".join(f"{d:%Y-%m-%d},5.5\n" for d in days))  # inside the range
    _, record = attach_exog(load_config(None, base | {"future_features": str(fut)}, dotenv=None), series)
    assert not [w for w in record.get("warnings", []) if "clipped" in w]


def test_prophet_with_regressors_has_a_stiffer_trend() -> None:
    """With Prophet's default changepoint prior a changepoint took the level that a regressor had
    moved, and the forecast ran on along that trend segment while the regressor, carried forward,
    stayed level (benchmarks/exog.py: driven items 0.731 -> 0.695 with the stiffer trend). With
    regressors the trend's rate changes are now smaller; without them, or with the prior given,
    Prophet's own prior stands."""
    from nova_ray.models import prophet
    from nova_ray.models.base import STATE

    rng = np.random.default_rng(3)
    n, h = 730, 14
    dates = np.arange(np.datetime64("2023-01-01"), np.datetime64("2023-01-01") + n + h)
    x = np.cumsum(rng.normal(0, 0.05, n + h))[:, None]  # an exchange rate's walk
    level = 20 * np.exp(-0.5 * x[:n, 0]) * np.exp(np.cumsum(rng.normal(0, 0.01, n)))  # and a drift
    y = rng.poisson(level).astype(float)
    kw = {"dates": dates[:n], "future": dates[n:]}

    def moves(params: dict, **more: object) -> float:
        return float(np.abs(prophet.forecast(y, h, 7, params, **kw, **more)[STATE]["delta"]).sum())

    exog = {"x": x[:n], "x_future": x[n:], "exog_names": ["usd_brl"]}
    default = {"changepoint_prior_scale": 0.05}
    assert moves({}, **exog) < 0.5 * moves(dict(default), **exog)
    assert moves({}) == moves(dict(default))


def test_weekday_profile_is_each_weekdays_share_shrunk_for_sparse_series() -> None:
    from nova_ray.models.prophet import WEEKDAY_SHRINK, weekday, weekday_profile

    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-01") + 700)  # a Monday
    assert weekday(dates[:7]).tolist() == [0, 1, 2, 3, 4, 5, 6]
    week = np.array([10, 10, 10, 10, 10, 4, 1], dtype=float)
    y = week[weekday(dates)]
    shrink = 100 / (100 + WEEKDAY_SHRINK)  # 100 nonzero days per weekday
    np.testing.assert_allclose(weekday_profile(y, dates), 1 + shrink * (week / week.mean() - 1))
    slow = np.zeros(700)
    slow[:490:7] = 7.0  # demand on 70 Mondays only (10 a weekday): shrunk halfway to flat
    np.testing.assert_allclose(weekday_profile(slow, dates), [4.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(weekday_profile(np.zeros(700), dates), np.ones(7))


def test_prophet_regressors_move_demand_in_proportion_to_the_weekday(monkeypatch: pytest.MonkeyPatch) -> None:
    """Working-day demand that a factor drives (a storm's repairs): the factor's effect is small on
    the weekend. Scaled by the weekday profile, Prophet's additive regressor follows that; a plain
    one puts the weekday's effect on Sundays too."""
    from nova_ray.models import prophet

    rng = np.random.default_rng(5)
    n, h = 730, 28
    dates = np.arange(np.datetime64("2023-01-02"), np.datetime64("2023-01-02") + n + h)
    x = rng.normal(0, 1, n + h).cumsum() * 0.1
    x = ((x - x[:n].mean()) / x[:n].std())[:, None]
    week = np.array([1.2, 1.1, 1.1, 1.1, 1.0, 0.35, 0.15])[prophet.weekday(dates)]
    y = rng.poisson(20 * week * np.exp(0.5 * x[:, 0])).astype(float)
    kw = {"dates": dates[:n], "future": dates[n:], "x": x[:n], "x_future": x[n:], "exog_names": ["x"]}

    def holdout_mae() -> float:
        return float(np.mean(np.abs(prophet.forecast(y[:n], h, 7, {}, **kw)["mean"] - y[n:])))

    scaled = holdout_mae()
    monkeypatch.setattr(prophet, "weekday_profile", lambda y, dates: np.ones(7))
    plain = holdout_mae()
    assert scaled < 0.85 * plain, (scaled, plain)  # 0.57-0.82 over seeds 0-7


def test_a_backfill_forecasts_from_the_factors_known_on_its_date(small_demo: Path, tmp_path: Path) -> None:
    """`run --date D` for a past D cut the demand at D but not the feature table: the horizon rows
    were the realised rain, exchange rate and 5G of D + 1 on (a look-ahead the backtests never
    had), and a rerun of the date after the table grew saw other values. A run for a past date
    now sees the factors as a table cut at D would give them."""
    from datetime import date

    from nova_ray.config import load_config
    from nova_ray.pipeline import attach_exog, load_series
    from nova_ray.run_inputs import load_demand

    res = build_features(small_demo / "raw", tmp_path / "whole", "2023-01-01", "2023-12-31")
    day = date(2023, 11, 15)
    cut = tmp_path / "cut"
    cut.mkdir()
    frame = read_features(res.path)
    frame[frame["date"] <= pd.Timestamp(day)].to_parquet(cut / res.path.name, index=False)
    shutil.copy(res.dictionary_path, cut / res.dictionary_path.name)

    def run(features: Path, until: date | None):
        cfg = load_config(None, {"data": str(small_demo / "demand.parquet"), "features": str(features)},
                          dotenv=None)
        series, _ = load_series(cfg, None, load_demand(cfg, None, until=day))  # the demand cut at D
        return attach_exog(cfg, series, until)

    (backfill, rec), (known, rec_known), (_, rec_whole) = (
        run(res.path, day), run(cut / res.path.name, None), run(res.path, None))
    assert backfill.exog_horizon == 30 and backfill.exog is not None
    np.testing.assert_array_equal(backfill.exog, known.exog)
    assert backfill.exog_backtest.keys() == known.exog_backtest.keys()
    for b in backfill.exog_backtest:
        np.testing.assert_array_equal(backfill.exog_backtest[b], known.exog_backtest[b])
    assert rec["values_sha256"] == rec_known["values_sha256"] != rec_whole["values_sha256"]
    assert rec["known_until"] == "2023-11-15" and rec["features_until"] == "2023-11-15"
    assert rec_whole["features_until"] == "2023-12-31"
    # today's run (a date not in the past) keeps the table's later rows: a plan written into it
    assert run(res.path, date.today())[1]["values_sha256"] == rec_whole["values_sha256"]


def test_the_last_nights_date_rerun_after_midnight_reads_the_factors_as_its_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a run read the factors as known on its date went by the clock: `run --date D` at
    23:50 kept the table's later rows, the same rerun at 00:10 cut them, saw other values and
    forecast the night again (a killed night resumed with its hinted `--date`, too). A backfill
    is now a date over a day before today, or before the results folder's latest run."""
    import datetime as dt
    import json

    from nova_ray import clock, run_inputs
    from nova_ray.config import load_config

    class Clock(dt.datetime):
        now_is = dt.datetime(2026, 12, 8, 0, 10)

        @classmethod
        def now(cls, tz=None):
            return cls.now_is

    monkeypatch.setattr(clock, "datetime", Clock)
    cfg = load_config(None, {"output": str(tmp_path / "out")}, env={}, dotenv=None)
    night, before = dt.date(2026, 12, 7), dt.date(2026, 12, 6)
    assert run_inputs.known_on(cfg, night) is None  # nothing published yet: the night's own rerun
    assert run_inputs.known_on(cfg, dt.date(2026, 12, 8)) is None and run_inputs.known_on(cfg, None) is None
    assert run_inputs.known_on(cfg, before) == before  # over a day ago: a backfill whatever the folder
    meta = tmp_path / "out" / "metadata"
    meta.mkdir(parents=True)
    (meta / "last_updated.json").write_text(json.dumps({"run_id": "20261207-aaaa", "run_date": "2026-12-07"}))
    assert run_inputs.known_on(cfg, night) is None  # the latest run's date: its rerun
    (meta / "last_updated.json").write_text(json.dumps({"run_id": "20261208-bbbb", "run_date": "2026-12-08"}))
    assert run_inputs.known_on(cfg, night) == night  # a later night ran: now a backfill
    Clock.now_is = dt.datetime(2026, 12, 7, 23, 50)
    (meta / "last_updated.json").unlink()
    assert run_inputs.known_on(cfg, night) is None  # before midnight, as after it
