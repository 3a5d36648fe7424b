"""The per-item engine: backtest windows never see the future, classes, fallback, frequencies."""

import dataclasses

import numpy as np
import pandas as pd
import polars as pl
import pytest

from nova_ray.classify import classify
from nova_ray.engine import EngineSpec, forecast_batch
from nova_ray.series import build_series
from nova_ray.windows import backtest_origins


def _series(values: dict[str, np.ndarray], freq: str = "D", start: str = "2023-01-02"):
    rows = []
    for k, v in values.items():
        dates = pd.date_range(
            start, periods=len(v), freq={"D": "D", "W": "W-MON", "M": "MS", "Q": "QS"}[freq]
        )
        rows.append(pd.DataFrame({"item_id": k, "date": dates, "quantity": v}))
    return build_series(pd.concat(rows), freq)


def test_origins_leave_full_windows_and_respect_min_train() -> None:
    assert backtest_origins(100, 10, 3, 10, 7) == [70, 80, 90]
    assert backtest_origins(30, 10, 3, 10, 7) == [20]  # 10 is below two seasons (14)
    # a 16-point quarterly series: its final ETS and Theta are seasonal (10 points are enough),
    # the window from 8 would score their non-seasonal forms: left out
    assert backtest_origins(16, 4, 3, 4, 4) == [12]
    assert backtest_origins(9, 1, 3, 1, 4) == [8]  # 9 points: the final fit is not seasonal either
    assert backtest_origins(60, 12, 3, 12, 12) == [36, 48]  # 5 years of months: not from 24
    assert backtest_origins(100, 10, 0, 10, 7) == []


def test_seasonal_models_are_scored_in_their_seasonal_form() -> None:
    """5 years of a strongly seasonal monthly series, 3 windows of 12: the oldest window trained
    on 24 months, too few for a seasonal ETS, which its backtest scored non-seasonal (2x worse
    than seasonal naive), so the ensemble dropped it, while its final fit was seasonal and the
    best model (the ensemble 29% worse than ETS). Windows now start where the season fits."""
    rng = np.random.default_rng(1)
    t = np.arange(60)
    values = {f"M{i}": 200 + 80 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 10, 60) for i in range(4)}
    spec = EngineSpec(horizon=12, freq="M", models=("naive", "ets"), backtest_windows=3)
    bt = pl.from_arrow(forecast_batch(_series(values, freq="M"), list(range(4)), spec).backtests)
    mae = bt.group_by("model").agg((pl.col("actual") - pl.col("forecast")).abs().mean().alias("mae"))
    by = dict(zip(mae["model"], mae["mae"], strict=True))
    assert by["ets"] < by["naive"], by  # seasonal ETS beats seasonal naive on noise of sd 10


def test_backtest_never_sees_the_future() -> None:
    y = np.arange(1, 101, dtype=float)  # actual == index + 1 makes leaks visible
    s = _series({"A": y})
    res = forecast_batch(s, [0], EngineSpec(horizon=10, models=("naive",), backtest_windows=3))
    bt = pl.from_arrow(res.backtests)
    dates = s.dates_of(0)
    for _, g in bt.group_by("window"):
        origin = g["origin"][0]
        o = int(np.flatnonzero(dates == np.datetime64(origin))[0])
        assert (g["date"].cast(pl.Datetime).dt.date() >= origin).all()
        assert g["actual"].to_list() == y[o : o + 10].tolist()
        # seasonal naive trained on y[:o] repeats its last week: values all < y[o]
        assert (g["forecast"] < y[o]).all()


