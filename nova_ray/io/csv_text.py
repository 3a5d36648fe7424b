"""Input CSVs read as text (every column, or those a reader uses): demand history, stock snapshot."""

from __future__ import annotations

import codecs
import csv
import io
import warnings
from collections.abc import Callable
from typing import IO, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .errors import InputError

Opener = Callable[[], IO[bytes]]  # a fresh binary stream of the file at each call

ENCODINGS = ("utf-8", "cp1252", "latin-1")  # tried in turn: Windows exports (Excel's "CSV") are cp1252
# a number whose points may be thousands separators ("1.234", "12.500,5"; never "0.500")
_GROUPED = r"^[+-]?[1-9]\d{0,2}(?:\.\d{3})+(?:,\d*)?$"
# a number whose commas may be thousands separators ("1,234", "12,500.5"; never "0,5")
_COMMA_GROUPED = r"^[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?$"
_UTF16 = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # Excel's "Unicode text"


class TextCsv(NamedTuple):
    """A CSV's columns as text, named as in its header (those `select` picked); whether its numbers
    use a decimal comma (True: a `;`-separated file; None: a tab-separated one, decided per column
    by `text_numbers`); the file line of a data row (0-based row -> 1-based line, found on
    demand); the header's names, all of them; and a data row's values in every column (for a
    message's hint: a totals row's word may lie in a column not read)."""

    frame: pd.DataFrame
    decimal_comma: bool | None
    line: Callable[[int], int]
    header: list[str]
    row: Callable[[int], pd.Series]


Select = Callable[[list[str]], list[int]]  # the header's names -> the positions of the columns to read


def read_text_csv(open_file: Opener, name: str, select: Select | None = None) -> TextCsv:
    """Every column of a CSV as text (empty cells as ""), or those at the positions `select` gives
    for the header's names (an export's description columns cost 5x the time and memory of the
    three a reader uses, as Python strings).

    The separator is `,`, `;` or a tab, whichever the header line holds most of (a `;` file is what
    Excel writes in Brazilian Portuguese, with decimal commas); the encoding utf-8 (a BOM allowed),
    else cp1252, else latin-1, or utf-16 after its BOM. A header naming a column twice, or a row
    with more values than the header, is an InputError naming the line: pandas would otherwise
    rename the second column, or take the first column as the index and shift every value one
    column left, silently. An empty value past the last column (a separator at the end of the
    rows) is fine. Blank lines, and rows without a value in the columns read (`;;;;`: Excel's
    export of formatted empty cells), are skipped; error messages still give the file's own lines."""
    sep, encodings, header, width = _sniff(open_file)
    seen: set[str] = set()
    for column in header:
        if column in seen:
            raise InputError(f"{name}: column {column!r} appears twice in the header")
        seen.add(column)
    keep = sorted(set(select(header))) if select is not None and header else None
    if keep == list(range(width)):  # every column: pandas' own reading, which checks the rows
        keep = None
    for encoding in encodings:
        try:
            with warnings.catch_warnings(record=True) as caught, open_file() as fh:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                df = pd.read_csv(fh, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False,
                                 sep=sep, encoding=encoding, compression=None, usecols=keep)
            break
        except UnicodeDecodeError:
            continue
        except pd.errors.ParserError as exc:  # a row with a value too many, after the first
            if "fields in line" in str(exc) and (problem := _first_long_row(open_file, width, sep, encoding)):
                raise InputError(f"{name}: {problem}") from None
            raise
    else:  # only utf-16 can fail every time (latin-1 reads any byte)
        raise InputError(f"{name}: cannot decode the file as {' or '.join(encodings)}")
    if keep is None and any(issubclass(w.category, pd.errors.ParserWarning) and "does not match" in
                            str(w.message) for w in caught):
        problem = _first_long_row(open_file, len(df.columns), sep, encoding)
        raise InputError(f"{name}: {problem or f'a row has more values than the {len(df.columns)} columns'}")
    # pandas checks a row's values against the header's only when it reads every column
    if keep is not None and _any_long_row(open_file, sep, encoding, width):
        if problem := _first_long_row(open_file, width, sep, encoding):
            raise InputError(f"{name}: {problem}")
    if keep is not None:
        df.columns = [header[k] for k in keep]
    elif header and len(df.columns) >= len(header):  # the names as the header line has them, stripped
        df.columns = [*header, *df.columns[len(header):]]
    if len(df.columns):  # `;;;;` rows: blank to anyone who made the file in Excel (spaces: stripped)
        empty = (df.iloc[:, 0].fillna("") == "").to_numpy()  # one column first: most files have none
        if empty.any():
            rows = np.flatnonzero(empty)  # (a row shorter than the header: missing values, also blank)
            empty[rows] = (df.iloc[rows].fillna("") == "").all(axis=1).to_numpy()
            if empty.any():
                df = df[~empty].reset_index(drop=True)
    comma = True if sep == ";" else None if sep == "\t" else False
    return TextCsv(df, comma, _line_finder(open_file, sep, encoding, keep), header,
                   lambda i: _full_row(open_file, sep, encoding, keep, i))


