"""Read and validate the stock snapshot (CSV, Parquet or an Excel workbook): one row per item (and site).

Required: item_id, on_hand, lead_time_days. Optional: site, on_order, unit_cost, order_cost,
holding_cost_rate, min_order_qty, pack_size, service_level, on_order_due (a date; empty cells mean
"use the default").
Errors are InputError with one line naming the file, the line (CSV) or row (Parquet) and the column.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow.parquet as pq

from .columns import canonical_columns, clashing_columns, missing_columns
from .csv_text import line_finder, read_text_csv, text_numbers, totals_hint
from .demand import FIRST_DAY, LAST_DAY, text_dates, written_day
from .errors import InputError, Locate
from .excel import SUFFIXES as EXCEL
from .excel import read_xlsx
from .source import open_source, read_failed, read_source, sibling, source_exists, suffix

REQUIRED = ("item_id", "on_hand", "lead_time_days")
# column -> (lowest allowed, lowest inclusive, highest allowed or None, highest inclusive)
NUMERIC: dict[str, tuple[float, bool, float | None, bool]] = {
    "on_hand": (-math.inf, True, None, False),  # below 0: units owed (an ERP's negative stock, backorders)
    "lead_time_days": (0.0, True, 3650.0, True),  # ten years: beyond, a typo (and a huge bootstrap)
    "on_order": (0.0, True, None, False),
    "unit_cost": (0.0, True, None, False),
    "order_cost": (0.0, True, None, False),
    "holding_cost_rate": (0.0, False, None, False),
    "min_order_qty": (0.0, True, None, False),
    "pack_size": (0.0, False, None, False),
    "service_level": (0.0, False, 1.0, False),
}
DUE = "on_order_due"  # when the open orders are expected (a date; empty: at the end of the lead time)
COLUMNS = ("item_id", "site", *NUMERIC, DUE)


def _read_raw(path: str) -> tuple[pd.DataFrame, Locate, bool | None]:
    """Every column of a CSV as text (or a Parquet file as stored); where each row is in the file,
    and whether its numbers use a decimal comma. `path`: a local path or a URI (s3://...)."""
    fs, inner, size = open_source(path)
    if size == 0:
        raise InputError(f"{path}: file is empty")
    ext = suffix(path)
    try:
        if ext in {".csv", ".txt", ".gz"}:  # a .gz stream is decompressed by pyarrow (by its name)
            text = read_text_csv(lambda: fs.open_input_stream(inner), path)
            return text.frame, lambda row: f"line {text.line(row)}", text.decimal_comma
        if ext in EXCEL:
            frame, located = read_xlsx(read_source(path), path)
            return frame, located, None
        if ext in {".parquet", ".pq"}:
            with fs.open_input_file(inner) as fh:
                return pq.read_table(fh).to_pandas(), lambda row: f"row {row + 1}", False
    except InputError:
        raise
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        raise read_failed(path, exc) from None
    raise InputError(f"{path}: unsupported file type {ext!r}; use .csv, .parquet or .xlsx")


def locator(path: Path | str) -> Locate:
    """0-based data row -> 'line N' (CSV, its own line in the file) or 'row N' (Parquet; the
    sheet's row for a workbook), for messages about rows read earlier."""
    ext = suffix(path)
    if ext in {".csv", ".txt", ".gz"}:
        fs, inner, _ = open_source(path)
        line = line_finder(lambda: fs.open_input_stream(inner))
        return lambda row: f"line {line(row)}"
    if ext in EXCEL:  # the sheet's own rows, past dropped empty ones
        return read_xlsx(read_source(path), str(path))[1]
    return lambda row: f"row {row + 1}"


def _bounds_text(lo: float, lo_inc: bool, hi: float | None, hi_inc: bool) -> str:
    if hi is None and lo == -math.inf:
        return "finite"
    if hi is not None:
        return f"between {lo:g} and {hi:g} (exclusive)" if not (lo_inc or hi_inc) else f"in [{lo:g}, {hi:g}]"
    return f">= {lo:g}" if lo_inc else f"> {lo:g}"


def _numbers(
    raw: pd.DataFrame, col: str, path: Path, where: Locate, required: bool,
    decimal_comma: bool | None = False, notes: list[str] | None = None,
) -> np.ndarray:
    """The column as float64 (NaN = empty, allowed only when not required), range-checked."""
    s = raw[col]
    if pd.api.types.is_bool_dtype(s):
        s = s.astype("string")
    if pd.api.types.is_numeric_dtype(s):
        v = s.astype("float64").to_numpy()
        empty = np.isnan(v)
        bad = np.zeros(len(v), dtype=bool)
    else:
        text = s.astype("string").fillna("").str.strip()
        empty = (text == "").to_numpy()
        percent = text.str.endswith("%").to_numpy() if col == "service_level" else np.zeros(len(text), bool)
        if percent.any():  # "98%" (or "97,5 %") as a spreadsheet writes a percentage
            text = text.str.removesuffix("%").str.strip()
        v = text_numbers(text, decimal_comma, notes, f"{path}: column {col!r}").to_numpy()
        v[percent] /= 100.0
        bad = np.isnan(v) & ~empty
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: {where(i)}: {col} {str(s.iloc[i]).strip()!r} in column {col!r} "
                         f"is not a number{totals_hint(raw.iloc[i])}")
    if required and empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"{path}: {where(i)}: empty value in required column {col!r}"
                         f"{totals_hint(raw.iloc[i])}")
    lo, lo_inc, hi, hi_inc = NUMERIC[col]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(v) & ((v >= lo) if lo_inc else (v > lo))
        if hi is not None:
            ok &= (v <= hi) if hi_inc else (v < hi)
    if col == "lead_time_days":
        with np.errstate(invalid="ignore"):
            ok &= np.floor(v) == v
    bad = ~ok & ~empty
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rule = "a whole number in [0, 3650]" if col == "lead_time_days" else _bounds_text(*NUMERIC[col])
        rule = rule if np.isfinite(v[i]) or rule == "finite" else f"finite and {rule}"
        raise InputError(f"{path}: {where(i)}: {col} {v[i]:g} in column {col!r} must be {rule}")
    return v


