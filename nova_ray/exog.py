"""Exogenous regressors for a SeriesSet: the daily feature table -> one standardised matrix on the
series' period grid, history plus horizon.

Rows run from the first period of the set (``SeriesSet.starts.min()``) to ``end + horizon``; row
``n_hist + j`` is the ``j``-th forecast period. History rows hold the realised features; the
horizon rows hold what is known in advance: the calendar exactly, climate from the day-of-year
climatology, economy from the last value, the 5G roll-out at its recent pace (see
:func:`daily_table`), or the values of a user-supplied ``future_table``.

Daily columns are first derived (:func:`derive_daily`: log rain, the rain of the previous two
days, new 5G sites per day, business days) and then aggregated to the frequency by mean or sum
(:data:`PERIOD_FEATURES`). Each frequency uses a small default set (:data:`DEFAULT_FEATURES`);
constant and near-duplicate columns are dropped, the rest standardised on the history rows.
See docs/external-factors.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .frequency import Frequency, get_frequency, period_start
from .io.features import dictionary_path, load_features, read_future_table
from .io.source import is_uri
from .rollout import G5_PREFIX, recent_pace, report_interval, reported_pace, sites_column
from .series import SeriesSet, period_index

WARMUP_DAYS = 28  # days before the grid start that the lagged/trailing daily features read
CLIP_SD = 1.0  # horizon values are clipped to the history range widened by this many std units
MAX_CORR = 0.98  # a column this correlated with an earlier kept one is dropped
KNOWN = "realised"  # daily_table's 0/1 column: 1 where the day's features are observed values
RAIN_GIVEN = "rain_given"  # daily_table's 0/1 column: 1 where the day's rain is observed or supplied
# derived climate columns -> the day lags each row reads; on days that read a
# not-yet-observed day they take the climatology of the derived column itself (log1p of a mean
# rain is not the mean of log1p rain: the day-of-year mean rain would bias them upwards).
CLIMATE_DERIVED: dict[str, tuple[int, ...]] = {"rain_log": (0,), "rain_prev2d_log": (1, 2)}

# Default features per frequency. is_weekend is left out on purpose: every model that takes
# regressors here already has a weekly seasonality (ARIMA m=7, Prophet weekly, the LSTM phase),
# and a weekend dummy would be collinear with it.
DEFAULT_FEATURES: dict[str, tuple[str, ...]] = {
    "D": ("is_holiday", "rain_log", "rain_prev2d_log", "usd_brl", "g5_new_sites_14d"),
    "W": ("holidays", "rain_log", "usd_brl", "g5_new_sites"),
    "M": ("business_days", "rain_log", "usd_brl", "g5_new_sites"),
    "Q": ("business_days", "rain_log", "usd_brl", "g5_new_sites"),
    "Y": (),
}
# feature -> (daily column, aggregation over a period); daily data uses the column as it is.
PERIOD_FEATURES: dict[str, tuple[str, str]] = {
    "holidays": ("is_holiday", "sum"),
    "business_days": ("business_day", "sum"),
    "weekend_days": ("is_weekend", "sum"),
    "rain_log": ("rain_log", "mean"),
    "rain_mm": ("rain_mm", "sum"),
    "g5_new_sites": ("g5_new_sites", "mean"),
}
DESCRIPTIONS: dict[str, str] = {
    "is_holiday": "1 on a national, Bahia or Salvador holiday",
    "is_weekend": "1 on Saturday and Sunday",
    "business_day": "1 on a weekday that is not a holiday",
    "holidays": "holidays in the period (count)",
    "business_days": "weekdays that are not holidays in the period (count)",
    "weekend_days": "Saturdays and Sundays in the period (count)",
    "rain_log": "log(1 + rain_mm), period mean",
    "rain_prev2d_log": "log(1 + rain of the two previous days)",
    "rain_mm": "precipitation (mm), period sum",
    "usd_brl": "USD/BRL exchange rate, period mean",
    "g5_new_sites_14d": "new 5G sites per day, trailing 14-day mean",
    "g5_new_sites": "new 5G sites per day, period mean",
}


@dataclass(frozen=True)
class Exog:
    """A standardised regressor matrix on a period grid: ``n_hist`` history rows, then ``horizon``."""

    values: np.ndarray  # (n_hist + horizon, k) float64
    names: tuple[str, ...]
    start: np.datetime64  # first period of the grid
    freq: str
    n_hist: int
    horizon: int
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    std: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dropped: dict[str, str] = field(default_factory=dict)
    clipped: dict[str, tuple[float, float]] = field(default_factory=dict)  # horizon value -> its limit
    known_until: str | None = None  # last day whose realised features the matrix uses
    sources: tuple[str, ...] = ()

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for run metadata."""
        return {
            "features": list(self.names),
            "freq": self.freq,
            "start": str(self.start),
            "history_periods": self.n_hist,
            "horizon": self.horizon,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "dropped": dict(self.dropped),
            "known_until": self.known_until,
            "sources": list(self.sources),
        }


