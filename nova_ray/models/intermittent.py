"""Intermittent-demand models in numpy: Croston with the SBA correction, and TSB.

Intervals come from simulated sample paths (demand occurs with the fitted probability, sizes are
drawn from the observed non-zero demands), never from a normal approximation that would go
negative near zero.
"""

from __future__ import annotations

import numpy as np

from .base import Forecast, ModelError, quantile_forecast

N_PATHS = 500
# 2: intervals from the smoothed size (the SBA factor shrank every size by 5%); croston 3: its rate
# takes in an open gap longer than every gap seen, and a series that starts on a demand starts its
# interval from the mean gap (its stored backtests, which weigh it, are made again)
VERSIONS = {"croston": "3", "tsb": "2"}


def _open_gap(y: np.ndarray) -> int:
    """The periods from the last demand to the next period when they outnumber every gap between
    demands seen, else 0 (y must hold a demand). While demand goes on the open gap seldom outlasts
    all of them; when it does, the item has slowed or stopped, and the current interval is at
    least this long. A single demand has no gap to compare with: its open gap always counts."""
    nz = np.flatnonzero(y > 0)
    gap = len(y) - int(nz[-1])  # the last period included: the earliest the next demand can be
    return gap if gap > (np.diff(nz).max() if len(nz) > 1 else 0) else 0


def _simulate(y: np.ndarray, size: float, prob: float, horizon: int, seed: int) -> np.ndarray:
    """Sample paths: Bernoulli(prob) occurrences times resampled sizes, scaled to the fitted size
    level `size`. Not to the rate: Croston's SBA factor (which corrects the rate's bias) shrank
    every size by 5%, and a part that is always used one at a time got a band of [0, 0.95]; the
    open-gap rule's lower probability inflated them (4x the largest demand seen)."""
    sizes = y[y > 0]
    rng = np.random.default_rng(seed)
    occur = rng.random((N_PATHS, horizon)) < prob
    draws = rng.choice(sizes, size=(N_PATHS, horizon))
    return occur * draws * (size / max(sizes.mean(), 1e-12))


def _croston(y: np.ndarray, alpha: float) -> tuple[float, float]:
    """Croston's smoothed demand size and interval between demands ((0, 0) without demand). The
    first interval is the periods up to the first demand (as statsforecast's), except in a series
    that starts on a demand (series_start="item"): what came before is unknown there, not 1, and
    alpha 0.1 wore that 1 off slowly (5 units every 120 days, 6 times: 2.3x the rate); such a
    series starts from the mean gap between demands (R tsintermittent's "mean" init)."""
    nz = np.flatnonzero(y > 0)
    if len(nz) == 0:
        return 0.0, 0.0
    sizes, gaps = y[nz], np.diff(nz).astype(float)
    z, p = sizes[0], (gaps.mean() if nz[0] == 0 and len(gaps) else float(nz[0] + 1))
    for s, q in zip(sizes[1:], gaps, strict=True):
        z += alpha * (s - z)
        p += alpha * (q - p)
    return float(z), float(p)


def croston_sba(y: np.ndarray, alpha: float = 0.1) -> tuple[float, float]:
    """Croston's rate with the Syntetos-Boylan correction; returns (rate per period, occurrence prob).
    An open gap longer than every gap seen (`_open_gap`) is the interval now: the smoothed interval
    ignored it, and a part used once two years ago kept a rate of 0.95 x its size a day, above its
    own band; the rate and the band's probability (1 / interval) now agree."""
    z, p = _croston(y, alpha)
    if p == 0:
        return 0.0, 0.0
    p = max(p, float(_open_gap(y)))
    return float((1 - alpha / 2) * z / p), float(min(1.0, 1.0 / p))


def tsb(y: np.ndarray, alpha: float = 0.1, beta: float = 0.1) -> tuple[float, float]:
    """Teunter-Syntetos-Babai: smoothed occurrence probability times smoothed size."""
    nz = y > 0
    if not nz.any():
        return 0.0, 0.0
    first = int(np.argmax(nz))
    p = float(nz[: first + 1].mean()) if first > 0 else 1.0
    z = float(y[first])
    for t in range(first + 1, len(y)):
        occurred = y[t] > 0
        p += beta * (float(occurred) - p)
        if occurred:
            z += alpha * (y[t] - z)
    return float(p * z), float(p)


def _forecast(rate: float, prob: float, size: float, y: np.ndarray, horizon: int, seed: int) -> Forecast:
    """A flat `rate` with intervals from simulated paths. When the periods since the last demand
    outnumber every gap between demands seen (`_open_gap`), demand occurs at most once per that
    open gap (Croston's interval takes it in already; TSB's probability may decay more slowly).
    Every step has the same distribution, so its quantiles are taken over all the paths' steps at
    once (per step, 500 draws made the bounds jump between steps)."""
    if rate <= 0:
        zero = np.zeros(horizon)
        return {"mean": zero, "lo-80": zero, "hi-80": zero, "lo-95": zero, "hi-95": zero}
    if gap := _open_gap(y):
        prob = min(prob, 1.0 / gap)
    paths = _simulate(y, size, prob, horizon, seed)
    pooled = quantile_forecast(paths.reshape(-1, 1), mean=np.array([rate]))
    return {k: np.full(horizon, float(v[0])) for k, v in pooled.items()}


def _check(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    if len(y) < 2:
        raise ModelError("series too short for an intermittent-demand model")
    return y


def croston_forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, seed: int = 0, **_: object
) -> Forecast:
    """Croston-SBA forecast (flat rate) with simulated intervals."""
    y = _check(y)
    params = params or {}
    rate, prob = croston_sba(y, **params)
    size, _ = _croston(y, params.get("alpha", 0.1))  # the bands' sizes: without the SBA factor
    return _forecast(rate, prob, size, y, horizon, seed)


def tsb_forecast(
    y: np.ndarray, horizon: int, season_length: int, params: dict | None = None, seed: int = 0, **_: object
) -> Forecast:
    """TSB forecast (flat rate) with simulated intervals."""
    y = _check(y)
    rate, prob = tsb(y, **(params or {}))
    return _forecast(rate, prob, rate / prob if prob > 0 else 0.0, y, horizon, seed)