@pytest.mark.parametrize("model", ["arima", "ets", "theta"])
def test_fixed_parameter_backtest_never_sees_the_future(model: str) -> None:
    """backtest_refit="first": changing the data from origin o on leaves every window up to o as it
    was (parameters come from the oldest window, each window filters only its own past)."""
    rng = np.random.default_rng(3)
    n, h = 200, 14
    y = 20 + 5 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 1, n)
    spec = EngineSpec(horizon=h, models=(model,), backtest_windows=3, backtest_refit="first")

    def windows(values: np.ndarray) -> dict[int, list[float]]:
        bt = pl.from_arrow(forecast_batch(_series({"A": values}), [0], spec).backtests)
        return {w: g.sort("date")["forecast"].to_list() for (w,), g in bt.group_by("window")}

    base = windows(y)
    assert sorted(base) == [0, 1, 2]
    origins = backtest_origins(n, h, 3, h, 7)
    for k, o in enumerate(origins):
        changed = y.copy()
        changed[o:] += 50.0
        after = windows(changed)
        for w in range(k + 1):
            assert after[w] == pytest.approx(base[w], rel=1e-9), (model, k, w)
        if k + 1 < len(origins):
            assert after[k + 1] != pytest.approx(base[k + 1]), "later windows do see their own past"


def test_fixed_parameter_backtest_errors_match_full_refits() -> None:
    rng = np.random.default_rng(4)
    n = 500
    y = rng.poisson(8 + 3 * np.sin(np.arange(n) * 2 * np.pi / 7)).astype(float)
    s = _series({"A": y})
    mae = {}
    for refit in ("first", "all"):
        spec = EngineSpec(horizon=30, models=("arima", "ets", "theta"), backtest_refit=refit)
        bt = pl.from_arrow(forecast_batch(s, [0], spec).backtests)
        mae[refit] = dict(
            bt.group_by("model").agg((pl.col("actual") - pl.col("forecast")).abs().mean().alias("m")).rows()
        )
    for model, err in mae["all"].items():
        assert mae["first"][model] == pytest.approx(err, rel=0.1), model


def test_classification() -> None:
    assert classify(np.full(50, 5.0)) == "smooth"
    assert classify(np.tile([1.0, 30.0], 25)) == "erratic"
    assert classify(np.tile([0, 0, 0, 5.0], 20)) == "intermittent"
    assert classify(np.tile([0, 0, 0, 1.0, 0, 0, 40.0], 10)) == "lumpy"
    assert classify(np.zeros(10)) == "zero"


def test_failed_model_falls_back_and_is_flagged() -> None:
    s = _series({"A": np.array([1.0, 2, 3, 0, 1])})  # too short for ARIMA and ETS
    res = forecast_batch(s, [0], EngineSpec(horizon=3, models=("arima", "ets"), backtest_windows=2))
    items = pl.from_arrow(res.items)
    assert items["fallback"][0] and "arima" in items["failed_models"][0]
    fc = pl.from_arrow(res.forecasts)
    assert fc["model"].unique().to_list() == ["naive"] and fc.height == 3


def test_an_item_whose_fit_raises_outside_its_models_gets_naive_and_its_batch_goes_on(monkeypatch) -> None:
    """A raise in an item's fit outside each model's own guard (here the backtest scale, after one
    model's windows were recorded) failed its whole batch: a `--no-ray` run ended, and on Ray every
    item of the batch was fitted again one by one. Now that item alone gets seasonal naive, flagged
    with why, no row of its failed fit is kept, and the other items' results are as without it."""
    from nova_ray import engine

    rng = np.random.default_rng(3)
    values = {k: rng.poisson(lam, 120).astype(float) for k, lam in (("A", 5), ("B", 9), ("C", 14))}
    spec = EngineSpec(horizon=7, models=("ets", "theta"), backtest_windows=2)
    s = _series(values)
    clean = forecast_batch(s, [0, 1, 2], spec)
    scale, calls = engine.seasonal_error_scale, []

    def breaks_once_on_b(y, m):
        if len(y) and np.array_equal(y, values["B"][: len(y)]):
            calls.append(len(y))
            if len(calls) == 3:  # ets's two windows are recorded; theta's first raises
                raise ValueError("injected")
        return scale(y, m)

    monkeypatch.setattr(engine, "seasonal_error_scale", breaks_once_on_b)
    res = forecast_batch(s, [0, 1, 2], spec)
    items = pl.from_arrow(res.items).sort("item_id")
    b = items.row(1, named=True)
    assert b["fallback"] and b["models"] == "naive"
    assert b["notes"].endswith("its fit failed (ValueError: injected): seasonal naive only"), b["notes"]
    for kind in ("forecasts", "backtests"):
        got, want = pl.from_arrow(getattr(res, kind)), pl.from_arrow(getattr(clean, kind))
        assert got.filter(pl.col("item_id") == "B")["model"].unique().to_list() == ["naive"]
        others = pl.col("item_id") != "B"
        assert got.filter(others).equals(want.filter(others)), kind
    assert items.filter(pl.col("item_id") != "B").drop("cpu_seconds").equals(
        pl.from_arrow(clean.items).sort("item_id").filter(pl.col("item_id") != "B").drop("cpu_seconds"))