def read_stock(path: str | Path, notes: list[str] | None = None, columns: str = "") -> pl.DataFrame:
    """Validated stock: item_id, site ('' when absent), on_hand, lead_time_days (Int64) and the optional
    columns as Float64 (null = use the default), in file order.

    Raises InputError with a one-line message naming the file, the line or row, and the column.
    `notes` gets what was read one way where another was possible (points read as thousands).
    `columns`: renames of the file's columns (`[paths] columns`, "saldo=on_hand").
    """
    path = str(path)
    raw, where, decimal_comma = _read_raw(path)
    original = list(raw.columns)
    raw.columns = canonical_columns(original, COLUMNS, columns)
    problem = clashing_columns(original, raw.columns, COLUMNS) or missing_columns(raw.columns, REQUIRED)
    if problem:
        raise InputError(f"{path}: {problem}")
    if len(raw) == 0:
        raise InputError(f"{path}: file is empty (no data rows)")
    item = raw["item_id"].astype("string").fillna("").str.strip()
    bad = (item == "").to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: {where(i)}: empty item_id in column 'item_id'{totals_hint(raw.iloc[i])}")
    site = (raw["site"].astype("string").fillna("").str.strip() if "site" in raw.columns
            else pd.Series([""] * len(raw), dtype="string"))
    cols: dict[str, object] = {"item_id": item.astype(str).to_numpy(), "site": site.astype(str).to_numpy()}
    for col in NUMERIC:
        if col in raw.columns:
            cols[col] = _numbers(raw, col, path, where, col in REQUIRED, decimal_comma, notes)
        else:
            cols[col] = np.full(len(raw), np.nan)
    cols[DUE] = _due_dates(raw, path, where) if DUE in raw.columns else np.full(len(raw), None, dtype=object)
    key = pd.DataFrame({"item_id": cols["item_id"], "site": cols["site"]})
    dup = key.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        first = int(rows[0])
        same = rows[(key["item_id"].to_numpy()[rows] == key["item_id"].iat[first])
                    & (key["site"].to_numpy()[rows] == key["site"].iat[first])]
        a, b = (where(int(r)) for r in same[:2])
        raise InputError(f"{path}: {a} and {b}: duplicate item_id/site "
                         f"({key['item_id'].iat[first]!r}, {key['site'].iat[first]!r})")
    blank = (key["site"] == "").to_numpy()
    named = set(key["item_id"].to_numpy()[~blank])
    both = [i for i, item in enumerate(key["item_id"].to_numpy()) if blank[i] and item in named]
    if both:  # a row for the whole item beside its sites' rows: its demand would be counted twice
        i = both[0]
        sites = sorted(key["site"].to_numpy()[(key["item_id"] == key["item_id"].iat[i]).to_numpy() & ~blank])
        raise InputError(f"{path}: {where(i)}: item {key['item_id'].iat[i]!r} has a row without a site "
                         f"beside rows for its sites ({', '.join(sites[:5])}): give its site, or one row "
                         "for the whole item")
    df = pl.DataFrame({c: cols[c] for c in COLUMNS if c != DUE}, nan_to_null=True)
    due = pl.Series(DUE, list(cols[DUE]), dtype=pl.Date)
    return df.with_columns(pl.col("lead_time_days").cast(pl.Int64), due)


