"""The external factors that stored model fits saw: one scale for a model store, the unscaled
regressor history each fit saw, whether today's history still matches it, and today's regressors
put on the store's scale.

A stored ARIMA re-filters the new data with its stored coefficients, and a stored LSTM forecasts
as it is: both hold only while their regressors mean what they meant at the fit. So a store keeps
one standardisation (the mean and spread of the history that set it: later runs reuse it, since
an affine scale changes a refit only numerically) and the unscaled regressor rows of each
history its fits saw, under a key (a hash of the scale and the rows) that each entry, and the
stored LSTM, records. A stored fit is fitted cold again when today's rows of the same periods,
leaving out the last `RECENT_DAYS` of the fit's history, moved by more than `MOVED` of a factor's
spread (root mean square): a feature table built otherwise, a source replaced. Late data (an
INMET station catching up, a late exchange rate) revise the recent days, which are not compared.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

import numpy as np

from .frequency import get_frequency
from .series import SeriesSet, period_index

MOVED = 0.1  # root mean square change, in spreads of the factor, that makes a stored fit stale
RECENT_DAYS = 31  # the last days of a fit's history left out of the comparison (late data revise them)
COLD_FACTORS = "external factors' history changed since the fit ({detail})"
COLD_FACTORS_UNKNOWN = "no record of the external factors the stored fit saw"
NO_REGRESSORS = "-"  # the key an entry records when its models took no regressors: nothing to go stale

Rows = tuple[np.datetime64, np.ndarray]  # the grid's first period, unscaled history rows (periods x k)


@dataclass
class FactorRecord:
    """A store's regressor scale (`mean`, `std` of each of `names`), the histories its fits saw by
    key (`history_key`), and the key of the stored LSTM's."""

    names: tuple[str, ...]
    freq: str
    mean: np.ndarray
    std: np.ndarray
    fits: dict[str, Rows] = field(default_factory=dict)
    lstm: str | None = None


def history_key(mean: np.ndarray, std: np.ndarray, rows: Rows) -> str:
    """The key of a regressor history on a scale: two fits share it only if both match."""
    h = hashlib.sha256(np.ascontiguousarray(mean, np.float64).tobytes())
    h.update(np.ascontiguousarray(std, np.float64).tobytes())
    h.update(str(np.datetime64(rows[0], "D")).encode())
    h.update(np.ascontiguousarray(rows[1], np.float64).tobytes())
    return h.hexdigest()[:16]


@dataclass
class Today:
    """This run's regressors: their names, frequency, the scale the models see and the unscaled
    history rows, with the key that the fits of this run record."""

    names: tuple[str, ...]
    freq: str
    mean: np.ndarray
    std: np.ndarray
    rows: Rows

    @property
    def key(self) -> str:
        return history_key(self.mean, self.std, self.rows)


def today_of(series: SeriesSet, mean: np.ndarray, std: np.ndarray) -> Today:
    """The run's regressors (standardised with `mean`, `std`), as the store would record them."""
    assert series.exog is not None and series.exog_start is not None
    n = int(period_index(series.exog_start, series.end, series.freq)) + 1
    rows = series.exog[:n] * std + mean
    return Today(series.exog_names, series.freq, np.asarray(mean, float), np.asarray(std, float),
                 (np.datetime64(series.exog_start, "D"), rows))


def settling_periods(freq: str) -> int:
    """The periods of a fit's history that late data may still revise (`RECENT_DAYS`, at least one)."""
    return math.ceil(RECENT_DAYS * get_frequency(freq).periods_per_year / 365.25)


