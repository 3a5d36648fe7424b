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
    if code in ("D", "W"):
        days = np.asarray(d - s).view(np.int64)  # day numbers in place: no copy of a long array
        days = days[()] if days.ndim == 0 else days  # a date in, a number out (not a 0-d array)
        return days // 7 if code == "W" else days
    months = d.astype("datetime64[M]").astype(np.int64) - s.astype("datetime64[M]").astype(np.int64)
    return {"M": months, "Q": months // 3}.get(code, months // 12)


@dataclass(frozen=True)
class SeriesSet:
    """Regular series on one frequency grid, all ending on the same period `end`.

    Optional regressors: `exog` has one row per period of the global grid that starts at
    `exog_start` (at or before every series start) and runs through `end` plus at least the
    forecast horizon; columns are `exog_names`. None means no external factors.
    `exog_backtest` maps a backtest window's start, counted in periods before the end of the history
    (the window of `b` starts at row ``len - b`` of every series), to its regressor rows as known
    at its origin; a window not in it sees the realised rows.
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
    exog_backtest: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)

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
            self.exog_backtest,
        )

    @property
    def exog_horizon(self) -> int:
        """Regressor rows after `end` (0 without exog)."""
        if self.exog is None or self.exog_start is None:
            return 0
        return int(len(self.exog) - period_index(self.exog_start, self.end, self.freq) - 1)

    def exog_offset(self, i: int) -> int:
        """The row of `exog` that belongs to the first period of series `i` (0 without exog)."""
        if self.exog_start is None:
            return 0
        return int(period_index(self.exog_start, self.starts[i], self.freq))

    def exog_of(self, i: int) -> np.ndarray | None:
        """Regressor rows of series `i`: row t belongs to period t of the series (its first period
        is row 0), so rows ``len(values_of(i))`` onwards are the horizon. None without exog."""
        if self.exog is None or self.exog_start is None:
            return None
        return self.exog[self.exog_offset(i) :]

    def with_exog(
        self,
        exog: np.ndarray | None,
        names: tuple[str, ...] | list[str] = (),
        start: np.datetime64 | None = None,
        backtest: dict[int, np.ndarray] | None = None,
    ) -> SeriesSet:
        """This set with regressors attached (checked to cover every series and `end`), or removed;
        `backtest`: the rows its backtest windows knew at their origins (see the class)."""
        if exog is None:
            return dataclasses.replace(self, exog=None, exog_names=(), exog_start=None, exog_backtest={})
        x = np.asarray(exog, dtype=float)
        if x.ndim != 2 or x.shape[1] != len(names):
            raise ValueError(f"exog must be (periods, {len(names)}), got shape {x.shape}")
        s = np.datetime64(start, "D")
        if len(self) and period_index(s, self.starts.min(), self.freq) < 0:
            raise ValueError(f"exog starts {s}, after the first series start {self.starts.min()}")
        if len(x) <= period_index(s, self.end, self.freq):
            raise ValueError(f"exog ends before the last period {self.end}")
        rows = dict(backtest or {})
        if any(np.shape(r)[1:] != (len(names),) for r in rows.values()):
            raise ValueError(f"backtest regressor rows must have {len(names)} columns")
        return dataclasses.replace(self, exog=x, exog_names=tuple(names), exog_start=s, exog_backtest=rows)


# period numbers count from an origin that starts a period on every frequency (weeks on Monday)
_ORIGIN = {"W": np.datetime64("1969-12-29", "D")}
_EPOCH = np.datetime64("1970-01-01", "D")


SUM_BLOCK = 262_144  # rows per block of `_run_sums`


NARROW_KEYS = 2**31  # (item, period) keys below this are built as int32


def _run_sums(values: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """pandas' (compensated) sum of each run of `values` (runs start at `heads`), a block of whole
    runs at a time: the same sums as one group-by over all rows, with temporaries of a block."""
    out = np.empty(len(heads))
    bounds = np.r_[heads, len(values)]
    g = 0
    while g < len(heads):
        stop = max(int(np.searchsorted(heads, heads[g] + SUM_BLOCK)), g + 1)
        lo, hi = int(bounds[g]), int(bounds[stop])
        labels = np.repeat(np.arange(stop - g), np.diff(bounds[g : stop + 1]))
        out[g:stop] = pd.Series(values[lo:hi]).groupby(labels, sort=True).sum().to_numpy()
        g = stop
    return out


def complete_end(dates: pd.Series, freq: str) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    """The day the series end on, and the start of the period left out (None when none is).

    Daily rows that stop inside a week, month, quarter or year (an export to the 12th of June
    under monthly periods) end on the day before that period: a June of 12 days would be fitted
    and backtested as a slump. Per-period totals (`period_dating`) are complete whatever their
    last date."""
    end = pd.Timestamp(dates.max())
    fq = get_frequency(freq)
    if fq.code == "D":
        return end, None
    start = pd.Timestamp(period_start(pd.Series([end]), fq).iloc[0])
    following = pd.Timestamp(date_range(start, 2, fq)[1])
    if end == following - pd.Timedelta(days=1):
        return end, None
    if per_period_rows(dates, freq):
        return end, None
    return start - pd.Timedelta(days=1), start


def complete_start(dates: pd.Series, freq: str) -> pd.Timestamp | None:
    """The first day of the first complete period when daily rows start inside one (None: they
    start on a period's first day, are per-period totals (`period_dating`: dated on a period's first
    or last day), or hold no complete period after it).

    Symmetric with `complete_end`: an export from the 12th of June under monthly periods would fit
    a June of 19 days as a slump, and as its window rolls on night after night, that first
    month's total changes with it: every stored fit would read as a changed history."""
    fq = get_frequency(freq)
    if fq.code == "D" or dates.empty:
        return None
    first = pd.Timestamp(dates.min())
    start = pd.Timestamp(period_start(pd.Series([first]), fq).iloc[0])
    if first == start or per_period_rows(dates, freq):
        return None
    # totals of shorter periods dated on the last day of the month or week they sum (month ends
    # under quarters, Sundays): the first row covers its whole month or week
    days = pd.Series(pd.unique(dates))
    if ((days + pd.Timedelta(days=1)).dt.day == 1).all():
        first = first.replace(day=1)
    elif (days.dt.weekday == 6).all():
        first = first - pd.Timedelta(days=6)
    if first <= start:
        return None
    begin = pd.Timestamp(date_range(start, 2, fq)[1])
    after = pd.Timestamp(date_range(begin, 2, fq)[1])  # the day after the first complete period
    end, _ = complete_end(dates, freq)
    return begin if after - pd.Timedelta(days=1) <= end else None


