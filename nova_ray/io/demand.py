"""Read and validate demand history (CSV, Parquet or an Excel workbook; long format)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .. import clock
from .columns import canonical_columns, clashing_columns, missing_columns
from .csv_text import read_text_csv, text_numbers, totals_hint
from .errors import InputError, Locate
from .excel import SUFFIXES as EXCEL
from .excel import read_xlsx
from .source import open_source, read_failed

REQUIRED = ("item_id", "date", "quantity")
OPTIONAL = ("site", "family")


KNOWN = REQUIRED + OPTIONAL


class Raw(NamedTuple):
    """A file's columns that the reader uses (CSV and Parquet: those only; a workbook: all), under
    the file's names; where each row is; whether its numbers use a decimal comma; the file's
    column names, all of them; and a row's values in every column (for a totals row's hint)."""

    frame: pd.DataFrame
    locate: Locate
    decimal_comma: bool | None
    header: list[str]
    row: Callable[[int], pd.Series]


def _read_raw(path: str, renames: str = "") -> Raw:
    """Read the columns of a file that name (`renames` applied) the ones the reader uses: a CSV's
    as text, a Parquet file's as stored (an export's description columns are never read: 12 of
    them took a 1 M-row CSV from 0.6 s and 200 MB to 18 s and 1.1 GB)."""
    fs, inner, size = open_source(path)
    if size == 0:
        raise InputError(f"{path}: file is empty")
    suffix = Path(inner).suffix.lower()

    def used(header: list[str]) -> list[int]:
        return [k for k, n in enumerate(canonical_columns(header, KNOWN, renames)) if n in KNOWN]

    try:
        if suffix in {".csv", ".txt", ".gz"}:
            # the stream is decompressed by pyarrow already (.gz by its extension)
            text = read_text_csv(lambda: fs.open_input_stream(inner), path, used)
            where = text.line
            comma = text.decimal_comma
            return Raw(text.frame, lambda row: f"line {where(row)}", comma, text.header, text.row)
        if suffix in EXCEL:
            with fs.open_input_stream(inner) as fh:
                frame, where = read_xlsx(fh.read(), path)
            return Raw(frame, where, None, list(frame.columns), lambda i: frame.iloc[i])
        if suffix in {".parquet", ".pq"}:
            # text columns of ids, sites and families repeat on every row: read them dictionary
            # encoded (pandas categoricals, one string per distinct value); date32 columns as
            # datetime64 (not datetime.date objects, which would be parsed as text)
            with fs.open_input_file(inner) as fh:
                schema = pq.read_schema(fh)
                header = [n for n in schema.names if not n.startswith("__index_level_")]  # a pandas index
                wanted = [header[k] for k in used(header)]
                ids = {n for n in wanted if n.strip() in REQUIRED[:1] + OPTIONAL}
                text = [f.name for f in schema if f.name in ids
                        and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
                pf = pq.ParquetFile(fh, read_dictionary=text or None)
                # one column at a time, its Arrow buffers handed back to the OS as soon as it is
                # converted: the reading never holds the whole table twice
                columns = {}
                for name in wanted:
                    column = pf.read(columns=[name]).column(0)
                    columns[name] = column.to_pandas(date_as_object=False)
                    del column
                    pa.default_memory_pool().release_unused()
            frame = pd.DataFrame(columns, index=pd.RangeIndex(pf.metadata.num_rows), copy=False)
            return Raw(frame, lambda row: f"row {row + 1}", False, header,
                       lambda i: _parquet_row(fs, inner, i))
    except InputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise read_failed(path, exc) from None
    raise InputError(f"{path}: unsupported file type {suffix!r}; use .csv, .parquet or .xlsx")


def _parquet_row(fs: object, inner: str, row: int) -> pd.Series:
    """A Parquet file's row in every column (its row group read; for an error message's hint)."""
    with fs.open_input_file(inner) as fh:  # type: ignore[attr-defined]
        pf = pq.ParquetFile(fh)
        for g in range(pf.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if row < n:
                return pd.Series(pf.read_row_group(g).slice(row, 1).to_pylist()[0], dtype=object)
            row -= n
    return pd.Series(dtype=object)


def _where(path: str, locate: Locate, row: int) -> str:
    return f"{path}: {locate(row)}"


# a time of day's UTC offset (or Z): dropped, so that each date is the day it was written on
_OFFSET = r"(\d\d:\d\d(?::\d\d(?:\.\d+)?)?)\s*(?:Z|[+-]\d\d(?::?\d\d)?)$"


# dd/mm/yyyy, also with the time of day that Excel writes for a date-time cell
_DAY_FIRST = ("%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S")


def text_dates(text: pd.Series) -> pd.Series:
    """Dates written as text: ISO (yyyy-mm-dd, with a time of day and an offset or not), and
    what is not ISO as dd/mm/yyyy (Brazilian exports), each layout read strictly; anything else
    is missing (an error upstream). Never guessed value by value: pandas' "mixed" format read
    05/03/2024 as 3 May and 13/03/2024 as 13 March in one column."""
    wall = text.str.replace(_OFFSET, r"\1", regex=True)
    dates = pd.to_datetime(wall, errors="coerce", format="ISO8601")
    for layout in _DAY_FIRST:
        rest = dates.isna() & wall.notna()
        if not rest.any():
            break
        dates[rest] = pd.to_datetime(wall[rest], errors="coerce", format=layout)
    return dates


_SLASHED = r"^(\d\d?)/(\d\d?)/(\d{4})(?:\s.*)?$"  # a/b/yyyy, a time of day or not
NOTED_MONTHS = 6  # distinct first fields of one year's slashed dates that get the note (5/3, 6/3, 7/3: none)
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")


def month_first_dates(text: pd.Series, path: str, notes: list[str] | None = None) -> None:
    """InputError when the distinct dates `text` read as dd/mm/yyyy are a US export's mm/dd/yyyy:
    every slashed date's first field 12 or less, its second the same for all (one day of each
    month under mm/dd: 11/01/2024, 12/01/2024 = 1 November, 1 December), 3 first fields at least,
    and more than one year (as dd/mm: days 1-12 of the same month in each year, a history no daily
    export has). Within one year (January 1-12, or a US year of months) a note says how they were
    read, from `NOTED_MONTHS` first fields on. Real dd/mm daily data (days past the 12th) and dd/mm
    monthly totals (01/11/2024, 01/12/2024) never trip it."""
    parts = text.str.extract(_SLASHED).dropna()
    if len(parts) < 3:
        return
    first, second, year = (parts[k].astype(int) for k in range(3))
    b = int(second.iat[0])
    if (first > 12).any() or (second != b).any() or first.nunique() < 3 or b > 12:
        return
    row = first.index[(first != b).to_numpy()][0]  # a date the two readings differ on
    example, a, month = str(text[row]), int(first[row]), _MONTHS[b - 1]
    if year.nunique() > 1:
        raise InputError(
            f"{path}: column 'date': dates such as {example!r} are mm/dd/yyyy (a US export, every date on "
            f"day {b} of its month), not dd/mm/yyyy (days 1-12 of {month} in each year): write them as "
            "yyyy-mm-dd (or dd/mm/yyyy)"
        )
    if notes is not None and first.nunique() >= NOTED_MONTHS:
        notes.append(f"{path}: column 'date': dates such as {example!r} were read as dd/mm/yyyy "
                     f"({a} {month}; all on days 1-12 of {month}); if they are mm/dd/yyyy "
                     f"({b} {_MONTHS[a - 1]}, a US export), write them as yyyy-mm-dd")


_WRITTEN = re.compile(r"(\d{4})-(\d\d)-(\d\d)(?:[T ].*)?|(\d\d)/(\d\d)/(\d{4})(?: .*)?")


def written_day(text: str) -> np.datetime64 | None:
    """The calendar day a text date spells (yyyy-mm-dd or dd/mm/yyyy, with a time of day or not),
    whatever its year; None when it spells none (31/02, a word)."""
    m = _WRITTEN.fullmatch(text.strip())
    if m is None:
        return None
    y, mo, d = (m[1], m[2], m[3]) if m[1] else (m[6], m[5], m[4])
    try:
        return np.datetime64(f"{int(y):04d}-{mo}-{d}", "D")
    except ValueError:
        return None


def _per_distinct(text: pd.Series, parse: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """`parse` applied to each distinct value of a text column once, spread back to the rows.

    Dates and quantities repeat on most rows (a 3-year daily history has 1095 distinct dates
    however many items it holds), and text parsing runs row by row in Python: a 2.2 M-row CSV
    took 8.4 s to read, 1.4 s parsed once per distinct value. Missing values stay missing."""
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    parsed = parse(pd.Series(uniques, dtype=object)).to_numpy()
    missing = np.array([np.datetime64("NaT") if parsed.dtype.kind == "M" else np.nan], dtype=parsed.dtype)
    # a missing value's code (-1) reads the appended missing entry
    return pd.Series(np.append(parsed, missing).take(codes), copy=False)


def _blank(value: object) -> bool:
    """A missing cell: null, NaN or empty text."""
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float) and np.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


# the days read as dates: the nanosecond range (1677-09-21 00:12 to 2262-04-11 23:47) less its
# first and last whole day, on which numpy's nanosecond-to-day cast wraps (a stamp of 1677-09-22
# 00:00:01 becomes 2262-04-11) and period numbers with it
FIRST_DAY, LAST_DAY = np.datetime64("1677-09-23", "D"), np.datetime64("2262-04-10", "D")


# Most one row may hold: a billion units of a spare part in a day is a code in the wrong column
# (a 13-digit barcode gave orders worth 7.8e13, and 1e300 overflowed every model to a failure).
MAX_QUANTITY = 1e9
DAY_BLOCK = 262_144  # rows converted at a time by `_day_stamps`


def _day_stamps(values: np.ndarray) -> pd.Series:
    """datetime64 values (any unit) as the datetime64[ns] midnight of their day, a block at a time
    (no day-resolution copy of the whole column beside the result); a day outside
    FIRST_DAY..LAST_DAY becomes missing (the caller names it)."""
    out = np.empty(len(values), dtype="datetime64[ns]")
    for k in range(0, len(values), DAY_BLOCK):
        days = values[k : k + DAY_BLOCK].astype("datetime64[D]")
        days[(days < FIRST_DAY) | (days > LAST_DAY)] = np.datetime64("NaT")
        out[k : k + DAY_BLOCK] = days
    return pd.Series(out, copy=False)


def _stripped(col: pd.Series) -> pd.Categorical:
    """`col` as stripped strings, categorical with sorted categories (NaN where missing): ids,
    sites and families repeat on every row, so each distinct value is converted and stored once
    (2.2 M rows: a few MiB of codes instead of a Python object per row)."""
    if isinstance(col.dtype, pd.CategoricalDtype):  # read dictionary-encoded: its small codes
        codes, uniques = col.cat.codes.to_numpy(), col.cat.categories
    else:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
    clean = pd.Index(uniques).astype("string").str.strip().astype(object)
    # values equal once stripped (" A" and "A") share one category; sorted, so that sorting the
    # column orders it like text
    merged, categories = pd.factorize(clean, sort=True)
    # one lookup per row in a table of the distinct values, whose last entry (-1) is what a
    # missing value's code (-1) reads: no row-sized temporaries beyond the result
    lookup = np.append(merged, -1).astype(np.int32)
    return pd.Categorical.from_codes(lookup[codes], categories=pd.Index(categories, dtype=object))


def _missing_or_empty(values: pd.Categorical) -> np.ndarray:
    """Rows of a `_stripped` column that are missing or the empty string."""
    bad = values.codes < 0
    empty = np.flatnonzero(values.categories == "")
    return bad | (values.codes == empty[0]) if len(empty) else bad


def _fill_empty(values: pd.Categorical) -> pd.Categorical:
    """Missing values of a `_stripped` column as the empty string (still sorted categories)."""
    if not (values.codes < 0).any():
        return values
    if "" not in values.categories:
        values = values.add_categories([""]).reorder_categories(sorted([*values.categories, ""]))
    return values.fillna("")


def read_demand(path: str | Path, notes: list[str] | None = None, columns: str = "") -> pd.DataFrame:
    """Validated demand: item_id, date (datetime64), quantity (float >= 0), optional site and family;
    the text columns are categoricals of stripped strings with sorted categories.

    Raises InputError with a one-line message naming the file and the row or column. `notes`
    gets what was read one way where another was possible (points read as thousands separators).
    `columns`: renames of the file's columns (`[paths] columns`, "codigo_item=item_id,data=date").
    """
    path = str(path)
    raw, locate, decimal_comma, header, row_of = _read_raw(path, columns)
    names = canonical_columns(header, KNOWN, columns)
    problem = clashing_columns(header, names, KNOWN) or missing_columns(names, REQUIRED)
    if problem:
        raise InputError(f"{path}: {problem}")
    rename = dict(zip(header, names, strict=True))
    raw.columns = [rename.get(str(c), str(c)) for c in raw.columns]

    def hint(i: int) -> str:
        return totals_hint(row_of(i))

    if len(raw) == 0:
        raise InputError(f"{path}: file is empty (no data rows)")

    item = _stripped(raw["item_id"])
    bad = _missing_or_empty(item)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{_where(path, locate, i)}: empty item_id in column 'item_id'{hint(i)}"
        )

    date_col = raw["date"]
    if isinstance(date_col.dtype, pd.DatetimeTZDtype):  # with a time zone: its wall-clock day
        date_col = date_col.dt.tz_localize(None)  # in its own unit: a year 3025 is named below
    day_only = pd.api.types.is_datetime64_dtype(date_col)  # Parquet dates: days, no text
    if day_only:  # days outside FIRST_DAY..LAST_DAY become missing (reported below)
        dates = _day_stamps(date_col.to_numpy())
    else:
        def parse(distinct: pd.Series) -> pd.Series:
            text = distinct.astype("string").str.strip()
            month_first_dates(text, path, notes)
            return text_dates(text)

        dates = _per_distinct(date_col, parse)
    bad = dates.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        if _blank(date_col.iloc[i]):
            raise InputError(
                f"{_where(path, locate, i)}: missing date in column 'date'{hint(i)}"
            )
        # a date the file holds as one, or a well-formed one in text, outside the days read
        day = np.datetime64(date_col.to_numpy()[i], "D") if day_only else written_day(str(date_col.iloc[i]))
        if day is not None and not FIRST_DAY <= day <= LAST_DAY:
            raise InputError(
                f"{_where(path, locate, i)}: date {day} in column 'date' lies outside "
                f"{FIRST_DAY}..{LAST_DAY}: a mistyped year?"
            )
        raise InputError(
            f"{_where(path, locate, i)}: cannot parse date {str(date_col.iloc[i])!r} "
            f"in column 'date' (expected yyyy-mm-dd or dd/mm/yyyy){hint(i)}"
        )
    del raw["date"], date_col  # validated: the file's dates go (a totals row's word is in another column)
    if getattr(dates.dt, "tz", None) is not None:  # text with a UTC offset: its own calendar day
        dates = dates.dt.tz_localize(None)
    today = pd.Timestamp(clock.today())
    late = (dates >= today + pd.Timedelta(days=2)).to_numpy()  # a day's grace for time zones
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise InputError(
            f"{_where(path, locate, i)}: date {dates.iat[i].date()} in column 'date' is after today "
            f"({today.date()}): a mistyped year?"
        )

    qty_col = raw["quantity"]
    if pd.api.types.is_numeric_dtype(qty_col) and not pd.api.types.is_bool_dtype(qty_col):
        qty = pd.Series(qty_col.to_numpy(dtype="float64"), copy=False)
        bad_num = qty.isna().to_numpy()
    else:
        label = f"{path}: column 'quantity'"
        qty = _per_distinct(qty_col, lambda u: text_numbers(u, decimal_comma, notes, label))
        bad_num = qty.isna().to_numpy()
    if bad_num.any():
        i = int(np.flatnonzero(bad_num)[0])
        if _blank(qty_col.iloc[i]):
            hint = hint(i)
            raise InputError(f"{_where(path, locate, i)}: missing quantity in column 'quantity'{hint}")
        raise InputError(
            f"{_where(path, locate, i)}: quantity {str(qty_col.iloc[i])!r} in column 'quantity' "
            f"is not a number{hint(i)}"
        )
    bad = (~np.isfinite(qty.to_numpy())) | (qty.to_numpy() < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        returned = " (a return? net returns against that day's withdrawals, or leave them out)"
        raise InputError(
            f"{_where(path, locate, i)}: quantity {qty.iloc[i]:g} in column 'quantity' must be "
            f"finite and >= 0{returned if qty.iloc[i] < 0 else ''}"
        )
    huge = qty.to_numpy() > MAX_QUANTITY
    if huge.any():  # a barcode or a part number pasted into the column: orders worth 10^13 otherwise
        i = int(np.flatnonzero(huge)[0])
        raise InputError(
            f"{_where(path, locate, i)}: quantity {str(qty_col.iloc[i])!r} in column 'quantity' is over "
            f"{MAX_QUANTITY:.0e} for one row (a code in the quantity column?)"
        )

    columns = {
        "item_id": item,
        "date": (dates if day_only else dates.dt.normalize()).to_numpy(),
        "quantity": qty.to_numpy(),
    }
    del dates, qty, qty_col, bad, bad_num, late
    for col in OPTIONAL:
        if col in raw.columns:
            columns[col] = _fill_empty(_stripped(raw[col]))
    del raw
    out = pd.DataFrame(columns, copy=False)
    key = ["item_id", "date"] + (["site"] if "site" in out.columns else [])
    if _any_duplicate(out, key):  # the rows, for the message, only then
        dup = out.duplicated(key, keep=False).to_numpy()
        rows = np.flatnonzero(dup)
        first = rows[0]
        same = rows[np.logical_and.reduce([out[c].to_numpy()[rows] == out[c].to_numpy()[first] for c in key])]
        a, b = (locate(int(r)) for r in same[:2])
        values = [repr(out["item_id"].iat[first]), str(out["date"].iat[first].date())]
        values += [repr(out["site"].iat[first])] if "site" in key else []
        raise InputError(
            f"{path}: {a} and {b}: duplicate {'/'.join(key)} ({', '.join(values)}): one row each "
            "(add up a day's withdrawals first)"
        )
    return out


def _any_duplicate(df: pd.DataFrame, key: list[str]) -> bool:
    """Whether two rows share `key` (categorical columns and the date): one integer key per row
    (4 bytes while the combined range fits) and a sort, not a hash table of the rows (a pandas
    `duplicated` is the fallback); the dates are turned into day numbers a block at a time."""
    sizes: list[tuple[int, int]] = []  # per column: its range of values and the lowest day
    bound = 1
    for col in key:
        values = df[col]
        if isinstance(values.dtype, pd.CategoricalDtype):
            sizes.append((len(values.cat.categories) + 1, 0))
        else:  # day numbers from the first day, their range from the day numbers themselves
            d = values.to_numpy()  # (numpy's ns -> D cast of one value wraps at the range's start)
            lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
            for k in range(0, len(d), HASH_BLOCK):
                day = d[k : k + HASH_BLOCK].astype("datetime64[D]").view(np.int64)
                lo, hi = min(lo, int(day.min())), max(hi, int(day.max()))
            lo, hi = (lo, hi) if len(d) else (0, 0)
            sizes.append((hi - lo + 1, lo))
        bound *= sizes[-1][0]
        if bound >= 2**62:
            return bool(df.duplicated(key).any())
    dtype = np.int32 if bound < 2**31 else np.int64
    combined = np.zeros(len(df), dtype=dtype)
    for col, (size, lo) in zip(key, sizes, strict=True):
        values = df[col]
        combined *= size
        if isinstance(values.dtype, pd.CategoricalDtype):
            combined += values.cat.codes.to_numpy()  # -1 (missing) never occurs: filled or refused
        else:
            days = values.to_numpy()
            for k in range(0, len(days), HASH_BLOCK):
                block = days[k : k + HASH_BLOCK].astype("datetime64[D]").view(np.int64) - lo
                combined[k : k + HASH_BLOCK] += block.astype(dtype)
    combined.sort()
    return bool((combined[1:] == combined[:-1]).any())


def lone_first_rows(df: pd.DataFrame, path: str, gap_days: int = 365, shown: int = 5) -> list[str]:
    """Warnings for items whose first row lies over `gap_days` before their next one (a mistyped
    year, 2014 for 2024, starts the item's series a decade of zeros early), at most `shown` of
    them and a count of the rest. Two grouped minima over the day numbers, no sort."""
    codes = df["item_id"].cat.codes.to_numpy()
    days = df["date"].to_numpy().astype("datetime64[D]").view(np.int64)
    n = len(df["item_id"].cat.categories)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, codes, days)
    later = np.where(days == first[codes], np.iinfo(np.int64).max, days)
    second = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(second, codes, later)
    lone = np.flatnonzero((second != np.iinfo(np.int64).max) & (second - first > gap_days))
    out = []
    for k in lone[:shown]:
        a, b = (np.datetime64(int(d), "D") for d in (first[k], second[k]))
        item, gap = df["item_id"].cat.categories[k], int(second[k] - first[k])
        out.append(
            f"{path}: item {item!r}: its first row ({a}) is {gap} days before its next ({b}); "
            "a mistyped year? Its series starts there"
        )
    if len(lone) > shown:
        out.append(f"{path}: {len(lone) - shown} more items with such a lone first row")
    return out


def stopped_items(df: pd.DataFrame, path: str, end: pd.Timestamp | None = None, gap_days: int = 7,
                  window: int = 28, dense: float = 0.8, shown: int = 5) -> list[str]:
    """A warning for items whose rows stop over `gap_days` before the file's last date although they
    had rows on at least `dense` of the `window` days before their last one (a partial export: one
    site's or family's rows missing lately; their missing days count as zero demand and the
    forecast drops without a word). Items with rows on few days (an ERP writes only days with
    consumption) are not suspect. `end`: the file's last date (default: the last of `df`)."""
    if df.empty:
        return []
    codes = df["item_id"].cat.codes.to_numpy()
    days = df["date"].to_numpy().astype("datetime64[D]").view(np.int64)
    n = len(df["item_id"].cat.categories)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, codes, days)
    end = int(days.max() if end is None else np.datetime64(pd.Timestamp(end).date(), "D").astype(np.int64))
    recent = days > last[codes] - window  # a row in its item's last `window` days
    counts = np.bincount(codes[recent], minlength=n)  # rows there (one per day, or per day and site)
    stopped = np.flatnonzero((end - last > gap_days) & (counts >= dense * window))
    if not len(stopped):
        return []
    cats = df["item_id"].cat.categories
    names = [f"{cats[k]} ({np.datetime64(int(last[k]), 'D')})" for k in stopped[:shown]]
    more = f" and {len(stopped) - shown} more" if len(stopped) > shown else ""
    return [f"{path}: {len(stopped)} item(s) with rows on most days stop over {gap_days} days before the "
            f"file's last date {np.datetime64(end, 'D')}: {', '.join(names)}{more}; their days since count "
            "as zero demand: a partial export?"]


