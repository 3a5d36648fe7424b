"""The run's tables as per-item arrays for the recommendations (nova_ray.recommend): the
ensemble's daily forecast paths, its backtest errors per window, and the recent daily history of
each item and site with each site's share of the item's demand."""

from __future__ import annotations

from datetime import date, timedelta
from statistics import NormalDist

import numpy as np
import pandas as pd
import polars as pl

from .frequency import get_frequency, period_days
from .series import per_period_rows

Z80 = NormalDist().inv_cdf(0.9)


Table = pl.DataFrame | pl.LazyFrame


def ensemble_lazy(frame: Table | None) -> pl.LazyFrame | None:
    """The ensemble's rows of a table or a LazyFrame over one (all rows without `model`), ids as
    text and days as dates, to be read a chunk of items at a time (`rows_of`); None for None."""
    if frame is None:
        return None
    lf = frame.lazy()
    if "model" in lf.collect_schema().names():
        lf = lf.filter(pl.col("model") == "ensemble")
    return lf.with_columns(_text("item_id", lf).cast(pl.String), pl.col("date").cast(pl.Date))


def ensemble_items(ens: pl.LazyFrame | None) -> tuple[list[str], date | None]:
    """The items of `ensemble_lazy` rows (sorted) and their first day (None without rows)."""
    if ens is None:
        return [], None
    items, first = pl.collect_all([ens.select(pl.col("item_id").unique().sort()),
                                   ens.select(pl.col("date").min())])
    return items.to_series().to_list(), first.item()


def rows_of(ens: pl.LazyFrame | None, items: list[str]) -> pl.DataFrame | None:
    """The `ensemble_lazy` rows of `items` only; None when there are none."""
    if ens is None:
        return None
    df = ens.filter(pl.col("item_id").is_in(items)).collect()
    return df if df.height else None


def _runs(df: pl.DataFrame, *cols: str) -> np.ndarray:
    """Offsets of the runs of equal `cols` in a sorted frame: starts, then the height at the end."""
    ids = df.select(pl.struct(*cols).rle_id()).to_series().to_numpy()
    return np.concatenate([[0], np.flatnonzero(np.diff(ids)) + 1, [df.height]])


def daily_paths(
    fc: pl.DataFrame, freq: str | None = None
) -> dict[str, tuple[date, np.ndarray, np.ndarray | None]]:
    """item -> (first day, daily mean path, daily sigma path or None), each period spread evenly over
    its days: the days of the run's frequency `freq` (a month's own length), or without it the days
    to the next period (the last period as long as the one before; a lone period one day)."""
    out: dict[str, tuple[date, np.ndarray, np.ndarray | None]] = {}
    if fc.height == 0:
        return out
    fc = fc.sort("item_id", "date")
    runs = _runs(fc, "item_id")  # whole columns to numpy once: slicing them per item is cheap
    items = fc["item_id"].gather(runs[:-1]).to_list()
    days = fc["date"].to_numpy().astype("datetime64[D]")
    means = np.maximum(fc["forecast"].fill_null(0.0).to_numpy().astype(float), 0.0)
    sigmas = None
    if {"lo_80", "hi_80"} <= set(fc.columns):
        width = (fc["hi_80"] - fc["lo_80"]).fill_null(0.0).to_numpy().astype(float)
        sigmas = np.maximum(width, 0.0) / (2 * Z80)
    for item, a, b in zip(items, runs[:-1], runs[1:], strict=True):
        d, mean = days[a:b], means[a:b]
        sig = sigmas[a:b] if sigmas is not None else None
        if freq is not None:
            lengths = period_days(d, freq)
        elif len(d) > 1:
            gaps = np.diff(d).astype(int)
            lengths = np.append(gaps, gaps[-1]).clip(min=1)
        else:
            lengths = np.ones(1, dtype=np.int64)
        if (lengths != 1).any():
            mean = np.repeat(mean / lengths, lengths)
            sig = np.repeat(sig / np.sqrt(lengths), lengths) if sig is not None else None
        out[str(item)] = (d[0].astype(object), mean, sig)
    return out


