"""Forecast variances of ETS models with multiplicative error and season (MNM, MAM, MAdM).

statsforecast 2.1's `ets._class3models` advances the expected state matrix once, after its loop
over the horizon instead of at each step, so every step's variance is that of the first period's
expected value: the intervals keep one width whatever the season's level (weekly MAM items' 95%
bands covered ~80% of new values). `patch()` puts the same recursion, with the state advanced at
each step (Hyndman et al. 2008, ch. 6, class 3), in its place when the installed statsforecast
has the misplaced update; a version that has fixed it is left alone.
"""

from __future__ import annotations

import inspect

import numpy as np

# the library's misplaced update: at the function's own indentation, after the loop
_BUG = '\n    if trend == "N":\n        Mh = ('


def class3_variance(
    h: int,
    sigma: float,
    last_state: np.ndarray,
    season_length: int,
    error: str,
    trend: str,
    seasonality: str,
    damped: object,
    alpha: float,
    beta: float,
    gamma: float,
    phi: float,
) -> np.ndarray:
    """Variance of each of the `h` forecast steps (the library's signature and result)."""
    damped_val = damped != "N"
    p = len(last_state)
    if trend != "N":
        H1 = np.array([[1.0, 1.0]])
        F1 = np.array([[1.0, 1.0], [0.0, phi if damped_val else 1.0]])
        G1 = np.array([[alpha, alpha], [beta, beta]])
    else:
        H1 = np.array([[1.0]])
        F1 = np.array([[1.0]])
        G1 = np.array([[alpha]])
    m = season_length
    H2 = np.concatenate((np.zeros(m - 1), [1.0])).reshape(1, m)
    F2 = np.r_[H2, np.c_[np.identity(m - 1), np.zeros((m - 1, 1))]]
    G2 = np.zeros((m, m))
    G2[0, m - 1] = gamma
    level_trend = last_state[: p - m].reshape(-1, 1)
    Mh = level_trend @ last_state[p - m : p].reshape(1, m)
    Vh = np.zeros((Mh.size, Mh.size))
    H21, F21, G21 = np.kron(H2, H1), np.kron(F2, F1), np.kron(G2, G1)
    K = np.kron(G2, F1) + np.kron(F2, G1)
    var = np.zeros(h)
    for i in range(h):
        mu = (H1 @ (Mh @ H2.T)).item()
        var[i] = (1 + sigma) * (H21 @ (Vh @ H21.T)).item() + sigma * mu**2
        vec = Mh.reshape(-1)  # row-major, as the library's flatten()
        outer = np.outer(vec, vec)
        Vh = F21 @ Vh @ F21.T + sigma * (
            F21 @ Vh @ G21.T
            + G21 @ Vh @ F21.T
            + K @ (Vh + outer) @ K.T
            + sigma * G21 @ (3 * Vh + 2 * outer) @ G21.T
        )
        Mh = F1 @ Mh @ F2.T + (G1 @ Mh @ G2.T) * sigma  # the expected state of the next step
    return var


def patch() -> bool:
    """Use `class3_variance` in statsforecast when its own has the misplaced update; True if so."""
    from statsforecast import ets

    fn = getattr(ets, "_class3models", None)
    if fn is None or fn is class3_variance:
        return fn is class3_variance
    try:
        buggy = _BUG in inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    if buggy:
        ets._class3models = class3_variance
    return buggy