def test_one_and_two_point_series_say_too_short_for_every_model() -> None:
    """ETS on one or two points said `KeyError: 'fitted'` or `NotImplementedError: tiny datasets`;
    now "series too short", as ARIMA and Theta do, and the item falls back to seasonal naive."""
    s = _series({"A": np.array([3.0]), "B": np.array([1.0, 2.0])})
    spec = EngineSpec(horizon=3, models=("ets", "theta", "arima"), backtest_windows=1)
    res = forecast_batch(s, [0, 1], spec)
    items = pl.from_arrow(res.items)
    for notes in items["notes"]:
        for model in ("ETS", "Theta", "ARIMA"):
            assert f"{model.lower()} failed: ModelError: series too short for {model};" in notes, notes
        assert "KeyError" not in notes and "NotImplementedError" not in notes
    assert items["fallback"].all() and pl.from_arrow(res.forecasts).height == 2 * 3


@pytest.mark.parametrize("freq,n,h", [("W", 120, 8), ("M", 48, 6), ("Q", 16, 4)])
def test_frequencies(freq: str, n: int, h: int) -> None:
    rng = np.random.default_rng(1)
    s = _series({"A": 20 + rng.normal(0, 2, n), "B": rng.poisson(0.5, n).astype(float)}, freq=freq)
    res = forecast_batch(s, [0, 1], EngineSpec(horizon=h, freq=freq, backtest_windows=2))
    fc = pl.from_arrow(res.forecasts)
    assert set(fc["item_id"]) == {"A", "B"}
    assert fc.group_by("item_id", "model").len()["len"].unique().to_list() == [h]
    assert pl.from_arrow(res.backtests).height > 0
    assert not pl.from_arrow(res.items)["fallback"].any()


def test_fixed_parameter_backtest_with_regressors_matches_full_refits() -> None:
    """ARIMA with regressors: estimated once (orders and regression coefficients) at the oldest
    origin, later windows re-filtered with their own regressor rows; errors as with refits."""
    rng = np.random.default_rng(5)
    n, h = 400, 21
    x = rng.gamma(2.0, 1.0, size=(n + h, 1))
    y = 10 + 2 * np.sin(np.arange(n) * 2 * np.pi / 7) + 3 * x[:n, 0] + rng.normal(0, 1, n)
    s = _series({"A": y})
    s = s.with_exog(x, ("driver",), s.starts[0])
    mae = {}
    for refit in ("first", "all"):
        spec = EngineSpec(horizon=h, models=("arima",), backtest_refit=refit)
        res = forecast_batch(s, [0], spec)
        assert "regressors (1) used by arima" in pl.from_arrow(res.items)["notes"][0]
        bt = pl.from_arrow(res.backtests)
        assert bt["window"].n_unique() == 3
        mae[refit] = float((bt["actual"] - bt["forecast"]).abs().mean())
    assert mae["first"] == pytest.approx(mae["all"], rel=0.1)
    assert mae["first"] < 1.5  # the driver's effect (sd ~4) is explained: noise sd is 1