def period_dating(dates: pd.Series, freq: str) -> str | None:
    """How rows at `freq` are dated when each is a whole period's total: "start" (every date its
    period's first day), "end" (every date its period's last day, the day the total closes: month
    ends, Sundays, quarter and year ends), else None (daily rows, or a daily run)."""
    fq = get_frequency(freq)
    if fq.code == "D":
        return None
    days = pd.Series(pd.unique(dates))
    if (period_start(days, fq) == days).all():
        return "start"
    after = days + pd.Timedelta(days=1)
    return "end" if (period_start(after, fq) == after).all() else None


def per_period_rows(dates: pd.Series, freq: str) -> bool:
    """Whether rows at `freq` are per-period totals, dated on each period's first or last day
    (`period_dating`; never for daily runs)."""
    return period_dating(dates, freq) is not None


def _periods(origin: np.datetime64, dates: np.ndarray, code: str) -> np.ndarray:
    """`period_index` of datetime64 `dates` (any unit, a time of day ignored) as int32, a block at a
    time: no day-resolution copy of a long column beside the result. Day numbers fit in 32 bits
    for any year within millions of 1970 (build_series refuses rows without a date)."""
    out = np.empty(len(dates), dtype=np.int32)
    for k in range(0, len(dates), SUM_BLOCK):
        out[k : k + SUM_BLOCK] = period_index(origin, dates[k : k + SUM_BLOCK].astype("datetime64[D]"), code)
    return out


