"""Input CSVs read as text, every column: the demand history and the stock snapshot."""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Callable
from typing import IO, NamedTuple

import pandas as pd

from .errors import InputError

Opener = Callable[[], IO[bytes]]  # a fresh binary stream of the file at each call

ENCODINGS = ("utf-8", "cp1252", "latin-1")  # tried in turn: Windows exports (Excel's "CSV") are cp1252
# a number whose points may be thousands separators ("1.234", "12.500,5")
_GROUPED = r"^[+-]?\d{1,3}(?:\.\d{3})+(?:,\d*)?$"


class TextCsv(NamedTuple):
    """A CSV's columns as text, and whether its numbers use a decimal comma (`;`- or tab-separated)."""

    frame: pd.DataFrame
    decimal_comma: bool


def read_text_csv(open_file: Opener, name: str, gz: bool = False) -> TextCsv:
    """Every column of a CSV as text (empty cells as "").

    The separator is `,`, `;` or a tab, whichever the header line holds most of (a `;` file is what
    Excel writes in Brazilian Portuguese, with decimal commas); the encoding utf-8 (a BOM allowed),
    else cp1252, else latin-1. A row with more values than the header is an InputError naming its
    line: pandas would otherwise take the first column as the index and shift every value one
    column left, silently. An empty value past the last column (a separator at the end of the
    rows) is fine."""
    sep = _separator(open_file, gz)
    for encoding in ENCODINGS:
        try:
            with warnings.catch_warnings(record=True) as caught, open_file() as fh:
                warnings.simplefilter("always", pd.errors.ParserWarning)
                df = pd.read_csv(fh, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False,
                                 sep=sep, encoding=encoding, compression="gzip" if gz else None)
            break
        except UnicodeDecodeError:
            continue
    if any(issubclass(w.category, pd.errors.ParserWarning) and "does not match" in str(w.message)
           for w in caught):
        raise InputError(f"{name}: {_first_long_row(open_file, gz, len(df.columns), sep, encoding)}")
    return TextCsv(df, sep != ",")


def _separator(open_file: Opener, gz: bool) -> str:
    """`,`, `;` or a tab: the one the header line holds most of (`,` on a tie)."""
    with open_file() as raw:
        fh = gzip.GzipFile(fileobj=raw) if gz else raw
        head = fh.read(65536).split(b"\n", 1)[0]
    counts = {sep: head.count(sep.encode()) for sep in (",", ";", "\t")}
    return max(counts, key=lambda s: (counts[s], s == ","))


def _first_long_row(open_file: Opener, gz: bool, columns: int, sep: str, encoding: str) -> str:
    """Where the first row with a value past the header's last column is, for the message."""
    with open_file() as raw:
        fh = gzip.GzipFile(fileobj=raw) if gz else raw
        text = io.TextIOWrapper(fh, encoding=encoding, errors="replace")
        reader = csv.reader(text, delimiter=sep)
        next(reader, None)
        for row in reader:
            extra = [v for v in row[columns:] if v.strip()]
            if extra:
                return (f"line {reader.line_num}: {len(row)} values for {columns} columns "
                        f"(extra value {extra[0].strip()!r}; a separator too many?)")
    return f"a row has more values than the {columns} columns of the header"


def text_numbers(text: pd.Series, decimal_comma: bool = False) -> pd.Series:
    """Numbers written as text (surrounding spaces allowed) as float64; anything else is missing.

    With `decimal_comma` (a `;`-separated file) the comma is the decimal mark and the point the
    thousands separator ("1.234,5" = 1234.5, "1.234" = 1234), as the Anatel loader reads such
    files, unless a value of the column can only be a decimal point ("1.5", "0.25": not groups
    of three digits): then the column's points are decimal points."""
    s = text.astype("string").str.strip()
    if decimal_comma:
        dotted = s.str.contains(".", regex=False, na=False)
        if not (dotted & ~s.str.match(_GROUPED, na=False)).any():
            s = s.str.replace(".", "", regex=False)
        s = s.str.replace(",", ".", regex=False)
    return pd.to_numeric(s, errors="coerce").astype("float64")