# ---------------------------------------------------------------- daily table


def derive_daily(features: pd.DataFrame) -> pd.DataFrame:
    """Model-ready daily columns from a feature table (``date`` + columns of build_features).

    Adds ``business_day``, ``rain_log`` = log1p(rain_mm), ``rain_prev2d_log`` = log1p(rain of the
    two previous days), ``g5_new_sites`` (daily additions of the cumulative 5G sites, >= 0) and
    ``g5_new_sites_14d`` (their trailing 14-day mean); for a count updated less often than daily,
    both are the pace of its latest update (`reported_pace`). Other numeric columns pass through.
    """
    f = features.sort_values("date").reset_index(drop=True)
    out = pd.DataFrame({"date": pd.to_datetime(f["date"])})
    for col in f.columns:
        if col != "date" and pd.api.types.is_numeric_dtype(f[col]):
            out[col] = f[col].to_numpy(dtype=float)
    if "is_holiday" in out and "is_weekend" in out:
        out["business_day"] = (1.0 - np.maximum(out["is_holiday"], out["is_weekend"])).clip(0, 1)
    if "rain_mm" in out:
        rain = out["rain_mm"].clip(lower=0)
        out["rain_log"] = np.log1p(rain)
        prev = rain.shift(1, fill_value=float(rain.iloc[0])) + rain.shift(2, fill_value=float(rain.iloc[0]))
        out["rain_prev2d_log"] = np.log1p(prev)
    sites = sites_column(list(out.columns))
    if sites is not None:
        new = out[sites].diff().fillna(0.0).clip(lower=0)
        cum = out[sites].to_numpy(dtype=float)
        # a daily_table's rows after its realised ones continue the count day by day: the reporting
        # interval and the pace of the updates are those of the realised rows
        seen = np.flatnonzero(out[KNOWN].to_numpy() > 0) if KNOWN in out else np.arange(len(out))
        upto = int(seen[-1]) + 1 if len(seen) else len(out)
        if report_interval(cum[:upto]) > 1:  # a count reported monthly steps once a month: its
            pace = new.to_numpy().copy()  # daily diff is a spike, and a 14-day mean a sawtooth
            pace[:upto] = reported_pace(cum[:upto])  # the pace of its latest update instead, and the
            out["g5_new_sites"] = pace  # continued rows' daily steps (that pace carried on)
            out["g5_new_sites_14d"] = pace
        else:
            out["g5_new_sites"] = new
            out["g5_new_sites_14d"] = new.rolling(14, min_periods=1).mean()
    return out


