"""Where a series' backtest windows start: the origins (the same periods before the end for every
series), and the fewest observations a window trains on, seasonal or not."""

from __future__ import annotations


def min_train(season_length: int) -> int:
    """Fewest observations a backtest window trains on."""
    return max(2 * season_length, 8)


def window_backs(horizon: int, windows: int, step: int) -> list[int]:
    """How many periods before the end of the history each backtest window starts, newest first:
    the same for every series (they all end on one period)."""
    return [horizon + k * step for k in range(windows)]


def seasonal_train(season_length: int) -> int:
    """Fewest observations on which ETS and Theta fit a season (ARIMA: 3 seasons)."""
    return 2 * season_length + 2


def backtest_origins(n: int, horizon: int, windows: int, step: int, season_length: int) -> list[int]:
    """Window origins (index of the first forecast period), oldest first; each has `horizon` actuals.

    When the whole history is long enough for seasonal ETS and Theta, windows whose training set is
    not are left out (unless none is): they scored the non-seasonal forms, and the ensemble
    dropped the seasonal models the final fit publishes (5 years of monthly data, 3 windows of 12:
    the oldest trains on 24 months; ETS got weight 0 and the ensemble was 29% worse than ETS)."""
    backs = window_backs(horizon, windows, step)
    origins = sorted(o for o in (n - b for b in backs) if o >= min_train(season_length))
    need = seasonal_train(season_length)
    if season_length > 1 and n >= need:  # none seasonal: the mismatch cannot be helped, all kept
        return [o for o in origins if o >= need] or origins
    return origins