def build_series(demand: pd.DataFrame, freq: str, end: pd.Timestamp | None = None,
                 start: pd.Timestamp | None = None, begin: pd.Timestamp | None = None) -> SeriesSet:
    """Aggregate long demand (item_id, date, quantity) to `freq` periods; missing periods are zero.

    Every series runs from its first period (or `start`'s, when earlier: an export that lists an
    item only on the days it was used) to the common last period of the data (or `end`; rows
    after it are left out); rows before `begin` (an incomplete first period, `complete_start`)
    are left out too. Items are ordered by their id as text. Vectorised over rows
    (integer keys, one sort): no per-item frames, so memory stays a few arrays of the row count.
    """
    fq = get_frequency(freq)
    code = fq.code
    ids_col = demand["item_id"]
    if isinstance(ids_col.dtype, pd.CategoricalDtype):  # grouped by integer codes, not strings
        names = ids_col.cat.categories.astype(str)
        codes = ids_col.cat.codes.to_numpy()
    else:
        codes, names = pd.factorize(ids_col.astype(str))
        names = pd.Index(names)
    order = np.argsort(names.to_numpy(dtype=object), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    sorted_names = names.to_numpy(dtype=object)[order]
    origin = _ORIGIN.get(code, _EPOCH)
    if demand["date"].isna().any():  # read_demand names the row; a direct caller gets this
        raise ValueError("build_series: rows without a date")
    stamps = pd.to_datetime(demand["date"])
    if getattr(stamps.dt, "tz", None) is not None:  # each its wall-clock day, as read_demand reads it
        stamps = stamps.dt.tz_localize(None)
    dates = stamps.to_numpy()
    del stamps
    per = _periods(origin, dates, code)
    qty = demand["quantity"].to_numpy(dtype=float)
    if begin is not None:
        keep = dates >= np.datetime64(pd.Timestamp(begin).date(), "D")
        if not keep.all():  # copies of the row arrays only when rows are cut
            per, qty, codes, dates = per[keep], qty[keep], codes[keep], dates[keep]
        del keep
    # the first row's day (before `end` cuts rows: the earliest row is kept whenever any is)
    first_day = dates[per.argmin()].astype("datetime64[D]") if len(per) else None
    del dates
    if end is not None:
        last = int(period_index(origin, np.datetime64(pd.Timestamp(end).date(), "D"), code))
        keep = per <= last
        if not keep.all():  # copies of the row arrays only when rows are cut
            per, qty, codes = per[keep], qty[keep], codes[keep]
        del keep
    if len(per) == 0:
        ids, starts = np.array([], dtype=object), np.array([], dtype="datetime64[D]")
        end_date = period_start(pd.Series([pd.Timestamp(end)]), fq).to_numpy().astype("datetime64[D]")[0]
        return SeriesSet(ids, starts, np.zeros(1, np.int64), np.zeros(0), code, end_date)
    if end is None:
        last = int(per.max())
    first = int(per.min())
    if start is not None:
        start_day = np.datetime64(pd.Timestamp(start).date(), "D")
        start_per = int(period_index(origin, start_day, code))
        if start_per < first:
            first, first_day = start_per, start_day
    span = last - first + 1
    grid = date_range(period_start(pd.Series([first_day]), fq).iloc[0], span, fq)
    # one sort of (item rank, period) keys; equal keys (sites of one item, days of one week) summed
    # keys of 4 bytes while they fit (2000 items x 1095 days: 2.2 M < 2^31)
    narrow = len(rank) * span + abs(first) < NARROW_KEYS  # every step below stays in range too
    key = (rank.astype(np.int32) if narrow else rank)[codes]  # then built in place
    key *= span
    key -= first
    key += per
    del per
    if len(key) > 1 and not (key[1:] >= key[:-1]).all():
        row_order = np.argsort(key, kind="stable")
        key = key[row_order]
        sums = qty[row_order]
        del row_order
    else:  # rows already in (item, period) order (an export sorted by item and date): no sort
        sums = qty  # read only
    new_key = np.r_[True, key[1:] != key[:-1]]
    if not new_key.all():  # equal keys: pandas' (compensated) sum, in row order within each key
        heads = np.flatnonzero(new_key)
        del new_key
        sums = _run_sums(sums, heads)
        key = key[heads]
        del heads
    else:  # a row per key (one site, daily rows): no index of every row
        del new_key
    item = key // span
    item_heads = np.flatnonzero(np.r_[True, item[1:] != item[:-1]])
    ranks = item[item_heads]
    del item
    p = key
    p %= span  # each key's period, in place
    p0 = p[item_heads]  # each item's first period (keys are sorted)
    if start is not None:  # or `start`'s, when earlier
        p0 = np.minimum(p0, int(period_index(origin, start_day, code)) - first)
    offsets = np.concatenate([[0], np.cumsum(span - p0)]).astype(np.int64)
    values = np.zeros(int(offsets[-1]))
    for lo in range(0, len(p), SUM_BLOCK):  # each key's place in the flat values, a block at a time
        hi = min(lo + SUM_BLOCK, len(p))
        which = np.searchsorted(item_heads, np.arange(lo, hi), side="right") - 1  # its item
        values[offsets[which] - p0[which] + p[lo:hi]] = sums[lo:hi]
    del p, key
    return SeriesSet(
        item_ids=sorted_names[ranks],
        starts=grid[p0],
        offsets=offsets,
        values=values,
        freq=code,
        end=grid[-1],
    )
