"""Banco Central SGS series (JSON or CSV as served by the SGS API) -> daily forward-filled columns."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from . import (
    EtlError,
    csv_rows,
    daily_ffill,
    merge_daily,
    number_style,
    parse_numbers,
    read_text,
    short,
    slug,
    source_files,
)

_SKIP = re.compile(r"[\s,]*")


def _json_entry_line(text: str, index: int) -> int:
    """Line number of the `index`-th entry of the top-level JSON array in `text`."""
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    for k in range(index + 1):
        pos = _SKIP.match(text, pos).end()  # type: ignore[union-attr]
        if k == index:
            break
        _, pos = decoder.raw_decode(text, pos)
    return text.count("\n", 0, pos) + 1


LineOf = Callable[[int], int]


def parse_bcb_json(text: str, path: str | Path) -> tuple[pd.DataFrame, LineOf]:
    """SGS JSON text -> (rows ``data, valor`` as strings, row position -> file line)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EtlError(f"invalid JSON: {exc.msg} (character {exc.colno})", path, exc.lineno) from None
    if not isinstance(data, list):
        raise EtlError(
            f'expected a JSON list of {{"data": ..., "valor": ...}} entries, got {short(data)}', path, 1
        )
    if not data:
        raise EtlError("no data: the JSON list is empty", path, 1)
    rows = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or "data" not in entry or "valor" not in entry:
            raise EtlError(
                f'entry {i + 1}: expected {{"data": ..., "valor": ...}}, got {short(entry)}',
                path,
                _json_entry_line(text, i),
            )
        valor = entry["valor"]
        rows.append((i, str(entry["data"]), "" if valor is None else str(valor)))
    df = pd.DataFrame(rows, columns=["entry", "data", "valor"])
    return df, lambda i: _json_entry_line(text, i)


def parse_bcb_csv(text: str, path: str | Path) -> tuple[pd.DataFrame, LineOf]:
    """SGS CSV text (``"data";"valor"``) -> (rows as strings, row position -> file line)."""
    rows = []
    header_seen = False
    for line_num, fields in csv_rows(text, Path(path), ";"):
        if not any(f.strip() for f in fields):
            continue
        while len(fields) > 2 and not fields[-1].strip():  # a trailing separator, not an empty valor
            fields = fields[:-1]
        if not header_seen:
            if [f.strip().lower() for f in fields] != ["data", "valor"]:
                raise EtlError(
                    f'expected the header "data";"valor", got {short(";".join(fields))}',
                    path,
                    line_num,
                )
            header_seen = True
            continue
        if len(fields) != 2:
            raise EtlError(
                f"expected 2 ';'-separated fields (data;valor), got {len(fields)}", path, line_num
            )
        rows.append((line_num, fields[0], fields[1]))
    if not rows:
        raise EtlError("no data rows after the header", path, 1)
    lines = [r[0] for r in rows]
    return pd.DataFrame(rows, columns=["entry", "data", "valor"]), lambda i: lines[i]


def bcb_frame(
    raw: pd.DataFrame, line_of: LineOf, path: str | Path, name: str, decimal_comma: bool = False
) -> pd.DataFrame:
    """Parsed rows (data, valor strings) -> daily forward-filled ``date, <name>``.

    With `decimal_comma` (the CSV) a value grouped like thousands (``1.250``, ``1,250``) is read as
    the column's other values show (`number_style`), else points group thousands; without it (JSON)
    a value with one mark reads it as decimal (``"1.250"`` = 1.25).
    """
    path = Path(path)
    dates = pd.to_datetime(raw["data"].str.strip(), format="%d/%m/%Y", errors="coerce")
    if dates.isna().any():
        pos = int(dates.isna().to_numpy().argmax())
        raise EtlError(
            f"unparsable date {short(raw['data'].iloc[pos])} (expected dd/mm/yyyy)",
            path,
            line_of(pos),
            "data",
        )
    dots, commas = number_style(raw["valor"].unique(), True, False) if decimal_comma else (False, False)
    values = parse_numbers(raw["valor"], line_of, path, "valor", dot_is_thousands=dots,
                           comma_is_thousands=commas)
    out = pd.DataFrame({"date": dates, name: values}).dropna(subset=[name])
    if out.empty:
        raise EtlError("no values: every 'valor' is empty", path)
    return daily_ffill(out)


def read_bcb_file(path: str | Path, name: str | None = None) -> pd.DataFrame:
    """One SGS file (``.json`` or ``.csv``) -> daily rows ``date, <name>`` (name: the file stem).

    Monthly series (dated on the 1st) are forward-filled to every day of the month.
    """
    path = Path(path)
    name = name or slug(path.stem)
    text = read_text(path)
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        return bcb_frame(*parse_bcb_json(text, path), path, name)
    return bcb_frame(*parse_bcb_csv(text, path), path, name, decimal_comma=True)


def load_bcb(src: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """SGS files (folder of *.json|*.csv, a file or a list) -> ``date`` + one daily column per series."""
    files = source_files(src, (".json", ".csv"))
    stems: dict[str, Path] = {}
    for f in files:
        s = slug(f.stem)
        if s in stems:
            raise EtlError(f"two files for series {s!r}: {stems[s]} and {f}; keep one")
        stems[s] = f
    return merge_daily([read_bcb_file(f) for f in files], "bcb", files)
