"""Anatel 5G roll-out CSV (date + cumulative counts) -> daily forward-filled ``g5_<name>`` columns."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pandas as pd

from . import (
    EtlError,
    csv_rows,
    daily_ffill,
    merge_daily,
    normalize,
    number_style,
    parse_numbers,
    read_text,
    short,
    slug,
    source_files,
)

DATE_NAMES = ("DATA", "DATE", "MES", "MONTH")
DATE_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%Y-%m", "%m/%Y", "%Y/%m/%d", "%Y/%m")
MONTH_FORMATS = ("%Y-%m", "%m/%Y", "%Y/%m")


def parse_date(text: str, month_end: bool = False) -> datetime | None:
    """``yyyy-mm-dd``, ``dd/mm/yyyy``, ``yyyy-mm``, ``mm/yyyy`` or ISO datetime. A month alone is
    its 1st day, or with `month_end` its last (a count "of March" is the state at March's end:
    dated the 1st, the whole month would see it before it existed)."""
    text = text.strip()
    for fmt in DATE_FORMATS:
        try:
            day = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if month_end and fmt in MONTH_FORMATS:
            day = (pd.Timestamp(day) + pd.offsets.MonthEnd(0)).to_pydatetime()
        return day
    try:
        return datetime.fromisoformat(text).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    except ValueError:
        return None


def read_table(path: Path, text: str) -> tuple[str, list[str], list[tuple[int, list[str]]]]:
    """Delimited text (``;`` or ``,``, sniffed from the header) -> (delimiter, header, [(line, fields)])."""
    first = next(line for line in text.splitlines() if line.strip())
    delimiter = ";" if first.count(";") >= first.count(",") else ","
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    for line_num, fields in csv_rows(text, path, delimiter):
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [h.strip() for h in fields]
            while header and not header[-1]:
                header.pop()
            continue
        while len(fields) > len(header) and not fields[-1].strip():
            fields = fields[:-1]  # trailing separator
        if len(fields) != len(header):
            raise EtlError(
                f"expected {len(header)} {delimiter!r}-separated fields like the header, got {len(fields)}",
                path,
                line_num,
            )
        rows.append((line_num, fields))
    if header is None or not rows:
        raise EtlError("no data rows after the header", path, 1)
    return delimiter, header, rows


def numeric_frame(
    path: Path,
    header: list[str],
    rows: list[tuple[int, list[str]]],
    date_pos: int,
    dates: list[datetime],
    names: list[str],
    dot_is_thousands: bool,
) -> pd.DataFrame:
    """Columns other than the date column -> floats named `names`; bad values raise EtlError.

    A value grouped like thousands (``1.250``, ``1,250``) is read as its column's other values
    show (`number_style`), else as the file's convention: points group thousands with
    `dot_is_thousands` (``;`` files), else commas do."""
    lines = [line for line, _ in rows]
    out = pd.DataFrame({"date": pd.to_datetime(dates)})
    for i, (col, name) in enumerate(zip(header, names, strict=True)):
        if i == date_pos:
            continue
        values = pd.Series([f[i] for _, f in rows], dtype=object)
        dots, commas = number_style(values.unique(), dot_is_thousands, not dot_is_thousands)
        parsed = parse_numbers(values, lines, path, col, dot_is_thousands=dots, comma_is_thousands=commas)
        out[name] = parsed.to_numpy()
    return out


def parse_dates(
    path: Path, rows: list[tuple[int, list[str]]], pos: int, column: str, month_end: bool = False
) -> list[datetime]:
    """The date column of `rows` parsed with :func:`parse_date`; the first bad one raises EtlError."""
    out = []
    for line, fields in rows:
        d = parse_date(fields[pos], month_end)
        if d is None:
            raise EtlError(
                f"unparsable date {short(fields[pos])} (expected yyyy-mm-dd, dd/mm/yyyy, yyyy-mm or mm/yyyy)",
                path,
                line,
                column,
            )
        if not EARLIEST <= d <= LATEST:  # "0024-01-01", an "open end" 31/12/9999: a day-long table
            raise EtlError(
                f"date {short(fields[pos])} outside {EARLIEST:%Y-%m-%d}..{LATEST:%Y-%m-%d}: a mistyped year?",
                path,
                line,
                column,
            )
        out.append(d)
    return out


EARLIEST, LATEST = datetime(1900, 1, 1), datetime(2100, 12, 31)  # the dates a factor file may hold


def one_row_per_date(
    path: Path, rows: list[tuple[int, list[str]]], dates: list[datetime], column: str, hint: str
) -> None:
    """EtlError naming the second row of a date that two rows have (which one should win?)."""
    first: dict[datetime, int] = {}
    for (line, _), d in zip(rows, dates, strict=True):
        if d in first:
            raise EtlError(f"date {d:%Y-%m-%d} also on line {first[d]}: one row per date ({hint})",
                           path, line, column)
        first[d] = line


def read_anatel_file(path: str | Path) -> pd.DataFrame:
    """One roll-out CSV -> daily forward-filled ``date, g5_<column>`` (cumulative counts). A row
    dated by its month alone (``2024-03``, ``03/2024``) is the count at the month's end.

    With ``;`` as separator, points are thousands separators (``1.234`` = 1234) and the comma
    is the decimal mark; with ``,`` the point is the decimal mark.
    """
    path = Path(path)
    delimiter, header, rows = read_table(path, read_text(path))
    date_pos = next((i for i, h in enumerate(header) if normalize(h) in DATE_NAMES), None)
    if date_pos is None:
        raise EtlError(f"no date column (Data, data, date, Mês or mes) in header {short(header)}", path, 1)
    if len(header) < 2:
        raise EtlError("no count columns next to the date column", path, 1)
    names = [f"g5_{slug(h)}" for h in header]
    dup = {n for n in names if names.count(n) > 1}
    if dup or any(n == "g5_" for n in names):
        raise EtlError(f"column names must be distinct and non-empty, got {short(header)}", path, 1)
    dates = parse_dates(path, rows, date_pos, header[date_pos], month_end=True)
    # a table per state (long format) is not a national count: its last row of each date would
    # stand for the country
    one_row_per_date(path, rows, dates, header[date_pos],
                     "a table per state or municipality? add its counts up per date first")
    frame = numeric_frame(path, header, rows, date_pos, dates, names, dot_is_thousands=delimiter == ";")
    return daily_ffill(frame)


def load_anatel(src: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Roll-out files (a folder of *.csv, a file or a list) -> ``date`` + ``g5_*`` daily columns."""
    files = source_files(src, (".csv",))
    return merge_daily([read_anatel_file(f) for f in files], "anatel", files)