def daily_table(
    features: pd.DataFrame,
    first: pd.Timestamp,
    last: pd.Timestamp,
    known_until: pd.Timestamp | None = None,
    future_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Daily features for every day from `first` to `last`, realised up to `known_until`.

    Days after `known_until` (default: the table's last day) come from
    ``nova_ray.etl.future_features``: calendar exact, climate from the day-of-year climatology,
    economy at the last value, `future_table` values where given. Cumulative 5G columns not in
    `future_table` continue at their mean daily pace of the last 28 known days, or of two
    reporting intervals of a count updated less often (monthly: ~60 days), so the derived
    new-sites features do not drop to zero. Days before the table's
    first day get the calendar, the climatology and the first values. Column ``realised`` is 1 on
    the days inside the table (up to `known_until`), else 0; ``rain_given`` is 1 where the day's
    rain is observed (not imputed by the ETL) or supplied by `future_table`.
    """
    from .etl import future_features
    from .etl.features import IMPUTED

    feats = features.copy()
    feats["date"] = pd.to_datetime(feats["date"]).dt.normalize()
    feats = feats.sort_values("date").drop_duplicates("date", keep="last")
    if known_until is not None:
        feats = feats[feats["date"] <= pd.Timestamp(known_until)]
    if feats.empty:
        raise ValueError("no feature rows on or before the last known day")
    first, last = pd.Timestamp(first).normalize(), pd.Timestamp(last).normalize()
    lo, hi = feats["date"].iloc[0], feats["date"].iloc[-1]
    inside = feats[(feats["date"] >= first) & (feats["date"] <= last)]
    # a day whose rain the ETL filled from the climatology (a gap, a station's partial last day)
    # is not observed rain: its derived columns take the climatology of log rain (`_climate_unknown`)
    given = 1 - inside[IMPUTED].to_numpy(dtype=int) if IMPUTED in inside.columns else 1
    parts = [inside.assign(**{KNOWN: 1, RAIN_GIVEN: given})]
    if last > hi:
        after = pd.date_range(max(hi + pd.Timedelta(days=1), first), last, freq="D")
        fut = future_features(feats, after, future_table)
        supplied = set(future_table.columns) if future_table is not None else set()
        for col in (c for c in feats.columns if c.startswith(G5_PREFIX) and c not in supplied):
            values = feats[col].to_numpy(dtype=float)
            steps = (fut["date"] - hi).dt.days.to_numpy(dtype=float)
            fut[col] = float(values[-1]) + recent_pace(values) * steps
        # the future table's rain (a weather forecast) is given, not the climatology's
        rain = _supplied(future_table, "rain_mm", fut["date"])
        parts.append(fut.assign(**{KNOWN: 0, RAIN_GIVEN: rain.astype(int)}))
    if first < lo:
        before = pd.date_range(first, min(lo - pd.Timedelta(days=1), last), freq="D")
        early = future_features(feats, before)
        for col in early.columns:
            if col != "date" and not _calendar_or_climate(col):
                early[col] = feats[col].iloc[0]
        parts.insert(0, early.assign(**{KNOWN: 0, RAIN_GIVEN: 0}))
    table = pd.concat([p for p in parts if len(p)], ignore_index=True)
    return table.sort_values("date").reset_index(drop=True)


def _supplied(table: pd.DataFrame | None, col: str, dates: pd.Series) -> np.ndarray:
    """Whether `table` (``date`` + columns) has a value of `col` on each of `dates`."""
    if table is None or col not in table.columns:
        return np.zeros(len(dates), bool)
    t = table.assign(date=pd.to_datetime(table["date"]).dt.normalize())
    have = set(t.loc[t[col].notna(), "date"])
    return pd.to_datetime(dates).dt.normalize().isin(have).to_numpy()


def _values_hash(series: SeriesSet) -> str:
    """sha256[:16] of the regressor rows a run's models see: the grid and each backtest window's."""
    import hashlib

    h = hashlib.sha256(np.ascontiguousarray(series.exog, dtype=np.float64).tobytes())
    for back in sorted(series.exog_backtest):
        h.update(np.ascontiguousarray(series.exog_backtest[back], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def _climate_unknown(derived: pd.DataFrame, observed: pd.DataFrame) -> pd.DataFrame:
    """Derived climate columns (of `daily_table` rows) on days that read a day whose rain is
    unknown (neither observed nor supplied) -> their day-of-year climatology over `observed`
    (derived rows of observed days, `_observed_days`)."""
    from .etl import climatology
    from .etl.features import day_of_year

    cols = [c for c in CLIMATE_DERIVED if c in derived.columns]
    if not cols or derived[RAIN_GIVEN].all():
        return derived
    known = derived[RAIN_GIVEN].to_numpy() > 0
    if observed.empty:
        return derived
    clim = climatology(observed, cols)
    doy = day_of_year(derived["date"])
    out = derived.copy()
    for col in cols:
        ok = np.ones(len(known), bool)
        for k in CLIMATE_DERIVED[col]:
            ok &= np.r_[np.ones(k, bool), known[: len(known) - k]]
        out.loc[~ok, col] = clim[col].to_numpy()[doy[~ok] - 1]
    return out


def _observed_days(features: pd.DataFrame, known_until: pd.Timestamp | str | None) -> pd.DataFrame:
    """Derived daily columns of the feature table's days up to `known_until`, less the days the
    ETL imputed (a climatology of imputed days would feed on itself)."""
    from .etl.features import IMPUTED

    f = features.assign(date=pd.to_datetime(features["date"]).dt.normalize())
    if known_until is not None:
        f = f[f["date"] <= pd.Timestamp(known_until)]
    derived = derive_daily(f.drop_duplicates("date", keep="last"))
    return derived[derived[IMPUTED] == 0] if IMPUTED in derived.columns else derived


def _calendar_or_climate(col: str) -> bool:
    from .etl.features import CALENDAR_COLUMNS, CLIMATE_COLUMNS, IMPUTED

    return col in CALENDAR_COLUMNS or col in CLIMATE_COLUMNS or col == IMPUTED


# ---------------------------------------------------------------- period matrix


def default_features(freq: str) -> tuple[str, ...]:
    """The default feature set of a frequency code."""
    return DEFAULT_FEATURES[get_frequency(freq).code]


def _grid_last_day(last_period: pd.Timestamp, fq: Frequency) -> pd.Timestamp:
    nxt = pd.date_range(last_period, periods=2, freq=fq.pandas_alias)[1]
    return nxt - pd.Timedelta(days=1)


def aggregate(daily: pd.DataFrame, names: Sequence[str], freq: str, grid: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily derived columns -> one row per period of `grid` for the feature `names`."""
    fq = get_frequency(freq)
    out = pd.DataFrame(index=grid)
    if fq.code == "D":
        d = daily.set_index("date")
        for name in names:
            out[name] = d[PERIOD_FEATURES.get(name, (name, ""))[0]].reindex(grid).to_numpy(dtype=float)
        return out
    period = period_start(daily["date"], fq)
    for name in names:
        col, how = PERIOD_FEATURES.get(name, (name, "mean"))
        g = daily[col].groupby(period.to_numpy())
        out[name] = (g.sum() if how == "sum" else g.mean()).reindex(grid).to_numpy(dtype=float)
    return out


def _period_table(
    features: pd.DataFrame,
    fq: Frequency,
    grid: pd.DatetimeIndex,
    wanted: Sequence[str],
    known_until: pd.Timestamp | str | None = None,
    future_table: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The `wanted` features aggregated to `grid` (unscaled), realised up to `known_until`, and
    the features the table lacks (name -> reason). The daily columns are derived from the table's
    first day on, not from the grid's: a monthly 5G count's pace needs two updates before it (from
    28 days before the grid it read 0 for its first weeks, and a rolling window's start moved it)."""
    days = daily_table(
        features,
        min(grid[0] - pd.Timedelta(days=WARMUP_DAYS), pd.to_datetime(features["date"]).min().normalize()),
        _grid_last_day(grid[-1], fq),
        known_until=known_until,
        future_table=future_table,
    )
    # the climatology of the whole table's observed days up to `known_until`, not of this slice
    derived = _climate_unknown(derive_daily(days), _observed_days(features, known_until))
    derived = derived[derived["date"] >= grid[0]].reset_index(drop=True)
    names = [n for n in wanted if PERIOD_FEATURES.get(n, (n, ""))[0] in derived.columns]
    dropped = {n: "not in the feature table" for n in wanted if n not in names}
    return aggregate(derived, names, fq.code, grid), dropped


def build_exog(
    features: pd.DataFrame,
    freq: str,
    start: np.datetime64 | pd.Timestamp | str,
    end: np.datetime64 | pd.Timestamp | str,
    horizon: int,
    *,
    columns: Sequence[str] | None = None,
    extra: Sequence[str] = (),
    future_table: pd.DataFrame | None = None,
    known_until: pd.Timestamp | str | None = None,
    sources: Sequence[str] = (),
) -> Exog:
    """The standardised regressor matrix for periods `start`..`end` (history) plus `horizon` more.

    `columns` replaces the frequency's default set (:data:`DEFAULT_FEATURES`); `extra` adds columns
    (e.g. the user's regressors), aggregated by mean. Features missing from the table are skipped
    (noted in ``dropped``), as are columns constant on the history and columns correlated above
    0.98 with an earlier one. Means and standard deviations come from the history rows; horizon
    values are clipped to the history range widened by one standard deviation.
    """
    fq = get_frequency(freq)
    first = period_start(pd.Series([pd.Timestamp(start)]), fq).iloc[0]
    last = period_start(pd.Series([pd.Timestamp(end)]), fq).iloc[0]
    n_hist = len(pd.date_range(first, last, freq=fq.pandas_alias))
    grid = pd.date_range(first, periods=n_hist + horizon, freq=fq.pandas_alias)
    wanted = list(dict.fromkeys([*(default_features(fq.code) if columns is None else columns), *extra]))
    table, dropped = _period_table(features, fq, grid, wanted, known_until, future_table)
    names = list(table.columns)
    values = table.to_numpy(dtype=float)
    hist = values[:n_hist]
    keep: list[int] = []
    for j, name in enumerate(names):
        h = hist[:, j]
        if not np.all(np.isfinite(values[:, j])):
            dropped[name] = "missing values"
        elif n_hist < 2 or np.std(h) <= 1e-9 * (1.0 + abs(np.mean(h))):
            dropped[name] = "constant on the history"
        else:
            corr = [abs(np.corrcoef(h, hist[:, i])[0, 1]) for i in keep]
            if corr and max(corr) > MAX_CORR:
                dropped[name] = f"correlated with {names[keep[int(np.argmax(corr))]]}"
            else:
                keep.append(j)
    values = values[:, keep]
    mean, std = values[:n_hist].mean(axis=0), values[:n_hist].std(axis=0)
    z = (values - mean) / std
    clipped = {}
    if horizon and len(keep):
        lo, hi = z[:n_hist].min(axis=0) - CLIP_SD, z[:n_hist].max(axis=0) + CLIP_SD
        ahead = z[n_hist:]
        for j in range(len(keep)):  # the farthest value past its limit, in the feature's units
            over, under = ahead[:, j].max() - hi[j], lo[j] - ahead[:, j].min()
            if max(over, under) > 1e-9:
                v, limit = (ahead[:, j].max(), hi[j]) if over >= under else (ahead[:, j].min(), lo[j])
                clipped[names[keep[j]]] = (float(v * std[j] + mean[j]), float(limit * std[j] + mean[j]))
        z[n_hist:] = np.clip(ahead, lo, hi)
    return Exog(
        values=np.ascontiguousarray(z),
        names=tuple(names[j] for j in keep),
        start=np.datetime64(first.date(), "D"),
        freq=fq.code,
        n_hist=n_hist,
        horizon=horizon,
        mean=mean,
        std=std,
        dropped=dropped,
        clipped=clipped,
        known_until=str(pd.Timestamp(known_until).date()) if known_until is not None else None,
        sources=tuple(sources),
    )


def backtest_rows(features: pd.DataFrame, ex: Exog, backs: Sequence[int]) -> dict[int, np.ndarray]:
    """The regressor rows of backtest windows as they were known at each window's origin, on `ex`'s
    scale: calendar exact, climate from the climatology of the days before the origin, economy at
    its last value, 5G at its last pace (as the final forecast's horizon rows are made).

    `backs`: window starts counted in periods before the end of the history (the window of `b`
    starts at history row ``n_hist - b`` and spans ``ex.horizon`` rows). Returns b -> (horizon, k);
    a window outside the history, or before the first feature row, is left out (it keeps the
    realised rows).
    """
    fq = get_frequency(ex.freq)
    grid = pd.date_range(pd.Timestamp(ex.start), periods=ex.n_hist, freq=fq.pandas_alias)
    h, out = ex.horizon, {}
    for b in sorted(set(backs)):
        g = ex.n_hist - b
        if g < 2 or b < h or not ex.names:
            continue
        try:
            table, _ = _period_table(features, fq, grid[: g + h], ex.names, grid[g] - pd.Timedelta(days=1))
        except ValueError:  # no feature row on or before the origin
            continue
        ahead = table.to_numpy(dtype=float)[g:]
        if ahead.shape != (h, len(ex.names)) or not np.all(np.isfinite(ahead)):
            continue
        past = ex.values[:g] * ex.std + ex.mean  # clipped as at the origin: its history's range
        sd = past.std(axis=0) * CLIP_SD
        ahead = np.clip(ahead, past.min(axis=0) - sd, past.max(axis=0) + sd)
        out[b] = np.ascontiguousarray((ahead - ex.mean) / ex.std)
    return out


def attach_exog(
    series: SeriesSet,
    features: pd.DataFrame,
    horizon: int,
    backtest_backs: Sequence[int] = (),
    **kwargs: Any,
) -> tuple[SeriesSet, Exog]:
    """`series` with the regressor matrix of :func:`build_exog` attached, and that matrix; with
    `backtest_backs`, also the rows its backtest windows knew at their origins (:func:`backtest_rows`).

    Keyword arguments go to :func:`build_exog`. Without any usable feature the set comes back
    without exog (``exog=None``), so every model runs exactly as without factors.
    """
    start = series.starts.min() if len(series) else series.end
    ex = build_exog(features, series.freq, start, series.end, horizon, **kwargs)
    if not ex.names:
        return series, ex
    return series.with_exog(ex.values, ex.names, ex.start, backtest_rows(features, ex, backtest_backs)), ex


def for_run(
    series: SeriesSet,
    horizon: int,
    features_path: str | Path | None,
    demand_path: str | Path | None = None,
    future_path: str | Path | None = None,
    backtest_backs: Sequence[int] = (),
    inmet_stations: str = "",
    known_until: date | None = None,
) -> tuple[SeriesSet, dict[str, Any]]:
    """Attach the run's regressors: from `features_path` if it exists, else from the ``raw/`` folder
    next to `demand_path`; `future_path` overrides horizon values; the backtest windows starting
    `backtest_backs` periods before the end get the rows known at their origins (none: the realised
    rows); `known_until` (a backfill's date): the table's later rows are not known, the horizon's
    rows are made as on that date. Returns the series (unchanged when no features are found) and
    a JSON-ready record for the run metadata."""
    found = load_features(features_path, demand_path, inmet_stations=inmet_stations, known_until=known_until)
    if found is None:
        if future_path:  # the scenario asked for would be dropped without a word
            raise ValueError(f"{future_path}: future feature values, but the run has no feature table "
                             f"(no {features_path or 'features file'}; run `nova-ray etl` first)")
        beside = ("a raw/ folder beside an s3:// demand file is not read (run `nova-ray etl` on a local "
                  "copy)" if demand_path and is_uri(demand_path)
                  else "no raw/ folder next to the demand file")
        return series, {"enabled": False, "reason": f"no {features_path or 'features file'} and {beside}"}
    frame, regressors, sources, continued = found
    if frame.empty:  # a backfill's date before the table's first day
        return series, {"enabled": False, "reason": f"no feature row on or before {known_until}"}
    future = read_future_table(future_path) if future_path else None
    if future is not None:  # a misspelt column would be ignored: the scenario silently not applied
        unknown = [c for c in future.columns if c != "date" and c not in frame.columns]
        if unknown:
            numeric = (c for c in frame.columns if c != "date" and pd.api.types.is_numeric_dtype(frame[c]))
            known = ", ".join(numeric)  # not holiday_name: no value a future table could give
            raise ValueError(f"{future_path}: column {unknown[0]!r} is not a feature (the features: {known})")
    out, ex = attach_exog(
        series, frame, horizon, backtest_backs, extra=regressors, future_table=future, sources=sources,
        known_until=known_until,
    )
    record = {"enabled": out.exog is not None, **ex.describe()}
    if out.exog is not None:  # the values the models see: a rerun of the day compares them (daily.py)
        record["values_sha256"] = _values_hash(out)
    record["backtest_exog"] = (
        {"rows": "known at each origin", "windows_back": sorted(out.exog_backtest)}
        if out.exog_backtest
        else {"rows": "realised"}
    )
    if features_path and Path(features_path).is_file():  # the table's content, as the data's id does
        import hashlib

        record["features_sha256"] = hashlib.sha256(Path(features_path).read_bytes()).hexdigest()[:16]
    since, until = pd.to_datetime(frame["date"]).min(), pd.to_datetime(frame["date"]).max()
    record["features_from"], record["features_until"] = str(since.date()), str(until.date())
    if continued:
        record["continued"] = continued
    warnings = _continued_warnings(continued, until) if out.exog is not None else []
    if warnings := warnings + _warnings(out, ex, since, until, features_path, future, future_path):
        record["warnings"] = warnings  # the run's warnings (pipeline)
    if future_path:
        record["future_table"] = str(future_path)
    if out.exog is None:
        record["reason"] = f"no usable feature for frequency {series.freq}"
    return out, record


def _warnings(series: SeriesSet, ex: Exog, since: pd.Timestamp, until: pd.Timestamp,
              features_path: str | Path | None, future: pd.DataFrame | None,
              future_path: str | Path | None) -> list[str]:
    """What the regressors of `series` (with them attached) do not do as one would think: features
    that end long before the demand or start long after it, a table without its dictionary, a
    future table clipped or changing nothing."""
    warnings = []
    late = (pd.Timestamp(series.end) - until).days
    if series.exog is not None and late > STALE_FEATURE_DAYS:
        warnings.append(f"the features end {until.date()}, {late} days before the demand's last period "
                        f"{pd.Timestamp(series.end).date()}: those days use the climatology and the "
                        "last values (run `nova-ray etl` on newer raw files)")
    first = pd.Timestamp(series.starts.min()) if len(series) else since
    if series.exog is not None and (early := (since - first).days) > STALE_FEATURE_DAYS:
        warnings.append(f"the features start {since.date()}, {early} days after the demand's first day "
                        f"{first.date()}: those days use the climatology and the first values (run "
                        "`nova-ray etl` with an earlier --start, or on older raw files)")
    beside = dictionary_path(features_path) if features_path else None
    if beside is not None and Path(features_path).is_file() and not beside.is_file():
        warnings.append(f"{features_path}: no {beside.name} beside it: the columns of your own "
                        "regressors/ files are not used (copy the dictionary with the table)")
    if future is not None and series.exog is not None and ex.clipped:  # a scenario cut short: said
        shown = ", ".join(f"{k} {v:.4g} to {lim:.4g}" for k, (v, lim) in ex.clipped.items())
        warnings.append(f"{future_path}: horizon values past the history's range widened by one spread "
                        f"are clipped: {shown}")
    if future is not None and not (pd.to_datetime(future["date"]) > until).any():
        warnings.append(f"{future_path}: no row after the feature table's last day {until.date()}: the "
                        "future values change nothing")
    return warnings


STALE_FEATURE_DAYS = 31  # features ending more days than this before the demand: a warning


def _continued_warnings(continued: dict[str, dict[str, Any]], until: pd.Timestamp) -> list[str]:
    """A warning per 5G count continued for more than STALE_FEATURE_DAYS: its pace is a guess."""
    out = []
    for col, c in continued.items():
        gap = (until - pd.Timestamp(c["observed_until"])).days
        if gap > STALE_FEATURE_DAYS:
            out.append(f"{col}: the 5G count ends {c['observed_until']}, {gap} days before the features' "
                       f"last day {until.date()}: continued at its recent pace ({c['pace_per_day']:g} per "
                       "day; run `nova-ray etl` on a newer Anatel file)")
    return out


def without_exog(series: SeriesSet) -> SeriesSet:
    """The same series with no regressors (the --no-exog path)."""
    return series.with_exog(None)


__all__ = [
    "DEFAULT_FEATURES",
    "Exog",
    "aggregate",
    "attach_exog",
    "backtest_rows",
    "build_exog",
    "daily_table",
    "default_features",
    "derive_daily",
    "for_run",
    "period_index",
    "without_exog",
]