@pytest.mark.parametrize("window", [150, 200])
def test_search_model_refilter_keeps_the_season_in_phase(window: int) -> None:
    """The form/order search sees the recent `search_window` periods only; re-filtering longer
    histories with its model must keep the weekly season in phase (ETS estimates initial states)."""
    rng = np.random.default_rng(6)
    n = 500
    y = 20 + 8 * np.sin(np.arange(n) * 2 * np.pi / 7) + rng.normal(0, 1, n)
    s = _series({"A": y})
    mae = {}
    for refit in ("first", "all"):
        spec = EngineSpec(horizon=28, models=("arima", "ets"), backtest_refit=refit, search_window=window)
        bt = pl.from_arrow(forecast_batch(s, [0], spec).backtests)
        mae[refit] = dict(
            bt.group_by("model").agg((pl.col("actual") - pl.col("forecast")).abs().mean().alias("m")).rows()
        )
    for model, err in mae["all"].items():
        assert mae["first"][model] == pytest.approx(err, rel=0.15), model
        assert mae["first"][model] < 1.3  # noise sd 1: the season is followed


def test_rows_repeat_scalars_per_forecast_as_arrays_would() -> None:
    from nova_ray.models import LEVELS
    from nova_ray.result_rows import BACKTEST_COLS, BACKTEST_TABLE, Rows

    def fc(h: int, base: float) -> dict[str, np.ndarray]:
        out = {"mean": np.full(h, base)}
        for lv in LEVELS:
            out[f"lo-{lv}"], out[f"hi-{lv}"] = np.full(h, base - lv), np.full(h, base + lv)
        return out

    days = np.datetime64("2024-01-01") + np.arange(12)
    scalar, arrays = Rows(BACKTEST_COLS), Rows(BACKTEST_COLS)
    # one item's scale as an array of its periods, the other's as a scalar: mixed chunks too
    for i, (item, h) in enumerate([("A", 3), ("BB", 0), ("C", 5)]):
        cols = {"item_id": item, "model": "m", "window": i, "origin": days[i], "scale": 0.5 * i}
        scalar.add_forecast(
            fc(h, i),
            **cols | {"scale": np.full(h, 0.5 * i) if i == 2 else 0.5 * i},
            date=days[i : i + h],
            actual=np.arange(h, dtype=float),
        )
        rep = {k: np.repeat(np.asarray(v), h) for k, v in cols.items()}
        arrays.add_forecast(fc(h, i), **rep, date=days[i : i + h], actual=np.arange(h, dtype=float))
    a, b = scalar.table(BACKTEST_TABLE), arrays.table(BACKTEST_TABLE)
    assert a.num_rows == 8 and a.equals(b)
    assert a["item_id"].to_pylist() == ["A"] * 3 + ["C"] * 5
    assert a["origin"].to_pylist()[-1] == days[2].astype(object)


@pytest.mark.parametrize("start", ["2023-01-02", "2024-02-28", "1999-12-31"])
def test_daily_dates_equal_pandas_date_range(start: str) -> None:
    from nova_ray.frequency import date_range, get_frequency

    want = pd.date_range(start, periods=400, freq="D").values.astype("datetime64[D]")
    got = date_range(pd.Timestamp(start), 400, get_frequency("D"))
    assert got.dtype == want.dtype and (got == want).all()
    assert (date_range(np.datetime64(start, "D"), 400, get_frequency("D")) == want).all()


