"""ETL of external factors: raw files (INMET, BCB, Anatel, regressors) -> daily feature table.

Formats: docs/raw-formats.md; outputs and columns: docs/etl.md.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


class EtlError(ValueError):
    """A raw file or a download is unusable. ``str(err)`` is one line: ``path:line: column 'c': problem``."""

    def __init__(
        self,
        message: str,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        self.column = column
        self.reason = message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        col = f"column {column!r}: " if column is not None else ""
        super().__init__(" ".join(f"{where}{col}{message}".splitlines()))


# ---------------------------------------------------------------- shared helpers (private to nova_ray.etl)

MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none"})


def short(value: object, limit: int = 60) -> str:
    """repr of a value, cut to `limit` characters, for one-line error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def read_text(path: Path) -> str:
    """File text: utf-16 after its byte-order mark, utf-8 (BOM allowed), else latin-1. Empty or
    unreadable files raise EtlError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise EtlError(f"cannot read file: {exc.strerror or exc}", path) from None
    return decode_text(data, path)


def decode_text(data: bytes, path: Path) -> str:
    """A file's bytes as `read_text` decodes them (`path` names it in the errors)."""
    if not data.strip():
        raise EtlError("empty file", path)
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # Excel's "Unicode text"
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise EtlError("cannot decode the file as utf-16 (as its byte-order mark says)", path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def normalize(name: str) -> str:
    """Header text without accents, upper case, single spaces (for matching column names)."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return " ".join(text.upper().split())


def slug(name: str) -> str:
    """Column-name form: ascii, lower case, non-alphanumerics -> ``_`` ("Estações 5G" -> "estacoes_5g")."""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii").lower()
    return re.sub(r"[^a-z0-9]+", "_", text).strip("_")


def csv_rows(text: str, path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """Delimited text -> (line, fields) per record (`line`: where it starts); CR, LF or CRLF line
    ends. A record the csv module cannot split (a stray quote that never closes) raises EtlError
    naming its line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = " ".join(str(exc).split())
            hint = "" if "NUL" in why else " (a '\"' that opens a field and never closes?)"
            raise EtlError(f"cannot split the line into fields: {why}{hint}", path, start) from None
        yield start, fields
        start = reader.line_num + 1


GROUPED_POINTS = re.compile(r"^[-+]?[1-9]\d{0,2}(\.\d{3})+$")  # 1.250, 12.345.678: thousands or decimals?
GROUPED_COMMAS = re.compile(r"^[-+]?[1-9]\d{0,2}(,\d{3})+$")  # 1,250


def number_style(texts: Iterable[str], dots_group: bool, commas_group: bool) -> tuple[bool, bool]:
    """(points group thousands, commas group thousands) in the ambiguous values of one column of
    numbers as text (``1.250``, ``1,250``): the opposite of the decimal mark that its other values
    show (``999.0``, ``1.5``: decimal points, so ``"1,250"`` is 1250; ``2,5``: decimal commas, so
    ``1.250`` is 1250), else the file's convention (`dots_group`, `commas_group`)."""
    point = comma = False
    for t in texts:
        v = str(t).strip().strip('"').strip()
        if "." in v and not GROUPED_POINTS.match(v) and ("," not in v or v.rfind(".") > v.rfind(",")):
            point = True
        if "," in v and not GROUPED_COMMAS.match(v) and ("." not in v or v.rfind(",") > v.rfind(".")):
            comma = True
    if point != comma:
        return comma, point
    return dots_group, commas_group


def parse_numbers(
    values: pd.Series,
    lines: Sequence[int] | pd.Series | Callable[[int], int],
    path: Path,
    column: str,
    dot_is_thousands: bool = False,
    missing: Iterable[str] = (),
    comma_is_thousands: bool = False,
) -> pd.Series:
    """Text -> float. Decimal comma or point; `missing` tokens and blanks -> NaN; anything else -> EtlError.

    `lines` gives the file line of each value (a sequence, or a function of the position).

    A value with both marks takes the last one as decimal (``1,234.5``, ``1.234,5``); one mark
    alone is decimal (``999.0``, ``0,5``) unless the value is grouped like thousands (``1.250``,
    ``1,250``): those follow `dot_is_thousands` / `comma_is_thousands` (see `number_style`).
    """
    # each distinct text is parsed once (hourly readings repeat a few hundred values)
    codes, uniques = pd.factorize(values.astype(str), use_na_sentinel=False)
    text = pd.Series(uniques, dtype=object).str.strip().str.strip('"').str.strip()
    is_missing = text.str.lower().isin(MISSING_TOKENS | {m.lower() for m in missing}).to_numpy()
    points, commas = text.str.rfind("."), text.str.rfind(",")
    both = (points >= 0) & (commas >= 0)
    drop_points = (both & (commas > points)) | (text.str.match(GROUPED_POINTS.pattern) & dot_is_thousands)
    drop_commas = (both & (points > commas)) | (text.str.match(GROUPED_COMMAS.pattern) & comma_is_thousands)
    cleaned = text.where(~drop_points, text.str.replace(".", "", regex=False))
    cleaned = cleaned.where(~drop_commas, cleaned.str.replace(",", "", regex=False))
    cleaned = cleaned.str.replace(",", ".", regex=False)
    parsed = pd.to_numeric(cleaned.where(~is_missing, None), errors="coerce").to_numpy(dtype=float)
    bad = (np.isnan(parsed) & ~is_missing) | np.isinf(parsed)
    if bad[codes].any():
        pos = int(np.flatnonzero(bad[codes])[0])
        line = lines(pos) if callable(lines) else list(lines)[pos]
        raise EtlError(f"cannot parse {short(values.iloc[pos])} as a number", path, int(line), column)
    return pd.Series(parsed[codes], index=values.index, name=values.name)


OBSERVED = "observed"  # `daily_ffill`'s frames: {column: the dates it had a value on} in `attrs`


def daily_ffill(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by ``date`` -> one row per calendar day from first to last date, forward-filled;
    each column's own dates are kept in ``attrs[OBSERVED]`` (a hole of months is no longer visible)."""
    if frame.empty:
        return frame.reset_index(drop=True)
    # stable: of rows with one date the file's last wins (a corrected row appended to a file)
    frame = frame.sort_values("date", kind="stable").drop_duplicates("date", keep="last").set_index("date")
    days = pd.date_range(frame.index.min(), frame.index.max(), freq="D", name="date")
    out = frame.reindex(days).ffill().reset_index()
    out.attrs[OBSERVED] = {c: frame.index[frame[c].notna().to_numpy()] for c in frame.columns}
    return out


def merge_daily(frames: list[pd.DataFrame], what: str, files: Sequence[Path] = ()) -> pd.DataFrame:
    """Outer-join daily frames on ``date`` and forward-fill; a column in two frames raises EtlError
    (naming both files when `files`, one per frame, are given)."""
    named = list(files) if len(files) == len(frames) else [None] * len(frames)
    kept = [(f, n) for f, n in zip(frames, named, strict=True) if not f.empty]
    if not kept:
        return pd.DataFrame({"date": pd.Series([], dtype="datetime64[ns]")})
    frames = [f for f, _ in kept]
    seen: dict[str, Path | None] = {}
    for f, name in kept:
        for col in f.columns.drop("date"):
            if col in seen:
                where = f" ({seen[col]} and {name})" if name is not None else ""
                raise EtlError(f"{what}: column {col!r} comes from two files{where}; rename one of them")
            seen[col] = name
    merged = frames[0].set_index("date")
    for f in frames[1:]:
        merged = merged.join(f.set_index("date"), how="outer")
    return daily_ffill(merged.reset_index())


def source_files(src: str | Path | Iterable[str | Path], suffixes: tuple[str, ...]) -> list[Path]:
    """A folder (its files with one of `suffixes`, any case, sorted), a single file, or a list of files."""
    if isinstance(src, (str, Path)):
        p = Path(src)
        if p.is_dir():
            return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in suffixes)
        return [p]
    return [Path(s) for s in src]


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to `path`, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# ---------------------------------------------------------------- public API

from .anatel import load_anatel, read_anatel_file  # noqa: E402
from .bcb import load_bcb, read_bcb_file  # noqa: E402
from .calendar import calendar_features, holiday_table  # noqa: E402
from .features import (  # noqa: E402
    FeatureResult,
    build_features,
    climatology,
    future_features,
    read_features,
)
from .fetch import fetch_sources  # noqa: E402
from .inmet import load_inmet, read_inmet_file, read_inmet_metadata  # noqa: E402
from .regressors import load_regressors, read_regressor_file  # noqa: E402

__all__ = [
    "EtlError",
    "FeatureResult",
    "build_features",
    "calendar_features",
    "climatology",
    "fetch_sources",
    "future_features",
    "holiday_table",
    "load_anatel",
    "load_bcb",
    "load_inmet",
    "load_regressors",
    "read_anatel_file",
    "read_bcb_file",
    "read_features",
    "read_inmet_file",
    "read_inmet_metadata",
    "read_regressor_file",
]
