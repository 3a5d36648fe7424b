"""INMET automatic-station yearly CSV files -> daily climate per station."""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Collection, Iterable
from pathlib import Path, PurePosixPath

import pandas as pd

from . import EtlError, decode_text, normalize, parse_numbers, read_text, short, source_files

N_META = 8  # metadata lines before the column header
HEADER_LINE = N_META + 1
COLUMNS = ["date", "station", "rain_mm", "temp_mean_c", "humidity_mean_pct"]
# A day's rain is a sum: with more than a quarter of its hours missing it is left missing (NaN)
# rather than undercounted (a storm that cuts the station's power is the day that matters).
MIN_RAIN_SHARE = 0.75
MIN_MEAN_SHARE = 0.5  # share of a day's hours that its temperature and humidity means need
# output column -> (normalized header prefix, header as printed in messages)
_WANTED = {
    "rain": ("PRECIPITACAO TOTAL", "PRECIPITAÇÃO TOTAL, HORÁRIO (mm)"),
    "temp": ("TEMPERATURA DO AR - BULBO SECO", "TEMPERATURA DO AR - BULBO SECO, HORARIA (°C)"),
    "hum": ("UMIDADE RELATIVA DO AR", "UMIDADE RELATIVA DO AR, HORARIA (%)"),
}
_FILE_STATION = re.compile(r"^INMET_[A-Z]{1,2}_[A-Z]{2}_([A-Z]\d{3})_", re.IGNORECASE)
_FILE_END = re.compile(r"_A_(\d\d)-(\d\d)-(\d{4})\.csv$", re.IGNORECASE)  # ..._01-01-2023_A_31-05-2023.CSV


