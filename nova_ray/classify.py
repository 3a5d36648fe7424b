"""Demand-pattern classes by ADI and CV^2 (Syntetos-Boylan), and the models that suit each class."""

from __future__ import annotations

import numpy as np

ADI_CUT = 1.32
CV2_CUT = 0.49
CLASSES = ("smooth", "erratic", "intermittent", "lumpy", "zero")

# Default models per class for --models auto; the LSTM is global and joins for every class it suits.
CLASS_MODELS: dict[str, tuple[str, ...]] = {
    "smooth": ("naive", "arima", "ets", "theta", "prophet", "lstm"),
    "erratic": ("naive", "ets", "theta", "arima", "lstm"),
    "intermittent": ("naive", "croston", "tsb", "ets", "theta", "lstm"),
    "lumpy": ("naive", "croston", "tsb", "ets", "theta"),
    "zero": ("naive",),
}


def adi_cv2(y: np.ndarray) -> tuple[float, float]:
    """Average demand interval and squared coefficient of variation of non-zero demand sizes."""
    y = np.asarray(y, dtype=float)
    nz = y[y > 0]
    if len(nz) == 0:
        return float("inf"), float("nan")
    adi = len(y) / len(nz)
    cv2 = float(np.var(nz) / np.mean(nz) ** 2) if len(nz) > 1 else 0.0
    return float(adi), cv2


def classify(y: np.ndarray) -> str:
    """smooth, erratic, intermittent, lumpy, or zero (no demand at all)."""
    adi, cv2 = adi_cv2(y)
    if not np.isfinite(adi):
        return "zero"
    if adi < ADI_CUT:
        return "smooth" if cv2 < CV2_CUT else "erratic"
    return "intermittent" if cv2 < CV2_CUT else "lumpy"
