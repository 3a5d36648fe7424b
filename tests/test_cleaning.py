"""Outlier capping before fitting: the fence, which items it touches, and that actuals stay raw."""

import numpy as np
import pandas as pd
import polars as pl

from nova_ray.cleaning import cap, fence
from nova_ray.engine import EngineSpec, forecast_batch
from nova_ray.series import build_series


def _series(y: np.ndarray):
    dates = pd.date_range("2024-01-01", periods=len(y))
    return build_series(pd.DataFrame({"item_id": "E", "date": dates, "quantity": y}), "D")


def test_fence_is_the_far_out_tukey_fence_of_the_nonzero_values() -> None:
    y = np.r_[np.zeros(50), np.arange(1.0, 101.0)]  # non-zero values 1..100: Q1 25.75, Q3 75.25
    assert fence(y) == 75.25 + 3 * (75.25 - 25.75)
    assert fence(np.r_[np.zeros(100), np.ones(19)]) == float("inf")  # too few non-zero values
    assert cap(np.array([1.0, 500.0, 3.0]), 10.0).tolist() == [1.0, 10.0, 3.0]
    kept = np.array([1.0, 2.0])
    assert cap(kept, 10.0) is kept and cap(kept, float("inf")) is kept


def test_a_final_spike_no_longer_drags_the_erratic_forecasts_up() -> None:
    rng = np.random.default_rng(5)
    y = rng.negative_binomial(1, 1 / 13, 400).astype(float)
    y[-1] = 201.0
    means = {}
    for capped in (False, True):
        spec = EngineSpec(horizon=30, models=("naive", "ets", "theta"), cap_outliers=capped)
        res = forecast_batch(_series(y), [0], spec)
        items = pl.from_arrow(res.items)
        assert items["demand_class"][0] == "erratic"
        fc = pl.from_arrow(res.forecasts)
        means[capped] = dict(fc.group_by("model").agg(pl.col("forecast").mean()).rows())
    assert "capped before fitting" in items["notes"][0]
    assert means[True]["naive"] < 0.5 * means[False]["naive"]  # the spike is not repeated weekly
    assert means[True]["theta"] < means[False]["theta"]
    assert abs(means[True]["ets"] - y[:-1].mean()) < abs(means[False]["ets"] - y[:-1].mean())


def test_backtest_actuals_stay_raw_and_intermittent_items_are_untouched() -> None:
    rng = np.random.default_rng(6)
    y = rng.negative_binomial(1, 1 / 13, 400).astype(float)
    y[380] = 500.0  # inside the last backtest window
    spec = EngineSpec(horizon=30, models=("naive", "ets"), backtest_windows=2)
    bt = pl.from_arrow(forecast_batch(_series(y), [0], spec).backtests)
    assert bt["actual"].max() == 500.0
    sparse = np.zeros(400)
    sparse[::9] = rng.integers(1, 5, len(sparse[::9]))
    sparse[-1] = 300.0  # lumpy/intermittent: the spike is demand, not an outlier
    res = forecast_batch(_series(sparse), [0], EngineSpec(horizon=30, models=("naive",)))
    items = pl.from_arrow(res.items)
    assert items["demand_class"][0] in {"intermittent", "lumpy"}
    assert "capped" not in items["notes"][0]


def test_a_lasting_step_up_is_the_new_level_not_outliers() -> None:
    """10 a day, then 40 a day for the last 120 days: every value of the new level was capped at
    the old level's fence (25) and naive, ETS and Theta forecast 25. The recent periods' own fence
    keeps them; a spike on top of the new level is still capped."""
    rng = np.random.default_rng(3)
    y = np.r_[rng.normal(10, 1.5, 400), rng.normal(40, 3, 120)].clip(0).round()
    assert fence(y) > 40 + 3 * 3
    spec = EngineSpec(horizon=30, models=("naive", "ets", "theta"))
    res = forecast_batch(_series(y), [0], spec)
    fc = pl.from_arrow(res.forecasts)
    means = dict(fc.group_by("model").agg(pl.col("forecast").mean()).rows())
    assert all(35 < v < 45 for v in means.values()), means
    assert "capped" not in pl.from_arrow(res.items)["notes"][0]
    spiked = y.copy()
    spiked[-1] = 400.0
    items = pl.from_arrow(forecast_batch(_series(spiked), [0], spec).items)
    assert "1 value(s) above" in items["notes"][0]


def test_a_monthly_level_shift_is_kept_and_the_recent_window_is_in_time() -> None:
    """The recent fence covers 8 weeks' worth of periods, at least 6: 56 periods were the whole of
    a monthly history, so the last three months at a new level (1200 after ~450) were capped at
    447.5 and every model forecast it. At monthly periods the last 6 months' fence keeps them; a
    one-off spike is still capped."""
    from nova_ray.cleaning import recent_periods

    assert [recent_periods(f) for f in "DWMQY"] == [56, 8, 6, 6, 6]
    rng = np.random.default_rng(5)
    y = np.r_[rng.normal(450, 40, 54), [1222.0, 1177.0, 1153.0]].round()
    months = pd.date_range("2021-01-01", periods=len(y), freq="MS")
    series = build_series(pd.DataFrame({"item_id": "S", "date": months, "quantity": y}), "M")
    spec = EngineSpec(horizon=3, freq="M", models=("naive", "ets"), backtest_windows=1)
    res = forecast_batch(series, [0], spec)
    ets = pl.from_arrow(res.forecasts).filter(pl.col("model") == "ets")["forecast"]
    assert ets.min() > 700.0 and "capped" not in pl.from_arrow(res.items)["notes"][0], ets  # capped: 447.5
    spiked = np.r_[rng.normal(450, 40, 56).round(), [5000.0]]
    spike = build_series(pd.DataFrame({"item_id": "S", "date": months, "quantity": spiked}), "M")
    assert "1 value(s) above" in pl.from_arrow(forecast_batch(spike, [0], spec).items)["notes"][0]
