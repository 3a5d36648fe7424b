"""The external factors that stored model fits saw: one scale for a model store, each fit day's
raw regressor history, whether today's history still matches it, and today's regressors put on
the store's scale.

A stored ARIMA re-filters the new data with its stored coefficients, and a stored LSTM forecasts
as it is: both hold only while their regressors mean what they meant at the fit. So a store keeps
one standardisation (the mean and spread of its first cold fit's history, which later runs reuse:
an affine scale changes no refit, only the numbers) and, per day that its entries were fitted,
the unscaled regressor rows of that day's history. An entry is fitted cold again when today's
rows of the same periods moved by more than `MOVED` of a factor's spread (root mean square): a
feature table built otherwise, a source replaced; a few revised days (a late exchange rate, an
imputed station day now observed) keep it warm.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np

from .series import SeriesSet, period_index

MOVED = 0.1  # root mean square change, in spreads of the factor, that makes a stored fit stale
COLD_FACTORS = "external factors' history changed since the fit ({detail})"
COLD_FACTORS_UNKNOWN = "no record of the external factors the stored fit saw"


@dataclass
class FactorRecord:
    """A store's regressor scale (`mean`, `std` of each of `names`) and, per fit day, the start of
    the regressor grid and its unscaled history rows (periods x factors)."""

    names: tuple[str, ...]
    freq: str
    mean: np.ndarray
    std: np.ndarray
    days: dict[date, tuple[np.datetime64, np.ndarray]] = field(default_factory=dict)


def history_rows(series: SeriesSet, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The unscaled regressor rows of the series' history (from `exog_start` to `end`)."""
    assert series.exog is not None and series.exog_start is not None
    n = int(period_index(series.exog_start, series.end, series.freq)) + 1
    return series.exog[:n] * std + mean


def today_record(series: SeriesSet, mean: np.ndarray, std: np.ndarray, today: date) -> FactorRecord:
    """The record of this run's regressors (standardised with `mean`, `std`) as fitted `today`."""
    assert series.exog_start is not None
    rows = history_rows(series, mean, std)
    return FactorRecord(series.exog_names, series.freq, np.asarray(mean, float), np.asarray(std, float),
                        {today: (np.datetime64(series.exog_start, "D"), rows)})


def moved(then: tuple[np.datetime64, np.ndarray], now: tuple[np.datetime64, np.ndarray], std: np.ndarray,
          names: tuple[str, ...], freq: str) -> str | None:
    """What moved from `then` to `now` (each a grid start and unscaled rows), over the periods both
    hold: the factor whose root mean square change is largest, when it passes `MOVED` of its
    spread `std` ("rain_log moved 0.31 of its spread"); None when none does."""
    shift = int(period_index(then[0], now[0], freq))  # `now`'s row 0 is `then`'s row `shift`
    a, b = then[1], now[1]
    lo, hi = max(0, shift), min(len(a), len(b) + shift)
    if hi <= lo:
        return None  # no period in common: nothing to compare (the age limit refits it)
    diff = a[lo:hi] - b[lo - shift : hi - shift]
    rms = np.sqrt(np.mean(diff**2, axis=0)) / np.where(std > 0, std, 1.0)
    j = int(np.argmax(rms))
    return f"{names[j]} moved {rms[j]:.2g} of its spread" if rms[j] > MOVED else None


def stale_days(stored: FactorRecord | None, today: FactorRecord) -> dict[date, str]:
    """For each fit day of `stored`, why its fits are stale today (only the stale days); with no
    stored record (or another feature set) every day is, which `why_cold` reports as unknown."""
    if stored is None or stored.names != today.names or stored.freq != today.freq:
        return {}
    (now,) = today.days.values()
    out = {}
    for day, then in stored.days.items():
        if (detail := moved(then, now, stored.std, stored.names, stored.freq)) is not None:
            out[day] = COLD_FACTORS.format(detail=detail)
    return out


def why_cold(stored: FactorRecord | None, stale: dict[date, str], fitted_on: date) -> str | None:
    """Why an entry fitted on `fitted_on` must be fitted cold for its factors (None: it holds)."""
    if stored is None or fitted_on not in stored.days:
        return COLD_FACTORS_UNKNOWN
    return stale.get(fitted_on)


def usable_scale(stored: FactorRecord | None, today: FactorRecord) -> bool:
    """Whether today's regressors can be put on the stored scale (the same features)."""
    return stored is not None and stored.names == today.names and stored.freq == today.freq


def on_scale(series: SeriesSet, mean: np.ndarray, std: np.ndarray, to_mean: np.ndarray,
             to_std: np.ndarray) -> SeriesSet:
    """The series with its regressors (standardised with `mean`, `std`) standardised with `to_mean`,
    `to_std` instead, their backtest rows too."""
    assert series.exog is not None

    def remap(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x * std + mean - to_mean) / to_std)

    backtest = {b: remap(r) for b, r in series.exog_backtest.items()}
    return replace(series, exog=remap(series.exog), exog_backtest=backtest)


def merged(stored: FactorRecord | None, today: FactorRecord, keep: set[date]) -> FactorRecord:
    """The record to store after a run whose cold fits were made today: the stored scale when it
    was used (else today's), today's rows under today's date, and the other days of `keep` (those
    that stored entries or the stored LSTM were fitted on)."""
    if not usable_scale(stored, today):
        return replace(today, days={d: r for d, r in today.days.items() if d in keep})
    assert stored is not None
    days = {d: r for d, r in stored.days.items() if d in keep} | {
        d: r for d, r in today.days.items() if d in keep}
    return replace(stored, days=days)