def select_items(df: pd.DataFrame, items: list[str] | None, source: str = "--items") -> pd.DataFrame:
    """Keep only `items`; an unknown item is an InputError with close matches suggested."""
    if not items:
        return df
    known = pd.unique(df["item_id"])
    known_set = set(known)
    for item in items:
        if item not in known_set:
            close = difflib.get_close_matches(item, list(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputError(f"unknown item {item!r} in {source}{hint}")
    return _rows_of(df, items)


def _rows_of(df: pd.DataFrame, items: Collection[str]) -> pd.DataFrame:
    out = df[df["item_id"].isin(list(items))].reset_index(drop=True)
    for col in ("item_id",) + OPTIONAL:  # unused categories would come back as empty groups
        if col in out.columns and isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].cat.remove_unused_categories()
    return out


def same_data(df: pd.DataFrame, items: Collection[str], expected: str) -> bool:
    """Whether `df` is the demand of a run whose dataset id is `expected`: the whole table, or
    (a run over some items, `--items`) its rows of the run's `items`."""
    if dataset_id(df) == expected:
        return True
    sub = _rows_of(df, items)
    return len(sub) > 0 and dataset_id(sub) == expected


def dataset_id(df: pd.DataFrame) -> str:
    """A short content hash of the validated demand table."""
    import hashlib

    h = hashlib.sha256()
    key = ["item_id", "date", "quantity"]  # selected a block at a time: df[key] copies every row
    ids = df["item_id"]
    if isinstance(ids.dtype, pd.CategoricalDtype) and ids.cat.categories.is_monotonic_increasing:
        # row hashes in (item, date) order: hashing is row by row, so the rows are hashed a block
        # of the sort order at a time (no sorted copy of the table, no hash array of every row)
        days, codes = df["date"].to_numpy().view(np.int64), ids.cat.codes.to_numpy()
        in_order = bool(
            ((codes[1:] > codes[:-1]) | ((codes[1:] == codes[:-1]) & (days[1:] >= days[:-1]))).all()
        )
        order = None if in_order else np.lexsort((days, codes))  # a file sorted by item and date: none
        for k in range(0, len(df), HASH_BLOCK):
            rows = df.iloc[k : k + HASH_BLOCK] if order is None else df.take(order[k : k + HASH_BLOCK])
            h.update(pd.util.hash_pandas_object(rows[key], index=False).to_numpy().tobytes())
    else:
        rows = pd.util.hash_pandas_object(df[key].sort_values(["item_id", "date"]), index=False).to_numpy()
        h.update(rows.tobytes())
    return h.hexdigest()[:16]


HASH_BLOCK = 262_144  # rows hashed at a time by `dataset_id`


SPILL_ROW_GROUP = 65_536  # rows per row group of a spilled table


def spill_columns(demand: pd.DataFrame, columns: tuple[str, ...], path: Path) -> pl.LazyFrame:
    """Write the given columns (those present) of a validated demand table to a Parquet file
    through Arrow, whose memory the caller can hand back at once, and return a LazyFrame over it:
    a long run then does not hold them while it fits, and reads back only what it queries."""
    cols = [c for c in columns if c in demand.columns]
    writer = None
    try:  # a row group at a time: no copy of the whole columns in pandas, then again in Arrow
        for k in range(0, max(len(demand), 1), SPILL_ROW_GROUP):
            part = pa.Table.from_pandas(demand.iloc[k : k + SPILL_ROW_GROUP][cols], preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, part.schema)
            writer.write_table(part)
    finally:
        if writer is not None:
            writer.close()
    return pl.scan_parquet(path)
