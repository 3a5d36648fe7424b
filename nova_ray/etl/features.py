"""Build the date-keyed feature table from the raw layout; feature values for future dates."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..rollout import G5_PREFIX
from . import OBSERVED, EtlError, atomic_write, atomic_write_bytes, merge_daily
from .anatel import read_anatel_file
from .bcb import read_bcb_file
from .calendar import COLUMNS as CALENDAR_COLUMNS
from .calendar import calendar_features
from .inmet import COLUMNS as STATION_COLUMNS
from .inmet import load_inmet
from .regressors import read_regressor_file

CLIMATE_COLUMNS = ["rain_mm", "temp_mean_c", "humidity_mean_pct"]
IMPUTED = "climate_imputed"
FEATURES_FILE = "features.parquet"
STATIONS_FILE = "climate_stations.parquet"
DICTIONARY_FILE = "features_dictionary.json"
# sub-folder -> file suffixes read there
LAYOUT: dict[str, tuple[str, ...]] = {
    "inmet": (".csv", ".zip"),
    "bcb": (".json", ".csv"),
    "anatel": (".csv",),
    "regressors": (".csv",),
}
TEXT_COLUMNS = ("holiday_level", "holiday_name")
_CALENDAR_DOC = {
    "date": ("Calendar day (the key; one row per day)", "date"),
    "is_holiday": ("1 on a national, Bahia state or Salvador municipal holiday, else 0", "0/1"),
    "holiday_level": (
        "'national', 'state' or 'municipal' (highest level that day), '' otherwise",
        "category",
    ),
    "holiday_name": ("Holiday name(s) in Portuguese, '; '-joined, '' otherwise", "text"),
    "is_carnival": ("1 on Carnaval Monday and Tuesday (ponto facultativo), else 0", "0/1"),
    "is_weekend": ("1 on Saturday and Sunday, else 0", "0/1"),
    "day_of_week": ("Day of the week, 0 = Monday ... 6 = Sunday", "day"),
    "month": ("Month of the year, 1-12", "month"),
}
_CLIMATE_DOC = {
    "rain_mm": ("Precipitation of the (UTC) day, sum of hourly values, mean over stations", "mm/day"),
    "temp_mean_c": ("Mean hourly dry-bulb air temperature of the day, mean over stations", "°C"),
    "humidity_mean_pct": ("Mean hourly relative humidity of the day, mean over stations", "%"),
    IMPUTED: ("1 when the day's rain (without a rain column: any climate value) was missing and filled "
              "from the climatology", "0/1"),
}
_BCB_DOC = {
    "usd_brl": ("USD/BRL exchange rate, PTAX sell (SGS 1)", "BRL per USD"),
    "ipca": ("IPCA consumer price inflation, monthly change (SGS 433)", "% per month"),
    "selic": ("Selic policy rate target (SGS 432)", "% per year"),
}
_FILL = {
    "calendar": "computed for every day",
    "climate": "missing days from the smoothed day-of-year climatology, then linear interpolation",
    "economy": "forward-filled over calendar days; before the first observation back-filled",
    "5g": "forward-filled over calendar days; before the first row back-filled (an extract that starts "
          "after the roll-out did: no jump from 0); the forecast continues the count past its last "
          "observed day at its recent pace",
    "regressor": "forward-filled over calendar days; before the first row back-filled",
}


@dataclass
class FeatureResult:
    """What :func:`build_features` wrote."""

    path: Path
    dictionary_path: Path
    stations_path: Path
    sources: list[Path] = field(default_factory=list)
    feature_columns: list[str] = field(default_factory=list)
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    rows: int = 0
    warnings: list[str] = field(default_factory=list)
    # the warnings of 5G counts ending early -> their columns: a forecast continues such a count
    # and says so itself (`exog._continued_warnings`), so `run` shows one of the two
    continued: dict[str, list[str]] = field(default_factory=dict)


def discover(raw_dir: str | Path) -> dict[str, list[Path]]:
    """Raw files per source (``inmet``, ``bcb``, ``anatel``, ``regressors``) in the raw layout."""
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise EtlError("raw folder not found", raw)
    out: dict[str, list[Path]] = {}
    for sub, suffixes in LAYOUT.items():
        folder = raw / sub
        files = sorted(f for f in folder.glob("*") if f.is_file() and f.suffix.lower() in suffixes)
        out[sub] = [f for f in files if not f.name.startswith(".")] if folder.is_dir() else []
    return out


def day_of_year(dates: pd.DatetimeIndex | pd.Series) -> np.ndarray:
    """Day of year on a 365-day scale: 29 Feb shares 28 Feb's day, later leap-year days shift back one."""
    d = pd.DatetimeIndex(dates)
    doy = d.dayofyear.to_numpy()
    return np.where(d.is_leap_year & (doy >= 60), doy - 1, doy)


