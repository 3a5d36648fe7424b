"""A compact set of regular series (one flat values array plus offsets), cheap to ship to Ray."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .frequency import Frequency, date_range, get_frequency, period_start


@dataclass(frozen=True)
class SeriesSet:
    """Regular series on one frequency grid, all ending on the same period `end`."""

    item_ids: np.ndarray  # str, length n
    starts: np.ndarray  # datetime64[D], length n
    offsets: np.ndarray  # int64, length n + 1
    values: np.ndarray  # float64
    freq: str
    end: np.datetime64

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def frequency(self) -> Frequency:
        return get_frequency(self.freq)

    def values_of(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def dates_of(self, i: int) -> np.ndarray:
        return date_range(self.starts[i], int(self.offsets[i + 1] - self.offsets[i]), self.frequency)

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def subset(self, indices: np.ndarray | list[int]) -> SeriesSet:
        idx = np.asarray(indices, dtype=int)
        parts = [self.values_of(i) for i in idx]
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
        values = np.concatenate(parts) if parts else np.zeros(0)
        return SeriesSet(self.item_ids[idx], self.starts[idx], offsets, values, self.freq, self.end)


def build_series(demand: pd.DataFrame, freq: str, end: pd.Timestamp | None = None) -> SeriesSet:
    """Aggregate long demand (item_id, date, quantity) to `freq` periods; missing periods are zero.

    Every series runs from its first period to the common last period of the data (or `end`).
    """
    fq = get_frequency(freq)
    df = pd.DataFrame({
        "item_id": demand["item_id"].astype(str).to_numpy(),
        "period": period_start(demand["date"], fq).to_numpy(),
        "quantity": demand["quantity"].to_numpy(dtype=float),
    })
    agg = df.groupby(["item_id", "period"], sort=True)["quantity"].sum().reset_index()
    last = pd.Timestamp(end) if end is not None else agg["period"].max()
    last = period_start(pd.Series([last]), fq).iloc[0]
    grid = pd.date_range(agg["period"].min(), last, freq=fq.pandas_alias)
    pos = pd.Series(np.arange(len(grid)), index=grid)
    ids, starts, parts = [], [], []
    for item, g in agg.groupby("item_id", sort=True):
        p = pos.reindex(g["period"]).to_numpy()
        p0 = int(p[0])
        y = np.zeros(len(grid) - p0)
        y[p.astype(int) - p0] = g["quantity"].to_numpy()
        ids.append(item)
        starts.append(grid[p0])
        parts.append(y)
    offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])]).astype(np.int64)
    return SeriesSet(
        item_ids=np.array(ids, dtype=object),
        starts=np.array(starts, dtype="datetime64[D]"),
        offsets=offsets,
        values=np.concatenate(parts) if parts else np.zeros(0),
        freq=fq.code,
        end=np.datetime64(last.date(), "D"),
    )