def _due_dates(raw: pd.DataFrame, path: str, where: Locate) -> np.ndarray:
    """The `on_order_due` column as dates (objects, None where empty): ISO or dd/mm/yyyy text, or
    dates as a Parquet or Excel file stores them (with a time zone: the wall-clock day). A day
    outside the days pandas holds (a mistyped year, 3025) is an InputError naming the row."""
    col = raw[DUE]
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(col):  # in the file's own unit: no nanosecond overflow
        days = col.to_numpy().astype("datetime64[D]")
        empty = np.isnat(days)
    else:
        values = col.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else v)
        text = values.astype("string").str.strip()
        empty = (text.isna() | (text == "")).to_numpy()
        parsed = text_dates(text.where(~pd.Series(empty, index=text.index)))
        bad = parsed.isna().to_numpy() & ~empty
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            day = written_day(str(text.iat[i]))
            if day is None:
                raise InputError(f"{path}: {where(i)}: {DUE} {text.iat[i]!r} in column {DUE!r} is not a date "
                                 "(yyyy-mm-dd or dd/mm/yyyy)")
            days = np.full(len(text), np.datetime64("NaT"), dtype="datetime64[D]")
            days[i] = day  # named below
        else:
            days = parsed.to_numpy().astype("datetime64[D]")
    far = ~empty & ((days < FIRST_DAY) | (days > LAST_DAY))
    if far.any():
        i = int(np.flatnonzero(far)[0])
        raise InputError(f"{path}: {where(i)}: {DUE} {days[i]} in column {DUE!r} lies outside "
                         f"{FIRST_DAY}..{LAST_DAY}: a mistyped year?")
    out = days.astype(object)
    out[empty] = None
    return out


def unknown_items(path: str | Path, stock: pl.DataFrame, known: Iterable[str]) -> list[str]:
    """One warning per stock row whose item has no forecast (those rows get no recommendation)."""
    known = set(known)
    unpadded = {k.lstrip("0"): k for k in known if k.lstrip("0") != k}
    out = []
    where: Locate | None = None
    for i, item in enumerate(stock["item_id"].to_list()):
        if item not in known:
            where = where or locator(path)
            twin = unpadded.get(item.lstrip("0")) if item.isdigit() else None
            hint = f" (the forecast has {twin!r}: leading zeros lost, by Excel?)" if twin else ""
            out.append(f"{path}: {where(i)}: item_id {item!r} in column 'item_id' is not in the forecast; "
                       f"skipped{hint}")
    return out


def check_matches(path: str | Path, stock: pl.DataFrame, known: Iterable[str], shown: int = 3) -> list[str]:
    """InputError when no stock row's item is in the forecast (a wrong file, or other item codes:
    its recommendations would all be skipped); else a warning naming the forecast's items that
    have no stock row (they get no recommendation), or none."""
    known = set(known)
    stocked = set(stock["item_id"].to_list())
    if stock.height and not stocked & known:
        theirs = ", ".join(repr(x) for x in sorted(stocked)[:shown])
        ours = ", ".join(repr(x) for x in sorted(known)[:shown])
        raise InputError(f"{path}: none of its {len(stocked)} items is in the forecast (the file has "
                         f"{theirs}{', ...' if len(stocked) > shown else ''}; the forecast {ours}"
                         f"{', ...' if len(known) > shown else ''}): the wrong file, or other item codes?")
    missing = sorted(known - stocked)
    if not missing:
        return []
    names = ", ".join(missing[:shown]) + (", ..." if len(missing) > shown else "")
    return [f"{path}: {len(missing)} forecast item(s) have no stock row and get no recommendation: {names}"]


def resolve_stock_path(stock: str | None, data: str | None) -> str | None:
    """`stock` when given, else `stock.parquet` (or `stock.csv`) in the folder of `data` (or beside
    its object: s3://bucket/in/stock.parquet for s3://bucket/in/demand.csv) when present, else None."""
    if stock:
        return str(stock)
    if data:
        for name in ("stock.parquet", "stock.csv"):
            p = sibling(data, name)
            if source_exists(p):
                return p
    return None