def residual_segments(bt: pl.DataFrame) -> dict[str, list[np.ndarray]]:
    """item -> error segments (actual - forecast) per backtest window, daily windows that tile joined."""
    out: dict[str, list[np.ndarray]] = {}
    bt = bt.drop_nulls(["actual", "forecast"]).sort("item_id", "origin", "date")
    if bt.height == 0:
        return out
    items_at = _runs(bt, "item_id")
    windows_at = _runs(bt, "item_id", "origin")  # each item's runs lie inside its own
    items = bt["item_id"].gather(items_at[:-1]).to_list()
    days = bt["date"].to_numpy().astype("datetime64[D]")
    errors = (bt["actual"] - bt["forecast"]).to_numpy().astype(float)
    first = np.searchsorted(windows_at, items_at)  # the item's first window's index
    for k, item in enumerate(items):
        segs: list[np.ndarray] = []
        last_end = None
        for a, b in zip(windows_at[first[k] : first[k + 1]], windows_at[first[k] + 1 : first[k + 1] + 1],
                        strict=True):
            d = days[a:b]
            if len(d) > 1 and (np.diff(d).astype(int) != 1).any():
                continue  # not daily: the residual method needs daily errors
            e = errors[a:b]
            if segs and last_end is not None and (d[0] - last_end).astype(int) == 1:
                segs[-1] = np.concatenate([segs[-1], e])
            else:
                segs.append(e)
            last_end = d[-1]
        out[str(item)] = segs
    return out


def _text(name: str, frame: pl.DataFrame | pl.LazyFrame) -> pl.Expr:
    """A text column as it is when categorical (ids repeat on every row), else cast to String."""
    dtype = frame.collect_schema()[name]
    return pl.col(name) if dtype == pl.Categorical else pl.col(name).cast(pl.String)


STEP = {"W": "1w", "M": "1mo", "Q": "3mo", "Y": "1y"}  # a period, as Polars offsets dates


def per_period(history: pl.DataFrame | pl.LazyFrame | None, freq: str | None) -> str | None:
    """`freq`'s code when every history row is a period's total, dated on the period's first day or
    on its last (`series.period_dating`, as the reader takes such rows), else None (daily rows, or
    a daily run)."""
    if history is None or freq is None or (code := get_frequency(freq).code) == "D":
        return None
    days = history.lazy().select(pl.col("date").cast(pl.Date).unique()).collect().to_series()
    if days.is_empty():
        return None
    return code if per_period_rows(pd.Series(pd.to_datetime(days.to_numpy())), code) else None


def period_totals(y: np.ndarray, end: date, period: str) -> tuple[np.ndarray, float]:
    """The whole periods' totals of daily values `y` ending on `end` (`per_period` rows spread
    over their days; a period cut by the window's start is left out) and their mean length in days."""
    days = np.arange(np.datetime64(end, "D") - len(y) + 1, np.datetime64(end, "D") + 1)
    if period == "W":
        first = ((days.astype("int64") - 4) % 7) == 0  # Mondays (1970-01-01 was a Thursday)
    else:
        month = days.astype("datetime64[M]")
        first = days == month.astype("datetime64[D]")
        if period in ("Q", "Y"):
            first &= (month.astype("int64") % (3 if period == "Q" else 12)) == 0
    bounds = np.flatnonzero(first)  # the last period ends with `end` (per-period rows: as_of)
    if len(bounds) == 0:
        return np.zeros(0), 0.0
    lengths = np.diff(np.append(bounds, len(y)))
    return np.add.reduceat(np.asarray(y, dtype=float), bounds), float(lengths.mean())


def stock_day(first_day: date, history: pl.DataFrame | pl.LazyFrame | None, period: str | None) -> date:
    """The day a stock snapshot describes (without a later one given): the history's last day, the
    day before the forecast's first or later inside a first period left out as incomplete (a
    quarter's first 65 days are consumed already: not projected again)."""
    before = first_day - timedelta(days=1)
    return max(before, history_end(history, period) or before)


def history_end(history: pl.DataFrame | pl.LazyFrame | None, period: str | None = None) -> date | None:
    """The history's last day (of its last period, for per-period rows: `per_period`), or None."""
    if history is None:
        return None
    last = pl.col("date").cast(pl.Date).max()
    if period is not None:  # the end of the period the last row's date falls in (its first or last day)
        last = last.dt.truncate(STEP[period]).dt.offset_by(STEP[period]) - pl.duration(days=1)
    value = history.lazy().select(last).collect().item()
    return value if isinstance(value, date) else None