def test_the_lstm_numbers_a_short_items_windows_as_the_engine_does() -> None:
    """Windows are numbered per item, oldest first among its own origins: a short item's first
    window is its oldest valid origin. Numbered on the longest series' origins instead, the LSTM's
    windows of a short item did not meet the other models' in the ensemble (its backtest rows split
    in two groups each missing part of the weights)."""
    from nova_ray.engine import LstmSpec
    from nova_ray.global_lstm import forecast_lstm

    rng = np.random.default_rng(3)
    days = pd.date_range("2023-01-02", periods=80)
    s = build_series(pd.concat([  # SHORT: a new part, its 20 days ending with LONG's
        pd.DataFrame({"item_id": "LONG", "date": days, "quantity": 20 + rng.normal(0, 2, 80)}),
        pd.DataFrame({"item_id": "SHORT", "date": days[-20:], "quantity": 20 + rng.normal(0, 2, 20)}),
    ]), "D")
    assert len(s.values_of(1)) == 20
    spec = EngineSpec(2, "D", ("naive", "lstm"), backtest_windows=3,
                      lstm=LstmSpec(lookback=7, units=4, epochs=1, batch_size=32))
    key = ["item_id", "window", "origin"]
    engine = pl.from_arrow(forecast_batch(s, [0, 1], spec).backtests).select(key).unique().sort(key)
    lstm = pl.from_arrow(forecast_lstm(s, [0, 1], spec).backtests).select(key).unique().sort(key)
    assert engine.filter(pl.col("item_id") == "SHORT")["window"].to_list() == [0, 1]  # 2 valid origins
    assert lstm.equals(engine)


def test_items_too_short_for_a_backtest_are_named_in_a_warning() -> None:
    """Two years of weekly data with horizon 8 leave no backtest window (104 weeks to train + 8):
    the run says so instead of silently publishing no metrics and equal weights."""
    from nova_ray.checks import too_short_to_backtest
    from nova_ray.config import Config
    from nova_ray.pipeline import engine_spec

    cfg = Config()
    cfg.set("freq", "W", "test")
    cfg.set("horizon", 8, "test")
    msg, few = too_short_to_backtest(np.array([105, 111, 112, 300]), engine_spec(cfg))
    assert msg.startswith("2 of 4 items have under 112 weeks of history (104 to train a backtest window, 8")
    # and one (112 weeks) has room for 1 of the 3 windows: its weights rest on one window's errors
    assert few.startswith("1 of 4 items have room for fewer than the 3 backtest windows asked for (as few as")
    cfg.set("backtest_windows", 0, "test")  # backtests off: nothing to warn about
    assert too_short_to_backtest(np.array([105]), engine_spec(cfg)) == []
    assert too_short_to_backtest(np.array([1095, 300]), engine_spec(Config())) == []  # daily: 3 windows fit
    (few,) = too_short_to_backtest(np.array([1095, 60]), engine_spec(Config()), ["OLD", "NEW"])  # 14 + 30
    assert few.startswith("1 of 2 items have room for fewer than the 3 backtest windows")
    assert few.endswith(": NEW")


