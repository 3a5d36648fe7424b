"""Feature files a run reads besides the demand: the feature table `nova-ray etl` writes (and the
raw files behind it, from its data dictionary) and a user's table of future feature values."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .csv_text import read_text_csv, text_numbers
from .demand import text_dates
from .errors import InputError


def raw_sources(features_path: Path) -> list[str]:
    """The raw files behind a feature table, as its data dictionary lists them (relative to the
    raw folder the ETL read), so that a run's record says what its factors came from."""
    from ..etl.features import DICTIONARY_FILE

    try:
        data = json.loads(features_path.with_name(DICTIONARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    listed = (src for d in data.values() if isinstance(d, dict) for src in d.get("sources") or [])
    found = {src for src in listed if "/" in src}  # files, not the holidays package
    return sorted(f"raw:{src}" for src in found)


def features_file(path: str | Path) -> pd.DataFrame:
    """The feature table at `path` (what `nova-ray etl` writes); EtlError naming the file when it
    is not one (another format, no `date` column): it read as a traceback, or blamed the setting
    `future_features`."""
    from ..etl import EtlError

    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors for a CSV, a truncated or foreign file
        raise EtlError(f"not a Parquet feature table ({' '.join(str(exc).split())[:120]}); write it with "
                       "`nova-ray etl`", path) from None
    if "date" not in frame.columns:
        raise EtlError(f"not a feature table: no 'date' column (has {list(frame.columns)[:8]})", path)
    if frame.empty:
        raise EtlError("the feature table has no rows (write it with `nova-ray etl`)", path)
    raw = frame["date"]
    text = raw.dtype == object or pd.api.types.is_string_dtype(raw)
    dates = text_dates(raw.astype("string").astype(object)) if text else pd.to_datetime(raw, errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):  # a text date that is no date, or a missing one: pandas' 5-line message before
        value = raw.iloc[bad[0]]
        what = f"cannot parse date {str(value)[:40]!r}" if pd.notna(value) else "missing date"
        raise EtlError(f"row {bad[0] + 1}: column 'date': {what}", path)
    frame["date"] = dates.to_numpy()  # as etl.read_features does
    return frame


def read_future_table(path: str | Path) -> pd.DataFrame:
    """A user's future feature values (CSV or Parquet: ``date`` + feature columns, names in any
    case). A CSV reads as the demand does (`,`, `;` or tab; a `;` file's decimal commas; utf-8,
    cp1252, latin-1 or utf-16; ISO or dd/mm/yyyy dates); a value that is not a number or a date
    is a ValueError naming the line and column (it used to drop the factor from the whole run,
    with the reason "not in the feature table")."""

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: future features file not found")
    if p.stat().st_size == 0:  # pandas' "No columns to parse from file" named no file
        raise ValueError(f"{p}: file is empty")
    if p.suffix.lower() in (".parquet", ".pq"):
        frame, line, comma = pd.read_parquet(p), (lambda row: f"row {row + 1}"), False
    else:
        try:
            csv = read_text_csv(lambda: open(p, "rb"), str(p))
        except InputError as exc:
            raise ValueError(str(exc)) from None
        frame, comma = csv.frame, csv.decimal_comma
        line = lambda row: f"line {csv.line(row)}"  # noqa: E731
    frame = frame.rename(columns={c: str(c).strip().lower() for c in frame.columns})
    if "date" not in frame.columns:
        raise ValueError(f"{p}: future features need a 'date' column (the file has {list(frame.columns)})")
    out = pd.DataFrame({"date": _parsed(frame["date"], text_dates, p, line, "date", "a date")})
    for col in (c for c in frame.columns if c != "date"):
        out[col] = _parsed(frame[col], lambda t: text_numbers(t, comma), p, line, col, "a number")
    return out


def _parsed(values: pd.Series, parse: Any, path: Path, line: Any, column: str, what: str) -> pd.Series:
    """`values` parsed (text) or taken as they are (Parquet's typed columns); blanks stay missing,
    anything else that does not parse is a ValueError naming its line."""
    if values.dtype != object and not pd.api.types.is_string_dtype(values):
        return pd.to_datetime(values) if what == "a date" else values.astype(float)
    text = values.astype("string").str.strip()
    parsed = parse(text)
    bad = parsed.isna().to_numpy() & text.fillna("").ne("").to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: {line(row)}: {values.iloc[row]!r} in column {column!r} is not {what}")
    return parsed
