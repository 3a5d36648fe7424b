"""Output table schemas (versioned). Partition columns (run_date, model) live in the folder names."""

from __future__ import annotations

import pyarrow as pa

from .models import LEVELS

SCHEMA_VERSION = "1"

_bounds = [(f"{s}_{lv}", pa.float64()) for lv in LEVELS for s in ("lo", "hi")]

FORECASTS = pa.schema([("item_id", pa.string()), ("date", pa.date32()), ("forecast", pa.float64()), *_bounds])

METRICS = pa.schema(
    [
        ("item_id", pa.string()),
        ("model", pa.string()),
        ("window", pa.int32()),
        ("mae", pa.float64()),
        ("rmse", pa.float64()),
        ("smape", pa.float64()),
        ("mape", pa.float64()),
        ("mase", pa.float64()),
        ("bias", pa.float64()),
        ("wape", pa.float64()),
        ("coverage_80", pa.float64()),
        ("coverage_95", pa.float64()),
        ("n", pa.int32()),
    ]
)

ENSEMBLE_WEIGHTS = pa.schema(
    [
        ("item_id", pa.string()),
        ("model", pa.string()),
        ("weight", pa.float64()),
        ("backtest_mae", pa.float64()),
        ("windows", pa.int32()),
    ]
)

ITEMS = pa.schema(
    [
        ("item_id", pa.string()),
        ("demand_class", pa.string()),
        ("adi", pa.float64()),
        ("cv2", pa.float64()),
        ("n_obs", pa.int32()),
        ("zero_share", pa.float64()),
        ("models", pa.string()),
        ("failed_models", pa.string()),
        ("fallback", pa.bool_()),
        ("notes", pa.string()),
        ("params", pa.string()),
        ("cpu_seconds", pa.float64()),
    ]
)

BACKTESTS = pa.schema([
    ("item_id", pa.string()), ("window", pa.int32()), ("origin", pa.date32()), ("date", pa.date32()),
    ("forecast", pa.float64()), *_bounds, ("actual", pa.float64()), ("scale", pa.float64()),
])

# kind -> (schema, partition column inside a run_date partition or None)
TABLES: dict[str, tuple[pa.Schema, str | None]] = {
    "forecasts": (FORECASTS, "model"),
    "backtests": (BACKTESTS, "model"),
    "metrics": (METRICS, None),
    "ensemble_weights": (ENSEMBLE_WEIGHTS, None),
    "items": (ITEMS, None),
}


def register(kind: str, schema: pa.Schema, partition: str | None = None) -> None:
    """Add an output table kind (used by later stages such as recommendations)."""
    TABLES[kind] = (schema, partition)
