"""Generic regressors: ``regressors/<name>.csv`` with a ``date`` column -> ``<name>_<column>``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from . import EtlError, daily_ffill, merge_daily, read_text, short, slug, source_files
from .anatel import numeric_frame, one_row_per_date, parse_dates, read_table


def read_regressor_file(path: str | Path) -> pd.DataFrame:
    """One regressor CSV -> daily forward-filled ``date, <stem>_<column>``. With ``,`` as separator
    the point is the decimal mark; with ``;`` (a Brazilian spreadsheet's export) the comma is, and
    points group thousands, as in the Anatel files. One row per date."""
    path = Path(path)
    delimiter, header, rows = read_table(path, read_text(path))
    date_pos = next((i for i, h in enumerate(header) if h.strip().lower() == "date"), None)
    if date_pos is None:
        raise EtlError(f"no 'date' column in header {short(header)}", path, 1)
    if len(header) < 2:
        raise EtlError("no value columns next to the 'date' column", path, 1)
    stem = slug(path.stem)
    names = [f"{stem}_{slug(h)}" for h in header]
    if len(set(names)) != len(names) or any(n.endswith("_") for n in names):
        raise EtlError(f"column names must be distinct and non-empty, got {short(header)}", path, 1)
    dates = parse_dates(path, rows, date_pos, header[date_pos])
    one_row_per_date(path, rows, dates, header[date_pos], "which value holds? keep one row per date")
    return daily_ffill(
        numeric_frame(path, header, rows, date_pos, dates, names, dot_is_thousands=delimiter == ";")
    )


def load_regressors(src: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Regressor files (a folder of *.csv, a file or a list) -> ``date`` + daily columns."""
    files = source_files(src, (".csv",))
    return merge_daily([read_regressor_file(f) for f in files], "regressors", files)
