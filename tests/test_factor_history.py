"""The external factors that stored fits saw (`nova_ray.factor_history`): a fit whose regressors'
settled history moved is fitted cold, one whose history only grew, or whose recent days were
revised (late data), stays warm; today's regressors are put on the store's scale."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nova_ray.factor_history import (
    COLD_FACTORS_UNKNOWN,
    FactorRecord,
    check,
    merged,
    moved,
    on_scale,
    own_scale,
    settling_periods,
    today_of,
)
from nova_ray.io.model_store import read_factors, write_factors
from nova_ray.series import SeriesSet

NAMES = ("rain_log", "usd_brl")
START = np.datetime64("2024-01-01")


def _series(exog: np.ndarray, n_hist: int = 60) -> SeriesSet:
    end = START + n_hist - 1
    values = np.arange(n_hist, dtype=float)
    return SeriesSet(np.array(["A"], dtype=object), np.array([START]), np.array([0, n_hist]), values, "D",
                     end, exog, NAMES, START, {7: exog[n_hist - 7 : n_hist].copy()})


def _raw(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.gamma(1.0, 2.0, n), 5 + rng.normal(0, 0.3, n)])


def test_a_grown_or_late_revised_history_holds_and_a_moved_one_does_not() -> None:
    raw = _raw(400)
    std = raw[:365].std(axis=0)
    then = (START, raw[:365])
    # one more day, and the grid's first 30 days gone (a rolling window): the same history
    assert moved(then, (START + 30, raw[30:366]), std, NAMES, "D") is None
    # late data: a station two weeks behind catching up, its days a spread apart, and a late
    # exchange rate: the fit's last 31 days are not compared
    late = raw[:366].copy()
    late[-15:-1, 0] += 2 * std[0]
    late[-3:-1, 1] += std[1]
    assert moved(then, (START, late), std, NAMES, "D") is None
    # a table built otherwise: 3 months of rain halved; the reason shows 4 digits (0.1 could not
    # tell a value just over the limit from the limit)
    other = raw[:366].copy()
    other[:90, 0] *= 0.5
    why = moved(then, (START, other), std, NAMES, "D")
    assert why is not None and why.startswith("rain_log moved 0.") and why.endswith(" of its spread")
    assert len(why.split()[2]) >= 5
    # no settled period in common: nothing to compare
    assert moved(then, (np.datetime64("2026-01-01"), raw[:10]), std, NAMES, "D") is None
    # weekly grids count periods, not days, and leave out 5 recent weeks
    assert settling_periods("W") == 5 and settling_periods("D") == 31 and settling_periods("M") == 2
    assert settling_periods("Q") == settling_periods("Y") == 1
    weekly = raw[:50].copy()
    assert moved((START, weekly), (START + 14, raw[2:51]), std, NAMES, "W") is None
    weekly[:10, 1] += 3 * std[1]
    assert moved((START, weekly), (START + 14, raw[2:51]), std, NAMES, "W") is not None


def test_each_stored_history_is_checked_by_its_key() -> None:
    raw = np.column_stack([np.linspace(0, 3, 100), np.linspace(4, 6, 100) ** 2])
    std = raw.std(axis=0)
    shifted = raw.copy()
    shifted[:, 1] += 2 * std[1]
    fits = {"k1": (START, raw[:98]), "k2": (START, shifted[:99])}
    stored = FactorRecord(NAMES, "D", raw.mean(0), std, fits, lstm="k2")
    series = _series((raw - raw.mean(0)) / std, n_hist=100)
    today = today_of(series, raw.mean(0), std)
    found = check(stored, today)
    assert list(found.stale) == ["k2"] and "usd_brl moved 2 of its spread" in found.stale["k2"]
    assert found.why_cold("k1") is None and found.why_cold("k2") == found.stale["k2"]
    assert found.lstm() == found.stale["k2"]
    assert found.why_cold("k9") == found.why_cold(None) == COLD_FACTORS_UNKNOWN  # a fit without a record
    assert check(None, today).why_cold("k1") == COLD_FACTORS_UNKNOWN  # a store from before the records
    other = replace(today, names=("rain_log", "selic"))  # another feature set: nothing comparable
    assert check(stored, other).why_cold("k1") == COLD_FACTORS_UNKNOWN
    # the store's scale stays unless there is none, every history moved, or a run refits it all
    assert not own_scale(stored, today, found.stale, whole=True, full_refit=False)
    assert own_scale(stored, today, found.stale, whole=True, full_refit=True)
    assert own_scale(stored, today, {"k1": "x", "k2": "y"}, whole=True, full_refit=False)
    # a run over some items keeps it: the other items' fits are on it
    assert not own_scale(stored, today, {"k1": "x", "k2": "y"}, whole=False, full_refit=True)
    assert own_scale(None, today, {}, whole=False, full_refit=False)
    assert own_scale(stored, other, {}, whole=False, full_refit=False)
    # what is stored next, on the stored scale: the histories still recorded, today's
    on_stored = replace(today, mean=stored.mean, std=stored.std)
    kept = merged(stored, on_stored, {"k1", on_stored.key}, "k2")
    assert set(kept.fits) == {"k1", "k2", on_stored.key} and kept.lstm == "k2" and kept.mean is stored.mean
    assert set(merged(stored, on_stored, {"k1"}, None).fits) == {"k1"}  # no fit of today's stored
    # on a scale of its own: only today's history; the other fits (and the LSTM) become unknown
    own = replace(today, mean=stored.mean + 1.0)
    fresh = merged(stored, own, {"k1", own.key}, "k2")
    assert set(fresh.fits) == {own.key} and fresh.lstm is None and np.array_equal(fresh.mean, own.mean)
    assert own.key != on_stored.key  # the same rows on another scale: another key


def test_regressors_on_the_store_scale_and_the_record_on_disk(tmp_path: Path) -> None:
    raw = _raw(74, seed=2)
    mean, std = raw[:60].mean(0), raw[:60].std(0)
    series = _series((raw - mean) / std)
    today = today_of(series, mean, std)
    assert today.rows[0] == START and np.allclose(today.rows[1], raw[:60])  # the history, unscaled
    to_mean, to_std = mean + [0.5, -1.0], std * [2.0, 0.5]
    moved_series = on_scale(series, mean, std, to_mean, to_std)
    assert moved_series.exog is not None
    assert np.allclose(moved_series.exog, (raw - to_mean) / to_std)
    assert np.allclose(moved_series.exog_backtest[7], (raw[53:60] - to_mean) / to_std)
    assert np.allclose(series.exog, (raw - mean) / std)  # the series given is left as it was

    path = tmp_path / "factors.npz"
    write_factors(path, merged(None, today, {today.key}, today.key))
    back = read_factors(path)
    assert back.names == NAMES and back.freq == "D" and np.allclose(back.mean, mean)
    assert back.lstm == today.key
    ((key, (start, rows)),) = back.fits.items()
    assert key == today.key and start == START and np.array_equal(rows, today.rows[1])
    write_factors(path, merged(None, today, set(), None))
    assert read_factors(path).fits == {} and read_factors(path).lstm is None
    none = np.array([], "M8[D]")
    np.savez(path, names=np.array(NAMES), freq=np.array("D"), mean=mean[:1], std=std, keys=np.array([], str),
             starts=none, lstm=np.array(""))
    with pytest.raises(ValueError, match="shapes"):
        read_factors(path)
