"""Input CSVs read as text, every column: the demand history and the stock snapshot."""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections.abc import Callable
from typing import IO

import pandas as pd

from .errors import InputError

Opener = Callable[[], IO[bytes]]  # a fresh binary stream of the file at each call


def read_text_csv(open_file: Opener, name: str, gz: bool = False) -> pd.DataFrame:
    """Every column of a CSV as text (empty cells as ""). A row with more values than the header
    is an InputError naming its line: pandas would otherwise take the first column as the index
    and shift every value one column left, silently. An empty value past the last column (a
    comma at the end of the rows) is fine."""
    with warnings.catch_warnings(record=True) as caught, open_file() as fh:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        df = pd.read_csv(fh, dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False,
                         compression="gzip" if gz else None)
    if any(issubclass(w.category, pd.errors.ParserWarning) and "does not match" in str(w.message)
           for w in caught):
        raise InputError(f"{name}: {_first_long_row(open_file, gz, len(df.columns))}")
    return df


def _first_long_row(open_file: Opener, gz: bool, columns: int) -> str:
    """Where the first row with a value past the header's last column is, for the message."""
    with open_file() as raw:
        text = io.TextIOWrapper(gzip.GzipFile(fileobj=raw) if gz else raw, encoding="utf-8", errors="replace")
        reader = csv.reader(text)
        next(reader, None)
        for row in reader:
            extra = [v for v in row[columns:] if v.strip()]
            if extra:
                return (f"line {reader.line_num}: {len(row)} values for {columns} columns "
                        f"(extra value {extra[0].strip()!r}; a separator too many?)")
    return f"a row has more values than the {columns} columns of the header"