CLIMATE_HARMONICS = 3  # the annual cycle's harmonics in the climatology (`climatology`)
MIN_DAYS_PER_TWELFTH = 10  # observed days in each twelfth of the year for the harmonic fit


def climatology(
    frame: pd.DataFrame,
    columns: Iterable[str] = CLIMATE_COLUMNS,
    window: int = 15,
    harmonics: int = CLIMATE_HARMONICS,
) -> pd.DataFrame:
    """Expected value per day of year (1-365) over all years in `frame`.

    Where a column's observed days fill every twelfth of the year (`MIN_DAYS_PER_TWELFTH` each),
    it is the annual cycle: the mean plus `harmonics` harmonics fitted to the days by least
    squares, kept within the observed range. A few years of daily rain make a noisy mean per day
    of year, and its 15-day smoothing still follows single storms: about twice as far from the
    true cycle as the fit (tests), and the demo's forecasts with factors were up to 2.4% worse with it
    (docs/external-factors.md). Otherwise (less than a year, a season missing) it is the mean
    per day of year smoothed by a circular `window`-day mean, days without any data interpolated
    circularly. A column without data stays NaN.
    """
    columns = [c for c in columns if c in frame.columns]
    doy = day_of_year(frame["date"])
    out = {}
    for col in columns:
        values = frame[col].to_numpy(float)
        seen = ~np.isnan(values)
        twelfths = np.bincount((doy[seen] - 1) * 12 // 365, minlength=12)
        if harmonics > 0 and twelfths.min() >= MIN_DAYS_PER_TWELFTH:
            coef, *_ = np.linalg.lstsq(_annual_basis(doy[seen], harmonics), values[seen], rcond=None)
            cycle = _annual_basis(np.arange(1, 366), harmonics) @ coef
            out[col] = np.clip(cycle, values[seen].min(), values[seen].max())
        else:
            means = frame[col].groupby(doy).mean().reindex(range(1, 366))
            out[col] = _window_mean(means.to_numpy(float), window)
    return pd.DataFrame(out, index=pd.RangeIndex(1, 366, name="day_of_year"))


def _annual_basis(doy: np.ndarray, harmonics: int) -> np.ndarray:
    """Columns 1, cos and sin of k * 2 pi * day / 365 for k = 1..`harmonics`."""
    angle = 2 * np.pi * np.asarray(doy, float) / 365.0
    cols = [np.ones(len(angle))]
    for k in range(1, harmonics + 1):
        cols += [np.cos(k * angle), np.sin(k * angle)]
    return np.column_stack(cols)


def _window_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Per-day-of-year means (NaN where none) -> their circular `window`-day mean, gaps
    interpolated circularly (all NaN stays NaN)."""
    half = max(window, 1) // 2
    ok = ~np.isnan(v)
    vals = np.where(ok, v, 0.0)
    pad_v = np.concatenate([vals[len(vals) - half :], vals, vals[:half]])
    pad_w = np.concatenate([ok[len(ok) - half :], ok, ok[:half]]).astype(float)
    kernel = np.ones(2 * half + 1)
    total, count = np.convolve(pad_v, kernel, "valid"), np.convolve(pad_w, kernel, "valid")
    smooth = np.full(365, np.nan)
    np.divide(total, count, out=smooth, where=count > 0)
    good = ~np.isnan(smooth)
    if good.any() and not good.all():
        x = np.arange(365)
        smooth = np.interp(x, x[good], smooth[good], period=365)
    return smooth


def _align(frame: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Daily frame -> `days`: forward-filled across the gap to `days`, days before the first row
    back-filled with its value (also one after `days`). A cumulative 5G count too: an extract that
    does not start at the roll-out would otherwise jump from 0 to its first count in one day."""
    f = frame.set_index("date")
    f = f.reindex(f.index.union(days)).ffill()
    return f.bfill().reindex(days)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


Span = tuple[pd.Timestamp, pd.Timestamp]


def _load_each(
    files: list[Path], reader: Any, what: str, gaps: dict[str, list[Span]] | None = None
) -> tuple[pd.DataFrame, dict[str, Path], dict[str, Span]]:
    """The files of one source merged on the date, each column's file, and each column's own first
    and last date (the merge forward-fills a series that ends early up to the others' last day);
    `gaps` gets each column's holes (`_holes`), which the merge forward-fills too."""
    frames, origin, spans = [], {}, {}
    for f in files:
        frame = reader(f)
        for col in frame.columns.drop("date"):
            origin.setdefault(col, f)
            known = frame.loc[frame[col].notna(), "date"]
            if len(known):
                spans[col] = (known.min(), known.max())
                seen = frame.attrs.get(OBSERVED, {}).get(col)  # the dates before the daily fill
                if gaps is not None and (holes := _holes(pd.Series(known if seen is None else seen))):
                    gaps[col] = holes
        frames.append(frame)
    return merge_daily(frames, what, files), origin, spans


GAP_INTERVALS = 3  # a hole is longer than this many of the series' usual intervals (and FILLED_DAYS)


def _holes(known: pd.Series) -> list[Span]:
    """(last date before, first date after) of each hole in a column's dates: over FILLED_DAYS days
    and over GAP_INTERVALS of its usual interval (daily quotes: a month; monthly: a quarter)."""
    days = pd.Series(pd.to_datetime(known).sort_values().unique())
    if len(days) < 3:
        return []
    step = days.diff().dt.days
    limit = max(FILLED_DAYS, GAP_INTERVALS * float(step.median()))
    return [(days[i - 1], days[i]) for i in step.index[step > limit]]


def _hole_notes(gaps: dict[str, list[Span]], group: str, start: pd.Timestamp, end: pd.Timestamp) -> list[str]:
    """A warning per column with holes in the range from `start` to `end`: the longest, and how many
    more (their days repeat a value)."""
    out = []
    for col, found in gaps.items():
        holes = [(a, b) for a, b in found if b > start and a < end]
        if not holes:
            continue
        a, b = max(holes, key=lambda h: h[1] - h[0])
        more = f" (and {len(holes) - 1} shorter hole(s))" if len(holes) > 1 else ""
        out.append(f"{group} {col}: no data from {a.date()} to {b.date()}, {(b - a).days - 1} days that "
                   f"repeat the value of {a.date()}{more}")
    return out


def _to_parquet(frame: pd.DataFrame, path: Path) -> Path:
    out = frame.copy()
    out["date"] = pd.to_datetime(out["date"]).dt.date  # parquet date32, the canonical `date`
    return atomic_write(path, lambda tmp: out.to_parquet(tmp, index=False, engine="pyarrow"))


def read_features(path: str | Path) -> pd.DataFrame:
    """Read features.parquet (or climate_stations.parquet) with ``date`` as datetime64."""
    frame = pd.read_parquet(path)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def build_features(
    raw_dir: str | Path,
    out_dir: str | Path,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    inmet_stations: str = "",
) -> FeatureResult:
    """Read the raw layout, write features.parquet, climate_stations.parquet and features_dictionary.json.

    Missing sub-folders are skipped. Without `start`/`end`, the range spans every source's dates.
    `inmet_stations` (comma-separated codes, [etl] inmet_stations): the stations read from INMET's
    yearly zips and CSV files in inmet/ (none named: every CSV file is read; a CSV file of another
    station is left out with a warning).
    """
    raw, out = Path(raw_dir), Path(out_dir)
    files = discover(raw)
    skipped: dict[Path, str] = {}
    stations = load_inmet(files["inmet"], inmet_stations.split(","), skipped)
    files["inmet"] = [f for f in files["inmet"] if f not in skipped]  # not a source of the table
    holes: dict[str, dict[str, list[Span]]] = {"economy": {}, "5g": {}, "regressor": {}}
    economy, econ_src, econ_span = _load_each(files["bcb"], read_bcb_file, "bcb", holes["economy"])
    g5, g5_src, g5_span = _load_each(files["anatel"], read_anatel_file, "anatel", holes["5g"])
    regs, reg_src, reg_span = _load_each(files["regressors"], read_regressor_file, "regressors",
                                         holes["regressor"])

    spans = [f["date"] for f in (stations, economy, g5, regs) if not f.empty]
    if start is None or end is None:
        if not spans:
            raise EtlError(
                "no raw sources found (inmet/, bcb/, anatel/, regressors/); pass start and end", raw
            )
        lo, hi = min(s.min() for s in spans), max(s.max() for s in spans)
    start_ts = pd.Timestamp(start).normalize() if start is not None else lo
    end_ts = pd.Timestamp(end).normalize() if end is not None else hi
    if end_ts < start_ts:
        if end is None:  # the end is the raw data's: say so, not "end ... is before start"
            raise EtlError(f"start {start_ts.date()} is after the raw data's last day {end_ts.date()}", raw)
        if start is None:
            raise EtlError(f"end {end_ts.date()} is before the raw data's first day {start_ts.date()}", raw)
        raise EtlError(f"end {end_ts.date()} is before start {start_ts.date()}")
    days = pd.date_range(start_ts, end_ts, freq="D", name="date")

    notes = _ignored_subfolders(raw)
    if skipped:
        named = ", ".join(f"{f.name} ({code})" for f, code in skipped.items())
        chosen = ", ".join(sorted({c.strip().upper() for c in inmet_stations.split(",") if c.strip()}))
        notes.append(f"{raw / 'inmet'}: {len(skipped)} CSV file(s) of stations not in [etl] inmet_stations "
                     f"({chosen}) not read: {named}")
    continued: dict[str, list[str]] = {}
    table = calendar_features(start_ts, end_ts).set_index("date")
    groups: dict[str, str] = dict.fromkeys(table.columns, "calendar")
    have: list[str] = []  # the climate columns some station reports
    observed: dict[str, Span] = {**econ_span, **g5_span, **reg_span}  # each column's first and last datum
    if files["inmet"]:
        daily = stations.groupby("date")[CLIMATE_COLUMNS].mean()
        # a sensor no station reports gives no column: all NaN, it would also mark every day
        # imputed (and so leave the climatology of the others nothing to learn from)
        have = [c for c in CLIMATE_COLUMNS if daily[c].notna().any()]
        if missing := [c for c in CLIMATE_COLUMNS if c not in have]:  # etl.md: left out, with a warning
            notes.append(f"climate: no station reports {', '.join(missing)} (every value -9999 or empty): "
                         "left out")
    if have:
        climate = daily[have].reindex(days)
        # the flag the models read: whether the day's rain was observed (a broken humidity sensor
        # must not turn a day's real rain into "unknown"); without rain, any climate value
        imputed = climate["rain_mm"].isna() if "rain_mm" in have else climate.isna().any(axis=1)
        clim = climatology(daily[have].reset_index(), have)
        climate = climate.fillna(pd.DataFrame(clim.loc[day_of_year(days)].to_numpy(), days, clim.columns))
        climate = climate.interpolate(limit_direction="both")
        table[have] = climate
        table[IMPUTED] = imputed.astype("int8")
        if imputed.mean() > STALE_SHARE:
            span = f"{start_ts.date()} to {end_ts.date()}"
            notes.append(f"climate: {imputed.mean():.0%} of the days from {span} have no station data "
                         "(the climatology stands in for them)")
        seen = climate.index[~imputed.to_numpy()]
        if len(seen):  # the files of a portal lag by weeks: the days after them are climatology
            observed.update(dict.fromkeys([*have, IMPUTED], (seen.min(), seen.max())))
            filled = "are filled from the climatology"
            notes += _filled_ends({"climate": (seen.min(), seen.max())}, start_ts, end_ts, "climate",
                                  before=filled, after=filled)
        groups.update(dict.fromkeys([*have, IMPUTED], "climate"))
    each = ((economy, "economy", econ_span), (g5, "5g", g5_span), (regs, "regressor", reg_span))
    for frame, group, col_spans in each:
        if frame.empty:
            continue
        clash = [c for c in frame.columns.drop("date") if c in groups]
        if clash:
            col = clash[0]
            mine = {**econ_src, **g5_src, **reg_src}.get(col)
            raise EtlError(f"{group} column {col!r} is also a {groups[col]} column; rename it", mine)
        aligned = _align(frame, days)
        for col in aligned.columns:
            table[col] = aligned[col]
            groups[col] = group
        after = "repeat the last value"
        if group == "5g":  # rollout.continue_counts
            after += " (the forecast continues the count at its recent pace)"
        notes += _filled_ends(col_spans, start_ts, end_ts, group, after=after,
                              ended=continued if group == "5g" else None)
        notes += _hole_notes(holes[group], group, start_ts, end_ts)
    table = table.reset_index()
    empty = [c for c in table.columns if c != "date" and table[c].isna().all()]
    if empty:  # etl.md promises a table without gaps: a column without a value is no feature
        table = table.drop(columns=empty)
        span = f"{start_ts.date()} to {end_ts.date()}"
        notes.append(f"column(s) {', '.join(empty)} have no value from {span}: left out")

    origin: dict[str, list[str]] = {c: [] for c in table.columns}
    for col in (*CLIMATE_COLUMNS, IMPUTED):
        if col in origin:
            origin[col] = [_rel(f, raw) for f in files["inmet"]]
    for src in (econ_src, g5_src, reg_src):
        for col, f in src.items():
            origin[col] = [_rel(f, raw)]
    dictionary = {col: _describe(col, groups.get(col, "calendar"), origin[col], observed.get(col))
                  for col in table.columns}

    out.mkdir(parents=True, exist_ok=True)
    stations_out = stations[(stations["date"] >= start_ts) & (stations["date"] <= end_ts)]
    stations_path = _to_parquet(stations_out[STATION_COLUMNS].reset_index(drop=True), out / STATIONS_FILE)
    path = _to_parquet(table, out / FEATURES_FILE)
    text = json.dumps(dictionary, ensure_ascii=False, indent=2) + "\n"
    dictionary_path = atomic_write_bytes(out / DICTIONARY_FILE, text.encode("utf-8"))
    return FeatureResult(
        path=path,
        dictionary_path=dictionary_path,
        stations_path=stations_path,
        sources=[f for sub in LAYOUT for f in files[sub]],
        feature_columns=[c for c in table.columns if c != "date" and c not in TEXT_COLUMNS],
        start=start_ts,
        end=end_ts,
        rows=len(table),
        warnings=notes,
        continued=continued,
    )


STALE_SHARE = 0.5  # a source that fills more than this share of the days from elsewhere is named
FILLED_DAYS = 31  # days of the range before a source's first row or after its last that are named


def _filled_ends(
    spans: dict[str, Span], start: pd.Timestamp, end: pd.Timestamp, group: str,
    before: str = "repeat the first value", after: str = "repeat the last value",
    ended: dict[str, list[str]] | None = None,
) -> list[str]:
    """Warnings for columns that start long after the range does (their first value copied back)
    or end long before (their last carried forward; `before`/`after` say what fills them): such
    days are no information. Columns with the same span share one warning, named by column;
    `ended` gets each warning of columns that end early, with its columns."""
    by_span: dict[Span, list[str]] = {}
    for col, span in spans.items():
        by_span.setdefault(span, []).append(col)
    out = []
    for (first, last), cols in by_span.items():
        label = group if cols == [group] else f"{group} {', '.join(cols)}"
        if (first - start).days > FILLED_DAYS:
            out.append(f"{label}: the data start {first.date()}, {(first - start).days} days into the range "
                       f"from {start.date()}: those days {before}")
        if (end - last).days > FILLED_DAYS:
            out.append(f"{label}: the data end {last.date()}, {(end - last).days} days before the range's "
                       f"end {end.date()}: those days {after}")
            if ended is not None:
                ended[out[-1]] = cols
    return out


def _ignored_subfolders(raw: Path) -> list[str]:
    """Warnings for files in sub-folders of the source folders, which are not read (a year's
    INMET zip unpacked into inmet/2023/ gave no climate columns and no word)."""
    out = []
    for sub in LAYOUT:
        folder = raw / sub
        if folder.is_dir():
            nested = sorted(d.name for d in folder.iterdir() if d.is_dir() and any(d.rglob("*.*")))
            if nested:
                out.append(f"{folder}: files in sub-folders ({', '.join(nested)}) are not read; move them "
                           f"into {sub}/")
    return out


def _describe(col: str, group: str, sources: list[str], observed: Span | None = None) -> dict[str, Any]:
    """A column's dictionary entry; `observed`: the first and last day its source has a value."""
    if group == "calendar":
        desc, unit = _CALENDAR_DOC[col]
        if col != "date":
            sources = ["holidays package (Brazil, subdiv BA) + Salvador municipal holidays"]
    elif group == "climate":
        desc, unit = _CLIMATE_DOC[col]
    elif group == "economy":
        desc, unit = _BCB_DOC.get(col, (f"Banco Central SGS series {col!r}", "as published"))
    elif group == "5g":
        desc, unit = f"Anatel 5G roll-out, cumulative {col[3:].replace('_', ' ')}", "count"
    else:
        desc, unit = f"Regressor {col!r} from {', '.join(sources)}", "as in the file"
    entry = {"description": desc, "unit": unit, "group": group, "sources": sources, "fill": _FILL[group]}
    if observed is not None:
        entry["observed"] = [str(observed[0].date()), str(observed[1].date())]
    return entry


def _date_frame(frame: pd.DataFrame) -> pd.DataFrame:
    if "date" not in frame.columns:
        if frame.index.name != "date":
            raise EtlError("the table needs a 'date' column (or a 'date' index)")
        frame = frame.reset_index()
    frame = frame.copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.normalize()
    return frame.sort_values("date", kind="stable")


def future_features(
    features: pd.DataFrame,
    future_dates: Iterable[Any],
    future_table: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature rows for `future_dates`, with the columns of `features` (as built by build_features).

    Calendar columns are exact; climate comes from the day-of-year climatology of the observed
    history (``climate_imputed`` = 1); every other column keeps its last known value. Values in
    `future_table` (``date`` + any of the columns) win where not null, for dates after the
    history's last (on days the history covers, the realised values win); for the step-like
    columns (economy, regressors) a supplied value also carries forward to later dates. A 5G
    count is cumulative: between the last known day and the supplied dates it grows linearly (a
    plan's month-end counts are a steady roll-out, not a month without new sites and a jump),
    and after the last supplied date it stays.
    """
    hist = _date_frame(features)
    dates = pd.DatetimeIndex(pd.to_datetime(pd.Index(list(future_dates)))).normalize()
    columns = [c for c in hist.columns if c != "date"]
    out = pd.DataFrame(index=pd.DatetimeIndex(dates, name="date"))
    if len(dates):
        cal = calendar_features(dates.min(), dates.max()).set_index("date").reindex(dates)
    climate = [c for c in CLIMATE_COLUMNS if c in columns]
    if climate and len(dates):
        observed = hist[hist[IMPUTED] == 0] if IMPUTED in hist.columns else hist
        clim = climatology(observed, climate)
        clim_values = clim.loc[day_of_year(dates)].to_numpy()
    for col in columns:
        if col in CALENDAR_COLUMNS:
            out[col] = cal[col].to_numpy() if len(dates) else []
        elif col in climate:
            out[col] = clim_values[:, climate.index(col)] if len(dates) else []
        elif col == IMPUTED:
            out[col] = 1
        else:
            known = hist[col].dropna()
            out[col] = known.iloc[-1] if len(known) else np.nan
    if future_table is not None and len(dates):
        supplied = _date_frame(future_table).drop_duplicates("date", keep="last").set_index("date")
        # rows of days the history covers are not the future: the realised values win (a row of
        # the 20th carried forward over the realised last value of the 30th)
        supplied = supplied[supplied.index > hist["date"].max()]
        given: dict[str, pd.Series] = {}
        for col in (c for c in supplied.columns if c in out.columns):
            values = supplied[col].dropna()
            if col in CALENDAR_COLUMNS or col in climate or col == IMPUTED:
                values = values.reindex(dates)
            elif col.startswith(G5_PREFIX) and len(values):
                last = hist[col].dropna()
                start = pd.Series([last.iloc[-1]], [hist["date"].max()]) if len(last) else values.iloc[:0]
                points = pd.concat([start, values])
                values = points.reindex(points.index.union(dates)).interpolate("time", limit_area="inside")
                values = values.ffill().reindex(dates)
            else:
                values = values.reindex(values.index.union(dates)).ffill().reindex(dates)
            out[col] = values.where(values.notna(), out[col])
            if col in climate:
                given[col] = values.notna()
        if IMPUTED in out.columns and IMPUTED not in supplied.columns and climate:
            none = pd.Series(False, index=dates)
            all_given = np.logical_and.reduce([given.get(c, none).to_numpy() for c in climate])
            out[IMPUTED] = (~all_given).astype(int)
    for col in columns:
        try:
            out[col] = out[col].astype(hist[col].dtype)
        except (TypeError, ValueError):
            pass
    return out.reset_index()[["date", *columns]]