def test_a_week_without_a_row_for_any_item_is_a_warning(small_demo, tmp_path) -> None:
    """An export that lost 2024-05-01..05-09 for every item (a failed ERP job): every item read
    nine days of zero demand, with no word. A stretch of a week or more without any row is named."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import run_forecast

    demand = pd.read_parquet(small_demo / "demand.parquet")
    demand["date"] = pd.to_datetime(demand["date"])
    first = demand["date"].min() + pd.Timedelta(days=200)
    hole = (demand["date"] >= first) & (demand["date"] < first + pd.Timedelta(days=9))
    demand[~hole].to_parquet(tmp_path / "demand.parquet")
    cfg = load_config(None, {"data": str(tmp_path / "demand.parquet"), "output": str(tmp_path / "out"),
                             "models_dir": str(tmp_path / "models"), "models": "naive", "horizon": 7,
                             "backtest_windows": 1}, env={}, dotenv=None)
    summary = run_forecast(cfg, use_ray=False, publish=False)
    last = (first + pd.Timedelta(days=8)).date()
    assert [w for w in summary.warnings if f"no row for any item from {first.date()} to {last} (9 days)" in w]
    some = run_forecast(cfg, ["CAB-0001"], use_ray=False, publish=False)  # --items: not the file's days
    assert not [w for w in some.warnings if "no row for any item" in w]
    middle = demand[hole & (demand["date"] == first + pd.Timedelta(days=4))]  # a day of rows in it
    pd.concat([demand[~hole], middle]).to_parquet(tmp_path / "demand.parquet")
    split = run_forecast(cfg, use_ray=False, publish=False)
    assert not [w for w in split.warnings if "no row for any item" in w]  # two gaps of 4 days
    sparse = demand[~hole & (demand["date"].dt.dayofyear % 3 == 0)]  # rows on the days of use only
    sparse.to_parquet(tmp_path / "demand.parquet")
    assert not [w for w in run_forecast(cfg, use_ray=False, publish=False).warnings if "no row for any" in w]


def test_a_history_that_ended_long_before_the_run_date_is_a_warning() -> None:
    """The stock snapshot is taken as of the history's last day: an export weeks old makes every
    stock-out date that much too late, so the run says so (a period plus a week of slack)."""
    from datetime import date

    from nova_ray.checks import stale_history
    from nova_ray.config import Config

    cfg = Config()  # the built-in demo's dates are fixed: no warning for it
    assert stale_history(cfg, np.datetime64("2025-12-30"), date(2026, 12, 5)) == []
    cfg.set("data", "exports/demand.csv", "test")
    (msg,) = stale_history(cfg, np.datetime64("2025-12-30"), date(2026, 12, 5))
    assert "the history ends 2025-12-30, 340 days before the run date 2026-12-05" in msg
    assert stale_history(cfg, np.datetime64("2026-11-27"), date(2026, 12, 5)) == []  # 8 days: a week's slack
    cfg.set("freq", "M", "test")  # the October period ends on the 31st: 30 days before is on time
    assert stale_history(cfg, np.datetime64("2026-10-01"), date(2026, 11, 30)) == []
    assert stale_history(cfg, np.datetime64("2026-09-01"), date(2026, 11, 30))
    # daily rows up to yesterday inside a quarter left out as incomplete: on time (the snapshot is
    # yesterday's, not the last full quarter's end); daily rows that ended a month ago are stale
    cfg.set("freq", "Q", "test")
    q3 = np.datetime64("2026-07-01")
    assert stale_history(cfg, q3, date(2026, 12, 5), last_day=date(2026, 12, 4)) == []
    (msg,) = stale_history(cfg, q3, date(2026, 12, 5), last_day=date(2026, 11, 4))
    assert "the history ends 2026-11-04, 31 days before" in msg


def test_arima_keeps_the_drift_its_backtests_had() -> None:
    """The search's drift (a trend after one difference) reaches the final fit: its backtests
    forecast the trend and earned ARIMA the weight, then the final fit, without drift, was flat."""
    rng = np.random.default_rng(0)
    y = 100 + 0.2 * np.arange(400) + rng.normal(0, 2, 400)
    res = forecast_batch(_series({"TREND": y}), [0], EngineSpec(horizon=60, models=("arima",),
                                                               backtest_windows=2))
    fc = pl.from_arrow(res.forecasts).filter(pl.col("model") == "arima")["forecast"].to_numpy()
    slope = (fc[-1] - fc[0]) / (len(fc) - 1)
    assert 0.12 < slope < 0.28, slope
    params = pl.from_arrow(res.items)["params"][0]
    assert '"drift": true' in params


@pytest.mark.parametrize("model", ["ets", "arima"])
def test_a_season_the_oldest_backtest_window_could_not_see_is_kept_for_the_final_fit(model: str) -> None:
    """3 years of monthly data and windows of 12: the search on the only window's training set (24
    months) could not fit a yearly season and the whole run went without it (a flat forecast for
    an item swinging 200-400). The final fit now searches again on the whole history, and says so.
    (With 5 years the windows now start where the season fits: `backtest_origins`.)"""
    rng = np.random.default_rng(1)
    t = np.arange(36)
    y = 300 + 100 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 10, 36)
    res = forecast_batch(_series({"M": y}, "M", start="2020-01-01"), [0],
                         EngineSpec(horizon=12, freq="M", models=(model,), backtest_windows=3))
    fc = pl.from_arrow(res.forecasts).filter(pl.col("model") == model)["forecast"].to_numpy()
    assert fc.max() - fc.min() > 120  # the yearly swing, not a flat line
    items = pl.from_arrow(res.items)
    assert "the season searched again on the whole history" in items["notes"][0]
    assert len(pl.from_arrow(res.backtests).filter(pl.col("model") == model)["window"].unique()) == 1


def test_items_the_global_lstm_forecasts_need_no_naive_fallback() -> None:
    """`--models lstm`: the per-item engine has no model of its own for the item; it used to flag
    every item as fallen back and publish naive next to the LSTM. An item with a training window
    of its own is the LSTM's; one too short for any window still gets the naive safety net."""
    rng = np.random.default_rng(2)
    spec = EngineSpec(horizon=14, models=("lstm",))
    res = forecast_batch(_series({"LONG": rng.poisson(20, 200).astype(float)}), [0], spec)
    items = pl.from_arrow(res.items)
    assert items["fallback"].to_list() == [False] and "capped" not in items["notes"][0]
    assert pl.from_arrow(res.forecasts).height == 0  # the LSTM's come from the actor, not naive here
    short = forecast_batch(_series({"SHORT": rng.poisson(20, 30).astype(float)}), [0], spec)
    assert pl.from_arrow(short.items)["fallback"].to_list() == [True]