def _sniff(open_file: Opener) -> tuple[str, tuple[str, ...], list[str], int]:
    """(separator, encodings to try, header names, the header line's fields): the separator is `,`,
    `;` or a tab, the one the header line holds most of (`,` on a tie); the names are decoded by
    the first encoding that reads the header line (a cp1252 `Código`), less empty trailing ones."""
    with open_file() as fh:
        head = fh.read(65536)
    if head.startswith(_UTF16):
        encodings: tuple[str, ...] = ("utf-16",)
        first = head.decode("utf-16", errors="ignore").split("\n", 1)[0]
    else:
        encodings = ENCODINGS
        line = head.removeprefix(codecs.BOM_UTF8).split(b"\n", 1)[0]
        first = line.decode("utf-8", errors="replace")
        for encoding in encodings:
            try:
                first = line.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    counts = {sep: first.count(sep) for sep in (",", ";", "\t")}
    sep = max(counts, key=lambda s: (counts[s], s == ","))
    header = [c.strip() for c in next(csv.reader([first.rstrip("\r")], delimiter=sep), [])]
    width = len(header)
    while header and not header[-1]:  # a separator ending the header line
        header.pop()
    return sep, encodings, header, width


def _records(open_file: Opener, sep: str, encoding: str, cols: list[int] | None = None):
    """(first line, values) of each record of the file that is read as a row or the header: blank
    lines and rows without a value (or only spaces) at the positions `cols` (None: anywhere) are
    skipped, as the reader does."""
    with open_file() as fh:
        text = io.TextIOWrapper(fh, encoding=encoding, errors="replace", newline="")
        reader = csv.reader(text, delimiter=sep)
        start, header = 1, True
        for row in reader:
            values = row if cols is None or header else [row[k] for k in cols if k < len(row)]
            if any(v.strip() for v in values):
                yield start, row
                header = False
            start = reader.line_num + 1


def _line_finder(open_file: Opener, sep: str, encoding: str, cols: list[int] | None = None
                 ) -> Callable[[int], int]:
    """Data row -> its first line in the file; the file is scanned once, at the first call (for
    an error message: most files never need it)."""
    starts: list[int] = []

    def line(row: int) -> int:
        if not starts:
            starts.extend(first for first, _ in _records(open_file, sep, encoding, cols))
        return starts[row + 1] if row + 1 < len(starts) else row + 2  # starts[0]: the header

    return line


def _full_row(open_file: Opener, sep: str, encoding: str, cols: list[int] | None, row: int) -> pd.Series:
    """A data row's values in every column, from the file (for a message: a scan of the file)."""
    for k, (_, values) in enumerate(_records(open_file, sep, encoding, cols)):
        if k == row + 1:
            return pd.Series(values, dtype=object)
    return pd.Series(dtype=object)


def line_finder(open_file: Opener) -> Callable[[int], int]:
    """Data row -> its first line in a CSV file, for messages about rows read earlier."""
    sep, encodings, _, _ = _sniff(open_file)
    return _line_finder(open_file, sep, encodings[0])


def _first_long_row(open_file: Opener, columns: int, sep: str, encoding: str) -> str:
    """Where the first row with a value past the header's last column is, for the message ("" when
    no row has one: the values past it are empty)."""
    records = _records(open_file, sep, encoding)
    next(records, None)  # the header
    for first, row in records:
        extra = [v for v in row[columns:] if v.strip()]
        if extra:
            return (f"line {first}: {len(row)} values for {columns} columns "
                    f"(extra value {extra[0].strip()!r}; a separator too many?)")
    return ""