def moved(then: Rows, now: Rows, std: np.ndarray, names: tuple[str, ...], freq: str) -> str | None:
    """What moved from `then` to `now` over the periods both hold, less `then`'s recent ones: the
    factor whose root mean square change is largest, when it passes `MOVED` of its spread `std`
    ("rain_log moved 0.3102 of its spread"); None when none does."""
    shift = int(period_index(then[0], now[0], freq))  # `now`'s row 0 is `then`'s row `shift`
    a, b = then[1], now[1]
    lo, hi = max(0, shift), min(len(a) - settling_periods(freq), len(b) + shift)
    if hi <= lo:
        return None  # no settled period in common: nothing to compare (the age limit refits it)
    diff = a[lo:hi] - b[lo - shift : hi - shift]
    rms = np.sqrt(np.mean(diff**2, axis=0)) / np.where(std > 0, std, 1.0)
    j = int(np.argmax(rms))
    return f"{names[j]} moved {rms[j]:.4g} of its spread" if rms[j] > MOVED else None


def comparable(stored: FactorRecord | None, today: Today) -> bool:
    """Whether today's regressors can be compared with the stored ones and put on their scale."""
    return stored is not None and stored.names == today.names and stored.freq == today.freq


@dataclass
class FactorCheck:
    """Why a stored fit is cold for its external factors: by the key it recorded."""

    stored: FactorRecord | None
    stale: dict[str, str]  # key -> reason, of the stored histories that moved

    def why_cold(self, key: str | None) -> str | None:
        """The reason a fit that recorded `key` is fitted cold (None: its factors hold; a fit whose
        models took no regressors, `NO_REGRESSORS`, has none to hold)."""
        if key == NO_REGRESSORS:
            return None
        if self.stored is None or not key or key not in self.stored.fits:
            return COLD_FACTORS_UNKNOWN
        return self.stale.get(key)

    def lstm(self) -> str | None:
        """The reason the stored LSTM is trained cold (None: its factors hold)."""
        return self.why_cold(self.stored.lstm if self.stored else None)


def check(stored: FactorRecord | None, today: Today) -> FactorCheck:
    """Compare each stored history with today's; with nothing comparable every fit is unknown."""
    if not comparable(stored, today):
        return FactorCheck(None, {})
    assert stored is not None
    stale = {}
    for key, then in stored.fits.items():
        if (detail := moved(then, today.rows, stored.std, stored.names, stored.freq)) is not None:
            stale[key] = COLD_FACTORS.format(detail=detail)
    return FactorCheck(stored, stale)


def own_scale(stored: FactorRecord | None, today: Today, stale: dict[str, str], whole: bool,
              full_refit: bool) -> bool:
    """Whether the run standardises with its own scale (and the store takes it): there is no
    comparable record, or a run over every item (`whole`) refits them all: `--full-refit` (its
    numbers then do not depend on the store's) or every stored history moved (a unit changed: the
    old scale would put the regressors far from 0). A run over some items keeps the store's: the
    others' fits are on it."""
    if not comparable(stored, today):
        return True
    assert stored is not None
    return whole and (full_refit or (bool(stored.fits) and set(stale) >= set(stored.fits)))


def on_scale(series: SeriesSet, mean: np.ndarray, std: np.ndarray, to_mean: np.ndarray,
             to_std: np.ndarray) -> SeriesSet:
    """The series with its regressors (standardised with `mean`, `std`) standardised with `to_mean`,
    `to_std` instead, their backtest rows too."""
    assert series.exog is not None

    def remap(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((x * std + mean - to_mean) / to_std)

    backtest = {b: remap(r) for b, r in series.exog_backtest.items()}
    return replace(series, exog=remap(series.exog), exog_backtest=backtest)


def merged(stored: FactorRecord | None, today: Today, keys: set[str], lstm: str | None) -> FactorRecord:
    """The record to store after a run on `today`'s scale: the histories of `keys` (those that the
    store's entries record; today's among them when the run stored fits) and the LSTM's key. On
    another scale than the stored one, only today's history is kept (the store's other fits
    were on the old scale: their keys are unknown from now on)."""
    fits = {today.key: today.rows} if today.key in keys or today.key == lstm else {}
    if comparable(stored, today) and stored is not None and np.array_equal(stored.mean, today.mean) \
            and np.array_equal(stored.std, today.std):
        fits = {k: r for k, r in stored.fits.items() if k in keys or k == lstm} | fits
    return FactorRecord(today.names, today.freq, today.mean, today.std, fits, lstm if lstm in fits else None)