def test_the_lstm_sees_a_smooth_items_one_off_spike_capped_as_the_other_models_do() -> None:
    """One day of 5000 five days before the end of an item of ~10 a day: the LSTM's inputs are
    capped at the item's outlier fence, as the statistical models' training values are (raw, its
    forecast was ~70 a day and the ensemble's doubled); the backtest actuals stay raw."""
    from nova_ray.engine import LstmSpec
    from nova_ray.global_lstm import forecast_lstm

    rng = np.random.default_rng(4)
    days = pd.date_range("2023-01-02", periods=300)
    frames = [pd.DataFrame({"item_id": f"S{k}", "date": days, "quantity": rng.poisson(10, 300).astype(float)})
              for k in range(4)]
    frames[0].loc[295, "quantity"] = 5000.0
    s = build_series(pd.concat(frames), "D")
    lstm = LstmSpec(lookback=14, units=8, epochs=3, batch_size=64)
    spec = EngineSpec(7, "D", ("lstm",), backtest_windows=1, lstm=lstm)
    res = forecast_lstm(s, [0, 1, 2, 3], spec)
    fc = pl.from_arrow(res.forecasts).filter(pl.col("item_id") == "S0")["forecast"]
    assert fc.max() < 30, fc.to_list()
    raw = forecast_lstm(s, [0, 1, 2, 3], dataclasses.replace(spec, cap_outliers=False))
    assert pl.from_arrow(raw.forecasts).filter(pl.col("item_id") == "S0")["forecast"].mean() > fc.mean()
    bt = pl.from_arrow(res.backtests).filter(pl.col("item_id") == "S0")
    assert bt["actual"].max() == 5000.0  # the window that holds the spike measures it raw


def test_an_item_shorter_than_the_lstms_window_is_left_to_the_other_models() -> None:
    """3 observations: the LSTM read them padded with zeros (1.6 a day for an item of ~6) and got
    half the ensemble's weight. Items without a window of their own are not the LSTM's; a note
    says so, and an item only the LSTM was asked for falls back."""
    from nova_ray.global_lstm import lstm_items

    days = pd.date_range("2024-01-01", periods=200)
    s = build_series(pd.concat([
        pd.DataFrame({"item_id": "LONG", "date": days, "quantity": 6.0}),
        pd.DataFrame({"item_id": "SHORT", "date": days[-3:], "quantity": [5.0, 7.0, 6.0]}),
    ]), "D")
    spec = EngineSpec(7, "D", ("naive", "lstm"), backtest_windows=1)
    assert lstm_items(s, spec) == [0]
    items = pl.from_arrow(forecast_batch(s, [1], spec).items)
    assert "lstm skipped: 3 periods, fewer than its input window and horizon (28 + 7)" in items["notes"][0]
    only = pl.from_arrow(forecast_batch(s, [1], dataclasses.replace(spec, models=("lstm",))).items)
    assert only["fallback"][0] and only["models"][0] == "naive"


