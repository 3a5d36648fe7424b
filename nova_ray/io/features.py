"""Feature files a run reads besides the demand: the feature table `nova-ray etl` writes (and the
raw files behind it, from its data dictionary) and a user's table of future feature values."""

from __future__ import annotations

import json
import tempfile
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ..rollout import continue_counts
from .csv_text import read_text_csv, text_numbers
from .demand import text_dates
from .errors import InputError
from .source import is_uri


def raw_sources(entries: dict[str, dict[str, Any]]) -> list[str]:
    """The raw files behind a feature table, as its data dictionary's `entries` list them
    (relative to the raw folder the ETL read), so that a run's record says what its factors came
    from."""
    listed = (src for d in entries.values() for src in d.get("sources") or [])
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


def dictionary_path(features_path: str | Path) -> Path:
    """The data dictionary that `nova-ray etl` writes beside a feature table."""
    from ..etl.features import DICTIONARY_FILE

    return Path(features_path).with_name(DICTIONARY_FILE)


def dictionary_entries(features_path: str | Path) -> dict[str, dict[str, Any]]:
    """The entries of the features_dictionary.json next to `features_path` ({} without one)."""
    path = dictionary_path(features_path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {c: d for c, d in data.items() if isinstance(d, dict)} if isinstance(data, dict) else {}


def observed_until(features_path: str | Path) -> dict[str, pd.Timestamp]:
    """Column -> the last day its source has a value, from the dictionary's ``observed`` (written
    by `nova-ray etl`; none from an earlier version's dictionary or the user's own table)."""
    return _observed_until(dictionary_entries(features_path))


def _regressors(entries: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    return tuple(c for c, d in entries.items() if d.get("group") == "regressor")


def _observed_until(entries: dict[str, dict[str, Any]]) -> dict[str, pd.Timestamp]:
    out = {}
    for col, d in entries.items():
        span = d.get("observed")
        if isinstance(span, list) and len(span) == 2:
            try:
                out[col] = pd.Timestamp(span[1])
            except (TypeError, ValueError):
                continue
    return out


def _described(
    frame: pd.DataFrame, path: Path, known_until: date | None = None
) -> tuple[pd.DataFrame, tuple[str, ...], dict[str, Any], list[str]]:
    """The table at `path` up to `known_until` with its 5G counts continued, its regressor
    columns and its raw files: all from its data dictionary, read once."""
    entries = dictionary_entries(path)
    if known_until is not None:  # a backfill's forecast knows the factors of its date, not later ones
        frame = frame[pd.to_datetime(frame["date"]) <= pd.Timestamp(known_until)].reset_index(drop=True)
    frame, continued = continue_counts(frame, _observed_until(entries))
    return frame, _regressors(entries), continued, raw_sources(entries)


class Features(NamedTuple):
    """A run's feature table and what it came with."""

    frame: pd.DataFrame
    regressors: tuple[str, ...]  # the user's regressor columns (dictionary group ``regressor``)
    sources: tuple[str, ...]  # the table and the raw files it was built from
    continued: dict[str, dict[str, Any]]  # 5G counts continued past their last observed day


def load_features(
    features_path: str | Path | None,
    demand_path: str | Path | None = None,
    start: pd.Timestamp | str | None = None,
    end: pd.Timestamp | str | None = None,
    inmet_stations: str = "",
    known_until: date | None = None,
) -> Features | None:
    """The feature table of a run, its regressor columns and source files, or None when there are none.

    `features_path` (e.g. data/processed/features.parquet) wins when it exists; otherwise a
    ``raw/`` folder next to the demand file (the demo layout) is run through build_features into
    a temporary folder (nothing is written next to the data). Rows after `known_until` (a
    backfill's date) are left out; 5G counts whose source ends before the table are continued at
    their pace (`continue_counts`).
    """
    from ..etl import build_features, read_features

    if features_path and Path(features_path).is_file():
        path = Path(features_path).resolve()  # the record names the file wherever the run started
        frame, regs, continued, raw_files = _described(features_file(path), path, known_until)
        return Features(frame, regs, (str(path), *raw_files), continued)
    # not beside an s3:// demand file: Path would make that the local folder `s3:/bucket/...`
    raw = Path(demand_path).parent / "raw" if demand_path and not is_uri(demand_path) else None
    if raw is None or not raw.is_dir():
        return None
    with tempfile.TemporaryDirectory(prefix="nova-ray-features-") as tmp:
        res = build_features(raw, tmp, start, end, inmet_stations)
        frame, regs, continued, _ = _described(read_features(res.path), res.path, known_until)
    return Features(frame, regs, tuple(str(p) for p in res.sources), continued)
