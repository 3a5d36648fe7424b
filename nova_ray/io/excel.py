"""Excel workbooks (.xlsx): the first sheet read like a CSV, each cell as it is typed."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

import pandas as pd

from .errors import InputError, first_line

SUFFIXES = {".xlsx", ".xlsm"}


def read_xlsx(data: bytes, name: str) -> tuple[pd.DataFrame, Callable[[int], str]]:
    """The workbook's first sheet (a header row, then data rows) with every cell as stored (text,
    numbers, dates; empty cells missing), rows with no value at all dropped (formatted empty
    rows); and where each data row is ('row N', the sheet's own row number)."""
    try:
        import openpyxl  # noqa: F401  (pandas' engine for .xlsx)
    except ImportError:  # pragma: no cover - a dependency of nova-ray
        raise InputError(f"{name}: reading .xlsx needs the openpyxl package (pip install openpyxl)") from None
    try:
        frame = pd.read_excel(io.BytesIO(data), sheet_name=0, dtype=object, engine="openpyxl")
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{name}: cannot read the workbook: {first_line(exc)}") from None
    frame.columns = [str(c) for c in frame.columns]
    unnamed = [c for c in frame.columns if c.startswith("Unnamed: ")]
    frame = frame.drop(columns=[c for c in unnamed if frame[c].isna().all()])  # formatted empty columns
    frame = frame.dropna(how="all")
    sheet_rows = (frame.index.to_numpy() + 2).tolist()  # row 1 is the header
    frame = frame.reset_index(drop=True)
    return frame, lambda row: f"row {sheet_rows[row] if row < len(sheet_rows) else row + 2}"