def test_a_horizon_longer_than_an_items_history_is_a_warning() -> None:
    """40 quarters ahead of 34 quarters of history: forecasts far beyond the data, given silently."""
    from nova_ray.checks import horizon_beyond_history

    spec = EngineSpec(40, "Q", ("naive",))
    (msg,) = horizon_beyond_history(np.array([34, 60, 39]), spec)
    assert msg.startswith("2 of 3 items have less history than the horizon of 40 quarters (as little as 34)")
    assert horizon_beyond_history(np.array([40, 60]), spec) == []
    (named,) = horizon_beyond_history(np.array([34, 60, 39]), spec, ["A", "B", "C"])
    assert named == msg + ": A, C"  # the items named, a few of them
    (many,) = horizon_beyond_history(np.arange(7), spec, list("ABCDEFG"))
    assert many.endswith(": A, B, C, D, E and 2 more")


def test_the_lstm_trains_before_the_oldest_window_an_item_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    """5 years of months: the windows start at 36 and 48 months (the seasonal models' rule), and
    the network's backtest training stopped before the unused window at 24 (half the data)."""
    from nova_ray.engine import LstmSpec
    from nova_ray.global_lstm import forecast_lstm
    from nova_ray.models import lstm

    seen: list[int] = []
    real = lstm.train

    def train(series, *args, **kwargs):
        seen.append(max((len(y) for y in series), default=0))
        return real(series, *args, **kwargs)

    monkeypatch.setattr(lstm, "train", train)
    rng = np.random.default_rng(1)
    t = np.arange(60)
    s = _series({f"M{i}": 200 + 80 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 10, 60) for i in range(3)},
                "M")
    spec = EngineSpec(12, "M", ("naive", "lstm"), backtest_windows=3,
                      lstm=LstmSpec(lookback=12, units=4, epochs=1, batch_size=32))
    list(forecast_lstm(s, [0, 1, 2], spec).backtests.to_batches())
    assert seen[0] == 36, seen  # the backtest network: the data before the first scored origin


@pytest.mark.parametrize("model", ["arima", "ets"])
def test_daily_model_follows_the_annual_cycle_it_has_no_season_for(model: str) -> None:
    """On daily data ARIMA's and ETS's season is the week: each fits the series less its annual
    cycle, which comes back on its forecasts and backtests. Three noisy years with a cycle that
    peaks in late May, forecast over the peak: with the cycle the forecast follows it (without,
    the model ran on along its local level or slope), and the backtest errors fall."""
    rng = np.random.default_rng(1)
    dates = pd.date_range("2021-05-01", periods=3 * 365, freq="D")
    h = 60
    days = pd.date_range(dates[0], periods=len(dates) + h, freq="D")
    truth = 50 + 30 * np.cos(2 * np.pi * (days.dayofyear.to_numpy() - 150) / 365.25)
    y = truth[: len(dates)] + rng.normal(0, 8, len(dates))
    s = _series({"SEASON": y}, start=str(dates[0].date()))
    err = {}
    for k in (2, 0):
        res = forecast_batch(s, [0], EngineSpec(horizon=h, models=(model,), backtest_windows=2,
                                                annual_harmonics=k))
        fc = pl.from_arrow(res.forecasts)["forecast"].to_numpy()
        bt = pl.from_arrow(res.backtests)
        bt_err = float((bt["forecast"] - bt["actual"]).abs().mean())
        err[k] = (float(np.mean(np.abs(fc - truth[len(dates) :]))), bt_err)
    assert err[2][0] < 0.3 * err[0][0], err  # against the noise-free cycle
    assert err[2][1] < 0.7 * err[0][1], err