def _any_long_row(open_file: Opener, sep: str, encoding: str, width: int) -> bool:
    """Whether a row of the file may have a value past the header's `width` fields (a row ending
    in a separator has an empty one: not counted), found by Arrow's CSV parser, which converts
    nothing but one column's bytes: the check pandas skips when it reads some columns only."""
    long: list[bool] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        if row.actual_columns > row.expected_columns and not (
            row.actual_columns == row.expected_columns + 1 and (row.text or "").rstrip("\r\n ").endswith(sep)
        ):
            long.append(True)
        return "skip"

    names = [f"c{k}" for k in range(width)]
    # bytes as they are (separators are ASCII in utf-8 and cp1252 alike); one column converted
    code = "utf-16" if encoding == "utf-16" else "utf8"
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, encoding=code)
    parse = pacsv.ParseOptions(delimiter=sep, newlines_in_values=True, invalid_row_handler=invalid)
    convert = pacsv.ConvertOptions(include_columns=names[:1], column_types={names[0]: pa.binary()})
    with open_file() as fh:
        pacsv.read_csv(fh, read_options=read, parse_options=parse, convert_options=convert)
    return bool(long)


def text_numbers(
    text: pd.Series, decimal_comma: bool | None = False, notes: list[str] | None = None, label: str = ""
) -> pd.Series:
    """Numbers written as text (surrounding spaces allowed) as float64; anything else is missing.

    `decimal_comma` True (a `;`-separated file): the comma is the decimal mark and the point the
    thousands separator ("1.234,5" = 1234.5, "1.234" = 1234), as the Anatel loader reads such
    files, unless a value of the column can only be a decimal point ("1.5", "0.500": not groups of
    three digits after a leading 1-999): then the column's points are decimal points. None (a
    tab-separated file, which Excel's "Unicode text" writes with either mark, or an .xlsx text
    cell): the comma is the decimal mark when a value of the column can only read so ("112,5",
    "0,25"); else, in a column without commas whose points all group thousands ("1.500", "2.000",
    "750"), the points are thousands separators (as a Brazilian export writes them); else the
    point is the decimal mark. When every separator in the column could be either (only
    "1.500"-like values, or only "1,500"-like ones), the thousands reading is taken and, with
    `notes`, a note naming `label` says so: 1.5 kg exported with three decimals would otherwise
    be read as 1500 without a word."""
    s = text.astype("string").str.strip()
    if decimal_comma is None:
        commas = s.str.contains(",", regex=False, na=False)
        decimal_comma = bool((commas & ~s.str.match(_COMMA_GROUPED, na=False)).any())
        dotted = s.str.contains(".", regex=False, na=False)
        if not decimal_comma and not commas.any() and dotted.any():
            # no comma, every point before groups of three ("1.500", "2.000"): thousands, as in a
            # `;` file (a Brazilian export's grouping), with the note below; "1.5" settles it
            decimal_comma = not (dotted & ~s.str.match(_GROUPED, na=False)).any()
        if not decimal_comma:  # commas (if any) as thousands separators, points as decimals
            _note_ambiguous(s, commas, ",", notes, label)
            return pd.to_numeric(s.str.replace(",", "", regex=False), errors="coerce").astype("float64")
    if decimal_comma:
        dotted = s.str.contains(".", regex=False, na=False)
        if not (dotted & ~s.str.match(_GROUPED, na=False)).any():
            _note_ambiguous(s, dotted, ".", notes, label)
            s = s.str.replace(".", "", regex=False)
        s = s.str.replace(",", ".", regex=False)
    return pd.to_numeric(s, errors="coerce").astype("float64")


def totals_hint(row: pd.Series) -> str:
    """" (a totals row? ...)" when a value of the row says total (an export's last row), else ""."""
    said = row.astype("string").str.contains("total", case=False, na=False).any()
    return " (a totals row? delete it from the file)" if said else ""


def _note_ambiguous(s: pd.Series, grouped: pd.Series, mark: str, notes: list[str] | None, label: str) -> None:
    """A note when the column's `mark`s were read as thousands separators and no value of it
    shows the other mark (which would settle it): "1.500" may be 1500 or 1.5."""
    if notes is None or not grouped.any():
        return
    other = "," if mark == "." else "."
    if s.str.contains(other, regex=False, na=False).any():
        return
    example = str(s[grouped].iloc[0])
    value = float(example.replace(mark, ""))
    notes.append(
        f"{label}: the {'points' if mark == '.' else 'commas'} in numbers such as {example!r} were read "
        f"as thousands separators ({example} = {value:g}); if they are decimal marks, write the "
        f"numbers with a decimal {'comma' if mark == '.' else 'point'} ({example.replace(mark, other)})"
    )