def _meta(path: Path, lines: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for i in range(N_META):
        if i >= len(lines):
            raise EtlError(
                f"file ends after {len(lines)} lines; expected {N_META} metadata lines and a header",
                path,
                i + 1,
            )
        line = lines[i]
        key, _, value = line.partition(";")
        if not key.strip().endswith(":"):
            if normalize(key).startswith("DATA"):
                raise EtlError(
                    f"found the column header at line {i + 1}; INMET files have {N_META} metadata lines "
                    "(REGIAO:, UF:, ESTACAO:, ...) before it",
                    path,
                    i + 1,
                )
            raise EtlError(
                f"expected an INMET metadata line 'KEY:;value' ({N_META} of them before the header), "
                f"got {short(line)}",
                path,
                i + 1,
            )
        meta[normalize(key.strip()[:-1])] = value.strip().rstrip(";").strip()
    return meta


def read_inmet_metadata(path: str | Path) -> dict[str, str]:
    """The 8 metadata lines as {normalized key: value}, e.g. {"CODIGO (WMO)": "A401", "UF": "BA"}."""
    return _meta(Path(path), read_text(Path(path)).splitlines())


def _station(path: Path, meta: dict[str, str]) -> str:
    code = next((v for k, v in meta.items() if k.startswith("CODIGO")), "")
    if code:
        return code.upper()
    m = _FILE_STATION.match(path.name)
    if m:
        return m.group(1).upper()
    raise EtlError("no station code: metadata line 'CODIGO (WMO):' is empty and the file name has none", path)


def read_inmet_file(path: str | Path, text: str | None = None) -> pd.DataFrame:
    """One INMET file -> daily rows: date, station, rain_mm, temp_mean_c, humidity_mean_pct
    (`text`: the file's text, read already, e.g. from a zip; `path` then only names it).

    Days are UTC dates as in the file. rain_mm is the sum of the hourly precipitation, NaN when
    fewer than `MIN_RAIN_SHARE` of the day's hours have a value (the hours a day should have: the
    most rows any day of the file has, 24 in INMET's files, so a day cut short counts too);
    temperature and humidity are means of the day's hours, NaN when fewer than `MIN_MEAN_SHARE`
    have a value (a day cut short after a few night hours is no daily mean). An hour that appears
    twice counts once (its last row).
    """
    path = Path(path)
    lines = (read_text(path) if text is None else text).splitlines()
    meta = _meta(path, lines)
    station = _station(path, meta)
    if len(lines) < HEADER_LINE:
        raise EtlError("missing the column header line (Data;Hora UTC;...)", path, HEADER_LINE)
    header = [h.strip() for h in lines[N_META].split(";")]
    if not normalize(header[0]).startswith("DATA"):
        raise EtlError(
            f"expected the column header line starting with 'Data', got {short(lines[N_META])}",
            path,
            HEADER_LINE,
        )
    names = [normalize(h) for h in header]
    idx = {"date": 0}
    for key, (prefix, shown) in _WANTED.items():
        pos = next((i for i, n in enumerate(names) if n.startswith(prefix)), None)
        if pos is None:
            raise EtlError(f"missing column {shown!r}", path, HEADER_LINE)
        idx[key] = pos
    if len(names) > 1 and names[1].startswith("HORA"):  # 'Hora UTC' ('0000 UTC') or 'HORA (UTC)' ('00:00')
        idx["hour"] = 1
    need = max(idx.values()) + 1
    order = list(idx)
    rows: list[tuple] = []
    for lineno, raw in enumerate(lines[HEADER_LINE:], start=HEADER_LINE + 1):
        if not raw.strip():
            continue
        fields = raw.split(";")
        if len(fields) < need:
            raise EtlError(f"expected at least {need} ';'-separated fields, got {len(fields)}", path, lineno)
        rows.append((lineno, *(fields[idx[k]] for k in order)))
    if not rows:
        raise EtlError("no data rows after the column header", path, HEADER_LINE)
    # a download cut short ends in a partial row whose last wanted field may be cut too ("...;7" of
    # "...;78"): the last row holds every column of the header
    full = len(header) - next((k for k, h in enumerate(reversed(header)) if h.strip()), 0)
    last = lines[rows[-1][0] - 1].split(";")
    if len(last) < full:
        raise EtlError(f"expected {full} ';'-separated fields like the header, got {len(last)}: a file cut "
                       "short?", path, rows[-1][0])
    df = pd.DataFrame(rows, columns=["line", *order])
    text = df["date"].str.strip()
    dates = pd.to_datetime(text.str.replace("/", "-", regex=False), format="%Y-%m-%d", errors="coerce")
    if dates.isna().any():
        pos = int(dates.isna().to_numpy().argmax())
        raise EtlError(
            f"unparsable date {short(df['date'].iloc[pos])} (expected yyyy/mm/dd or yyyy-mm-dd)",
            path,
            int(df["line"].iloc[pos]),
            header[0],
        )
    values = {}
    for key in _WANTED:
        v = parse_numbers(df[key], df["line"], path, header[idx[key]], missing=("-9999",))
        values[key] = v.mask(v == -9999)
    hourly = pd.DataFrame({"date": dates, **values})
    if "hour" in df:  # an hour given twice (files joined by hand): the later row, not both summed
        hour = df["hour"].str.replace(r"\D", "", regex=True)
        hourly = hourly[~pd.DataFrame({"d": dates, "h": hour}).duplicated(keep="last").to_numpy()]
    g = hourly.groupby("date", sort=True)
    hours = g.size().max()
    daily = pd.DataFrame(
        {
            "rain_mm": g["rain"].sum(min_count=1).where(g["rain"].count() >= MIN_RAIN_SHARE * hours),
            "temp_mean_c": g["temp"].mean().where(g["temp"].count() >= MIN_MEAN_SHARE * hours),
            "humidity_mean_pct": g["hum"].mean().where(g["hum"].count() >= MIN_MEAN_SHARE * hours),
        }
    ).reset_index()
    daily.insert(1, "station", station)
    return daily[COLUMNS]


def read_inmet_zip(path: str | Path, stations: Collection[str]) -> list[pd.DataFrame]:
    """The files of `stations` in one of INMET's yearly zips (the historical-data portal's: every
    automatic station's CSV of a year, at its top or in a folder) -> their daily rows. A zip is
    read only for the stations named: all of them averaged would be Brazil's weather."""
    return [frame for _, frame in _zip_members(Path(path), stations)]


def _zip_members(path: Path, stations: Collection[str]) -> list[tuple[Path, pd.DataFrame]]:
    """`read_inmet_zip` with each frame's member path (``<zip>/<member>``)."""
    wanted = {s.strip().upper() for s in stations if s.strip()}
    if not wanted:
        raise EtlError("an INMET zip holds every station of its year: name the ones to read in [etl] "
                       "inmet_stations", path)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [m for m in zf.namelist() if m.lower().endswith(".csv")]
            chosen = sorted(m for m in members if (code := _FILE_STATION.match(PurePosixPath(m).name))
                            and code.group(1).upper() in wanted)
            if not chosen:
                raise EtlError(f"no file of station {', '.join(sorted(wanted))} ([etl] inmet_stations) among "
                               f"its {len(members)} station files", path)
            return [(path / m, read_inmet_file(path / m, decode_text(_member(zf, m, path), path / m)))
                    for m in chosen]
    except (zipfile.BadZipFile, EOFError):
        raise EtlError("not a readable zip file (a download cut short?)", path) from None


def _member(zf: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """A zip member's bytes; one that cannot be unpacked (corrupt, encrypted, another compression)
    is an EtlError naming it."""
    try:
        return zf.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise EtlError(f"cannot unpack it: {' '.join(str(exc).split())[:120]}", path / name) from None


def load_inmet(
    src: str | Path | Iterable[str | Path],
    stations: Collection[str] = (),
    skipped: dict[Path, str] | None = None,
) -> pd.DataFrame:
    """INMET files (a folder of *.CSV and yearly *.zip, one file or a list) -> daily rows per
    station, sorted. A zip gives the files of `stations` (`read_inmet_zip`); so do the CSV files
    when `stations` names any: another station's file is left out and put in `skipped`
    ({file: its station}), all of them are read when it names none.

    A (date, station) in several files takes each column's value from the last file that has one,
    the files in the order of the period they cover (the end date in the name,
    ``..._A_30-06-2023.CSV``, else the file's last day), zips first (a station's own CSV file wins
    over the portal's zip).
    """
    wanted = {s.strip().upper() for s in stations if s.strip()}
    keyed: list[tuple[bool, pd.Timestamp, str, pd.DataFrame]] = []
    for f in source_files(src, (".csv", ".zip")):
        if f.suffix.lower() == ".zip":
            members = _zip_members(f, stations)
            keyed += [(False, _covered_until(m, frame), str(m), frame) for m, frame in members]
            continue
        text = read_text(f)
        station = _station(f, _meta(f, text.splitlines()))
        if wanted and station not in wanted:
            if skipped is not None:
                skipped[f] = station
            continue
        frame = read_inmet_file(f, text)
        keyed.append((True, _covered_until(f, frame), str(f), frame))
    if not keyed:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in _EMPTY_TYPES.items()})
    keyed.sort(key=lambda k: k[:3])
    out = pd.concat([k[3] for k in keyed], ignore_index=True)
    # per column the last value there is: a partial file's gap does not hide another file's reading
    out = out.groupby(["date", "station"], as_index=False, sort=True).last()
    return out[COLUMNS].reset_index(drop=True)


def _covered_until(path: Path, frame: pd.DataFrame) -> pd.Timestamp:
    """The last day a file covers: the end date of its name (``..._A_31-05-2023.CSV``), else its last row."""
    m = _FILE_END.search(path.name)
    if m:
        try:
            return pd.Timestamp(int(m.group(3)), int(m.group(2)), int(m.group(1)))
        except ValueError:
            pass
    return frame["date"].max() if len(frame) else pd.Timestamp.min


_EMPTY_TYPES = {
    "date": "datetime64[ns]",
    "station": "object",
    "rain_mm": "float64",
    "temp_mean_c": "float64",
    "humidity_mean_pct": "float64",
}
