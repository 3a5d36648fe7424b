"""The external factors that stored fits saw (`nova_ray.factor_history`): a fit whose regressors'
history moved is fitted cold, one that only grew (or had a day revised) stays warm, and today's
regressors are put on the store's scale."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest

from nova_ray.factor_history import (
    COLD_FACTORS_UNKNOWN,
    FactorRecord,
    merged,
    moved,
    on_scale,
    stale_days,
    today_record,
    why_cold,
)
from nova_ray.io.model_store import read_factors, write_factors
from nova_ray.series import SeriesSet

NAMES = ("rain_log", "usd_brl")


def _series(exog: np.ndarray, start: str = "2024-01-01", n_hist: int = 60) -> SeriesSet:
    s = np.datetime64(start, "D")
    end = s + n_hist - 1
    values = np.arange(n_hist, dtype=float)
    return SeriesSet(np.array(["A"], dtype=object), np.array([s]), np.array([0, n_hist]), values, "D", end,
                     exog, NAMES, s, {7: exog[n_hist - 7 : n_hist].copy()})


def test_a_grown_or_revised_history_holds_and_a_moved_one_does_not() -> None:
    rng = np.random.default_rng(1)
    raw = np.column_stack([rng.gamma(1.0, 2.0, 400), 5 + rng.normal(0, 0.3, 400)])
    std = raw[:365].std(axis=0)
    then = (np.datetime64("2024-01-01"), raw[:365])
    # one more day, and the grid's first 30 days gone (a rolling window): the same history
    assert moved(then, (np.datetime64("2024-01-31"), raw[30:366]), std, NAMES, "D") is None
    # a late exchange rate: 5 days revised by half a spread each, 0.06 RMS over 365 days, under MOVED
    revised = raw[:366].copy()
    revised[-6:-1, 1] += 0.5 * std[1]
    assert moved(then, (np.datetime64("2024-01-01"), revised), std, NAMES, "D") is None
    # a table built otherwise: 3 months of rain halved
    other = raw[:366].copy()
    other[:90, 0] *= 0.5
    why = moved(then, (np.datetime64("2024-01-01"), other), std, NAMES, "D")
    assert why is not None and why.startswith("rain_log moved 0.") and why.endswith("of its spread")
    # no period in common: nothing to compare
    assert moved(then, (np.datetime64("2026-01-01"), raw[:10]), std, NAMES, "D") is None
    # weekly grids count periods, not days
    assert moved((np.datetime64("2024-01-01"), raw[:50]), (np.datetime64("2024-01-15"), raw[2:51]), std,
                 NAMES, "W") is None


def test_each_fit_day_is_checked_and_an_unknown_one_is_cold() -> None:
    raw = np.column_stack([np.linspace(0, 3, 100), np.linspace(4, 6, 100) ** 2])
    std = raw.std(axis=0)
    d1, d2, d3 = date(2024, 3, 1), date(2024, 3, 2), date(2024, 3, 3)
    start = np.datetime64("2024-01-01")
    shifted = raw.copy()
    shifted[:, 1] += 2 * std[1]
    stored = FactorRecord(NAMES, "D", raw.mean(0), std, {d1: (start, raw[:98]), d2: (start, shifted[:99])})
    today = FactorRecord(NAMES, "D", raw.mean(0), std, {d3: (start, raw)})
    stale = stale_days(stored, today)
    assert list(stale) == [d2] and "usd_brl moved 2 of its spread" in stale[d2]
    assert why_cold(stored, stale, d1) is None
    assert why_cold(stored, stale, d2) == stale[d2]
    assert why_cold(stored, stale, date(2024, 2, 1)) == COLD_FACTORS_UNKNOWN  # a day without a record
    assert why_cold(None, {}, d1) == COLD_FACTORS_UNKNOWN  # a store from before the records
    # another feature set: nothing comparable, every day unknown
    other = FactorRecord(("rain_log",), "D", raw.mean(0)[:1], std[:1], {d3: (start, raw[:, :1])})
    assert stale_days(stored, other) == {} and why_cold(None, {}, d1) == COLD_FACTORS_UNKNOWN
    # what is stored next: the stored scale, the days still used, today's rows under today
    kept = merged(stored, today, {d1, d3})
    assert set(kept.days) == {d1, d3} and kept.mean is stored.mean and kept.days[d3][1] is raw
    assert merged(None, today, {d3}).days.keys() == {d3}


def test_regressors_on_the_store_scale_and_the_record_on_disk(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    raw = np.column_stack([rng.gamma(1.0, 2.0, 74), 5 + rng.normal(0, 0.3, 74)])
    mean, std = raw[:60].mean(0), raw[:60].std(0)
    series = _series((raw - mean) / std)
    record = today_record(series, mean, std, date(2024, 3, 1))
    (start, rows), = record.days.values()
    assert start == np.datetime64("2024-01-01") and np.allclose(rows, raw[:60])  # the history, unscaled
    to_mean, to_std = mean + [0.5, -1.0], std * [2.0, 0.5]
    moved_series = on_scale(series, mean, std, to_mean, to_std)
    assert moved_series.exog is not None
    assert np.allclose(moved_series.exog, (raw - to_mean) / to_std)
    assert np.allclose(moved_series.exog_backtest[7], (raw[53:60] - to_mean) / to_std)
    assert np.allclose(series.exog, (raw - mean) / std)  # the series given is left as it was

    path = tmp_path / "factors.npz"
    write_factors(path, merged(None, record, {date(2024, 3, 1)}))
    back = read_factors(path)
    assert back.names == NAMES and back.freq == "D" and np.allclose(back.mean, mean)
    (start2, rows2), = back.days.values()
    assert start2 == start and np.array_equal(rows2, rows) and list(back.days) == [date(2024, 3, 1)]
    none = np.array([], "M8[D]")
    np.savez(path, names=np.array(NAMES), freq=np.array("D"), mean=mean[:1], std=std, days=none, starts=none)
    with pytest.raises(ValueError, match="shapes"):
        read_factors(path)
