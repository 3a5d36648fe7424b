"""A batch's result tables (forecasts, backtests, items; each with a `model` column where it has
one) and the row builder that fills them, shared by the per-item engine and the global LSTM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .models import LEVELS, Forecast
from .schemas import ITEMS


class Rows:
    """Column chunks for one output table: numpy arrays, and a scalar per forecast for the
    columns that repeat one value over its periods (item, model, window, origin, scale), stored
    once with its length and repeated only when the table is built (a global LSTM's rows of
    thousands of items would otherwise hold a small array per value)."""

    def __init__(self, columns: list[str]):
        self.cols: dict[str, list[Any]] = {c: [] for c in columns}
        self.lengths: list[int] = []  # periods of each forecast added

    def add_forecast(self, fc: Forecast, **scalars: object) -> None:
        h = len(fc["mean"])
        self.lengths.append(h)
        for k, v in scalars.items():
            # an array is copied: a slice would keep the whole array it views alive (an item's dates)
            self.cols[k].append(np.array(v) if isinstance(v, np.ndarray) else _Scalar(v))
        self.cols["forecast"].append(fc["mean"])
        for lv in LEVELS:
            self.cols[f"lo_{lv}"].append(fc[f"lo-{lv}"])
            self.cols[f"hi_{lv}"].append(fc[f"hi-{lv}"])

    def mark(self) -> int:
        """How many forecasts the rows hold (`truncate` goes back to it)."""
        return len(self.lengths)

    def truncate(self, mark: int) -> None:
        """Drop the forecasts added since `mark`."""
        del self.lengths[mark:]
        for chunks in self.cols.values():
            del chunks[mark:]

    def _column(self, chunks: list[Any]) -> np.ndarray:
        if all(isinstance(c, _Scalar) for c in chunks):
            return np.repeat(np.array([c.value for c in chunks]), self.lengths)
        pairs = zip(chunks, self.lengths, strict=True)
        return np.concatenate([np.repeat(c.value, n) if isinstance(c, _Scalar) else c for c, n in pairs])

    def table(self, schema: pa.Schema) -> pa.Table:
        arrays = []
        for f in schema:
            chunks = self.cols[f.name]
            if not chunks:
                arrays.append(pa.array([], type=f.type))
                continue
            v = self._column(chunks)
            arrays.append(pa.array(v.astype(str) if pa.types.is_string(f.type) else v, type=f.type))
        return pa.Table.from_arrays(arrays, schema=schema)


@dataclass(frozen=True, slots=True)
class _Scalar:
    """One value of a column over all periods of a forecast (see `Rows`)."""

    value: Any


FORECAST_COLS = ["item_id", "model", "date", "forecast"] + [
    f"{s}_{lv}" for lv in LEVELS for s in ("lo", "hi")
]
BACKTEST_COLS = FORECAST_COLS[:2] + ["window", "origin"] + FORECAST_COLS[2:] + ["actual", "scale"]

FORECAST_TABLE = pa.schema(
    [("item_id", pa.string()), ("model", pa.string()), ("date", pa.date32()), ("forecast", pa.float64())]
    + [(f"{s}_{lv}", pa.float64()) for lv in LEVELS for s in ("lo", "hi")]
)
BACKTEST_TABLE = pa.schema(
    [
        ("item_id", pa.string()),
        ("model", pa.string()),
        ("window", pa.int32()),
        ("origin", pa.date32()),
        ("date", pa.date32()),
        ("forecast", pa.float64()),
    ]
    + [(f"{s}_{lv}", pa.float64()) for lv in LEVELS for s in ("lo", "hi")]
    + [("actual", pa.float64()), ("scale", pa.float64())]
)
ITEMS_TABLE = ITEMS  # the `items` output schema, written down once in schemas.py
