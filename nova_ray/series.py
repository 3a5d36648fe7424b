"""A compact set of regular series (one flat values array plus offsets), cheap to ship to Ray."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .frequency import Frequency, date_range, get_frequency, period_start


def period_index(start: np.datetime64, dates: np.ndarray | np.datetime64, freq: str) -> np.ndarray:
    """Period number of each of `dates` (period starts) counted from the period `start` on `freq`."""
    code = get_frequency(freq).code
    s = np.datetime64(start, "D")
    d = np.asarray(dates, dtype="datetime64[D]")
    if code == "D":
        return (d - s).astype(np.int64)
    if code == "W":
        return (d - s).astype(np.int64) // 7
    months = d.astype("datetime64[M]").astype(np.int64) - s.astype("datetime64[M]").astype(np.int64)
    return {"M": months, "Q": months // 3}.get(code, months // 12)


@dataclass(frozen=True)
class SeriesSet:
    """Regular series on one frequency grid, all ending on the same period `end`.

    Optional regressors: `exog` has one row per period of the global grid that starts at
    `exog_start` (at or before every series start) and runs through `end` plus at least the
    forecast horizon; columns are `exog_names`. None means no external factors.
    """

    item_ids: np.ndarray  # str, length n
    starts: np.ndarray  # datetime64[D], length n
    offsets: np.ndarray  # int64, length n + 1
    values: np.ndarray  # float64
    freq: str
    end: np.datetime64
    exog: np.ndarray | None = None  # (periods from exog_start to end + horizon, k) float64
    exog_names: tuple[str, ...] = ()
    exog_start: np.datetime64 | None = None

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
        return SeriesSet(
            self.item_ids[idx],
            self.starts[idx],
            offsets,
            values,
            self.freq,
            self.end,
            self.exog,
            self.exog_names,
            self.exog_start,
        )

    @property
    def exog_horizon(self) -> int:
        """Regressor rows after `end` (0 without exog)."""
        if self.exog is None or self.exog_start is None:
            return 0
        return int(len(self.exog) - period_index(self.exog_start, self.end, self.freq) - 1)

    def exog_of(self, i: int) -> np.ndarray | None:
        """Regressor rows of series `i`: row t belongs to period t of the series (its first period
        is row 0), so rows ``len(values_of(i))`` onwards are the horizon. None without exog."""
        if self.exog is None or self.exog_start is None:
            return None
        p0 = int(period_index(self.exog_start, self.starts[i], self.freq))
        return self.exog[p0:]

    def with_exog(
        self,
        exog: np.ndarray | None,
        names: tuple[str, ...] | list[str] = (),
        start: np.datetime64 | None = None,
    ) -> SeriesSet:
        """This set with regressors attached (checked to cover every series and `end`), or removed."""
        if exog is None:
            return dataclasses.replace(self, exog=None, exog_names=(), exog_start=None)
        x = np.asarray(exog, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"exog must be (periods, {len(names)}), got shape {x.shape}")
        s = np.datetime64(start, "D")
        if len(self) and period_index(s, self.starts.min(), self.freq) < 0:
            raise ValueError(f"exog starts {s}, after the first series start {self.starts.min()}")
        if len(x) <= period_index(s, self.end, self.freq):
            raise ValueError(f"exog ends before the last period {self.end}")
        return dataclasses.replace(self, exog=x, exog_names=tuple(names), exog_start=s)


def build_series(demand: pd.DataFrame, freq: str, end: pd.Timestamp | None = None) -> SeriesSet:
    """Aggregate long demand (item_id, date, quantity) to `freq` periods; missing periods are zero.

    Every series runs from its first period to the common last period of the data (or `end`).
    """
    fq = get_frequency(freq)
    # grouped by integer codes of the ids (categories sorted as text), not by a string per row
    ids_col = demand["item_id"]
    if isinstance(ids_col.dtype, pd.CategoricalDtype):
        names = ids_col.cat.categories.astype(str)
        codes = ids_col.cat.codes.to_numpy()
    else:
        codes, names = pd.factorize(ids_col.astype(str))
        names = pd.Index(names)
    order = np.argsort(names.to_numpy(dtype=object), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    df = pd.DataFrame(
        {
            "item_id": rank[codes],
            "period": period_start(demand["date"], fq).to_numpy(),
            "quantity": demand["quantity"].to_numpy(dtype=float),
        }
    )
    sorted_names = names.to_numpy(dtype=object)[order]
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
        ids.append(sorted_names[item])
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