def history_arrays(history: pl.DataFrame | pl.LazyFrame | None, as_of: date, days: int,
                   items: list[str] | None = None, period: str | None = None, start: date | None = None
                   ) -> tuple[dict[tuple[str, str], np.ndarray], dict[str, dict[str, float]], bool]:
    """Daily demand of the last `days` days up to `as_of` per (item, site) and per (item, '') (from
    the item's first demand on, zeros filled), each site's share of the item's demand in that window
    (of the whole history when the window has none), and whether the history has sites; of `items`
    only when given. `period` (`per_period`): each row is a period's total, dated on its first or
    last day, spread evenly over the period's days (taken as one day's demand, a month of 1200
    made the bootstrap's lead-time sums 5-14x too spread). `start`: every item's history starts on
    this day at the latest (zeros before its first row: an export that lists an item only on the
    days it was used)."""
    if history is None or (isinstance(history, pl.DataFrame) and history.height == 0):
        return {}, {}, False
    has_site = "site" in history.collect_schema().names()
    end = (as_of - date(1970, 1, 1)).days
    # lazy: only the aggregates below are materialised, never a copy of the whole history
    h = history.lazy().select(
        _text("item_id", history), pl.col("date").cast(pl.Date),
        pl.col("quantity").cast(pl.Float64).fill_null(0.0),
        (_text("site", history).fill_null("") if has_site else pl.lit("")).alias("site"),
    )
    if period is not None:  # a total dated on its period's last day covers that period too
        begin = pl.col("date").dt.truncate(STEP[period])
        last = begin.dt.offset_by(STEP[period]) - pl.duration(days=1)
        h = h.with_columns(pl.date_ranges(begin, last).alias("date")).with_columns(
            pl.col("quantity") / pl.col("date").list.len()).explode("date")
    h = h.with_columns(pl.col("date").cast(pl.Int32).alias("day")).drop("date").filter(pl.col("day") <= end)
    if items is not None:
        h = h.filter(pl.col("item_id").is_in(items))
    first = pl.col("day").min()
    if start is not None:
        first = pl.min_horizontal(first, pl.lit((start - date(1970, 1, 1)).days))
    starts = h.group_by("item_id").agg(first.alias("first")).select(
        "item_id", start=pl.max_horizontal("first", pl.lit(end - days + 1)))
    # the window's rows first (a third of a 3-year history), then each item's start
    recent = h.filter(pl.col("day") >= end - days + 1).join(starts, on="item_id")
    queries = [starts, recent.group_by("item_id", "day", "start").agg(pl.col("quantity").sum())
               .with_columns(site=pl.lit(""))]
    if has_site:
        queries += [recent.group_by("item_id", "site", "day", "start").agg(pl.col("quantity").sum()),
                    recent.group_by("item_id", "site").agg(pl.col("quantity").sum()),
                    h.group_by("item_id", "site").agg(pl.col("quantity").sum().alias("all"))]
    starts_df, item_level, *by_site = pl.collect_all(queries)
    arrays: dict[tuple[str, str], np.ndarray] = {
        (str(item), ""): np.zeros(end - int(start) + 1) for item, start in starts_df.iter_rows()}
    # site level first: an empty site's rows are then replaced by the item's total
    for df in ([by_site[0]] if has_site else []) + [item_level]:
        if df.height == 0:
            continue
        # sorted once and sliced per (item, site) in numpy: a group_by iteration cost ~0.1 ms a
        # group (2000 items with two sites each: 0.8 s of a 4.6-s recommendation stage)
        df = df.sort("item_id", "site", "day")
        runs = _runs(df, "item_id", "site")
        keys = df.select(pl.col("item_id", "site").cast(pl.String), "start")[runs[:-1]]
        day, qty = df["day"].to_numpy(), df["quantity"].to_numpy()
        for (item, site, start), a, b in zip(keys.iter_rows(), runs[:-1], runs[1:], strict=True):
            y = np.zeros(end - int(start) + 1)
            np.add.at(y, day[a:b] - int(start), qty[a:b])
            arrays[(item, site)] = y
    shares: dict[str, dict[str, float]] = {}
    if has_site:
        win, whole = by_site[1], by_site[2]
        tot = whole.join(win, on=["item_id", "site"], how="left").with_columns(
            pl.col("quantity").fill_null(0.0))
        tot = tot.with_columns(q=pl.when(pl.col("quantity").sum().over("item_id") > 0)
                               .then(pl.col("quantity")).otherwise(pl.col("all")))
        tot = tot.with_columns(share=pl.col("q") / pl.col("q").sum().over("item_id")).fill_nan(0.0)
        for item, site, share in tot.select("item_id", "site", "share").iter_rows():
            shares.setdefault(item, {})[site] = float(share or 0.0)
    return arrays, shares, has_site
