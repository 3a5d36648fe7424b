"""Optional download of BCB SGS series and INMET station data into the raw layout (stdlib urllib only).

Nothing else in nova-ray downloads; the ETL reads whatever files are in the raw folder.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Etl
from . import EtlError, atomic_write_bytes, short, slug
from .bcb import bcb_frame, parse_bcb_json
from .inmet import read_inmet_file

HttpClient = Callable[[str, float], bytes]
"""``client(url, timeout_s) -> body``; raise urllib.error.HTTPError / URLError / OSError on failure."""

BCB_MAX_YEARS = 10  # the SGS API answers at most 10 years of a daily series per request
INMET_HEADER = [
    ("Data", None),
    ("Hora UTC", None),
    ("PRECIPITAÇÃO TOTAL, HORÁRIO (mm)", "CHUVA"),
    ("PRESSAO ATMOSFERICA AO NIVEL DA ESTACAO, HORARIA (mB)", "PRE_INS"),
    ("PRESSÃO ATMOSFERICA MAX.NA HORA ANT. (AUT) (mB)", "PRE_MAX"),
    ("PRESSÃO ATMOSFERICA MIN. NA HORA ANT. (AUT) (mB)", "PRE_MIN"),
    ("RADIACAO GLOBAL (Kj/m²)", "RAD_GLO"),
    ("TEMPERATURA DO AR - BULBO SECO, HORARIA (°C)", "TEM_INS"),
    ("TEMPERATURA DO PONTO DE ORVALHO (°C)", "PTO_INS"),
    ("TEMPERATURA MÁXIMA NA HORA ANT. (AUT) (°C)", "TEM_MAX"),
    ("TEMPERATURA MÍNIMA NA HORA ANT. (AUT) (°C)", "TEM_MIN"),
    ("TEMPERATURA ORVALHO MAX. NA HORA ANT. (AUT) (°C)", "PTO_MAX"),
    ("TEMPERATURA ORVALHO MIN. NA HORA ANT. (AUT) (°C)", "PTO_MIN"),
    ("UMIDADE REL. MAX. NA HORA ANT. (AUT) (%)", "UMD_MAX"),
    ("UMIDADE REL. MIN. NA HORA ANT. (AUT) (%)", "UMD_MIN"),
    ("UMIDADE RELATIVA DO AR, HORARIA (%)", "UMD_INS"),
    ("VENTO, DIREÇÃO HORARIA (gr) (° (gr))", "VEN_DIR"),
    ("VENTO, RAJADA MAXIMA (m/s)", "VEN_RAJ"),
    ("VENTO, VELOCIDADE HORARIA (m/s)", "VEN_VEL"),
]
_REGION = {
    **dict.fromkeys(("AC", "AM", "AP", "PA", "RO", "RR", "TO"), "N"),
    **dict.fromkeys(("AL", "BA", "CE", "MA", "PB", "PE", "PI", "RN", "SE"), "NE"),
    **dict.fromkeys(("DF", "GO", "MS", "MT"), "CO"),
    **dict.fromkeys(("ES", "MG", "RJ", "SP"), "SE"),
    **dict.fromkeys(("PR", "RS", "SC"), "S"),
}
_FILE_RANGE = re.compile(r"_(\d\d-\d\d-\d{4})_A_(\d\d-\d\d-\d{4})\.csv$", re.IGNORECASE)


def urllib_client(url: str, timeout: float) -> bytes:
    """GET `url` with urllib; an empty body for 204 No Content."""
    request = urllib.request.Request(
        url, headers={"User-Agent": f"nova-ray/{__version__}", "Accept": "application/json, text/csv"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return b"" if response.status == 204 else response.read()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


class HttpStatusError(EtlError):
    """A download answered an HTTP error that is not retried (``code``: its status)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def get_with_retries(
    url: str,
    client: HttpClient,
    tries: int,
    timeout: float,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    secret: str = "",
) -> bytes:
    """GET with up to `tries` attempts, sleeping ``backoff_s * 2**k`` between them.

    Connection errors, timeouts, HTTP 408/429 and 5xx are retried; other HTTP errors fail at once
    (`HttpStatusError`). `secret` (an API key in the URL) is written ``<token>`` in the messages.
    """
    tries = max(1, int(tries))
    shown = redact(url, secret)
    last: BaseException | None = None
    for attempt in range(tries):
        try:
            return client(url, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code < 500 and exc.code not in (408, 429):
                raise HttpStatusError(f"{shown}: {_reason(exc)}", exc.code) from None
            last = exc
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        except ValueError as exc:  # urllib's "unknown url type" quotes the URL, key and all
            raise EtlError(redact(f"{shown}: {exc}", secret)) from None
        if attempt + 1 < tries:
            sleep(backoff_s * 2**attempt)
    word = "try" if tries == 1 else "tries"
    message = " ".join(f"cannot reach {shown} after {tries} {word}: {_reason(last)}".split())
    raise EtlError(redact(message, secret))


def redact(text: str, secret: str) -> str:
    """`text` with `secret` (an API key) written ``<token>``."""
    return text.replace(secret, "<token>") if secret else text


def parse_bcb_series(spec: str) -> list[tuple[str, str]]:
    """``"usd_brl:1,ipca:433"`` -> [("usd_brl", "1"), ("ipca", "433")]."""
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, sep, code = part.partition(":")
        if not sep or not slug(name) or not code.strip().isdigit():
            raise EtlError(f"setting bcb_series: expected 'name:code,...', got {part!r}")
        out.append((slug(name), code.strip()))
    return out


def _windows(start: date, end: date, years: int) -> list[tuple[date, date]]:
    out, lo = [], start
    while lo <= end:
        try:
            nxt = lo.replace(year=lo.year + years)
        except ValueError:  # 29 Feb
            nxt = lo.replace(year=lo.year + years, day=28)
        hi = min(end, nxt - timedelta(days=1))
        out.append((lo, hi))
        lo = hi + timedelta(days=1)
    return out


def fetch_bcb(
    raw_dir: Path, name: str, code: str, base_url: str, start: date, end: date, get: Callable[[str], bytes]
) -> Path:
    """Download one SGS series to ``bcb/<name>.json`` (one entry per line), checked by the loader."""
    entries: dict[str, Any] = {}
    for lo, hi in _windows(start, end, BCB_MAX_YEARS):
        query = urllib.parse.urlencode(
            {"formato": "json", "dataInicial": f"{lo:%d/%m/%Y}", "dataFinal": f"{hi:%d/%m/%Y}"}, safe="/"
        )
        url = f"{base_url.format(code=code)}?{query}"
        body = get(url).decode("utf-8", errors="replace")
        if not body.strip():
            continue
        try:
            data = json.loads(body)
        except json.JSONDecodeError:
            raise EtlError(f"{url}: expected a JSON list, got {short(body)}") from None
        if not isinstance(data, list):
            raise EtlError(f"{url}: expected a JSON list, got {short(data)}")
        for e in data:
            if isinstance(e, dict) and "data" in e:
                entries[str(e["data"])] = e
    if not entries:
        raise EtlError(f"BCB series {name} ({code}) has no data between {start} and {end}")
    path = raw_dir / "bcb" / f"{name}.json"
    # a fetch of a shorter range adds to the file: it replaced two years of history with a month
    entries = _kept_entries(path) | entries
    ordered = sorted(entries.values(), key=lambda e: _sgs_day(str(e["data"])))
    text = "[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in ordered) + "\n]\n"
    try:  # fail before writing if the answer is unusable (named by its series: no file holds it yet)
        bcb_frame(*parse_bcb_json(text, path), path, name)
    except EtlError as exc:
        raise EtlError(f"BCB series {name} ({code}) from {base_url.format(code=code)}: the answer does not "
                       f"load: {exc.reason}") from None
    return atomic_write_bytes(path, text.encode("utf-8"))


def _sgs_day(text: str) -> tuple[int, int, int]:
    """An SGS `data` (dd/mm/yyyy) as (year, month, day) for sorting; unparsable ones first."""
    try:
        d, m, y = (int(x) for x in text.split("/"))
        return y, m, d
    except ValueError:
        return 0, 0, 0


def _kept_entries(path: Path) -> dict[str, Any]:
    """The entries of an SGS file already downloaded (by date), or none when it is absent or
    unreadable (a file the loader rejects is replaced)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, list):
        return {}
    return {str(e["data"]): e for e in data if isinstance(e, dict) and "data" in e}


def _inmet_value(value: Any) -> str:
    if value is None or str(value).strip() in ("", "null"):
        return "-9999"
    return str(value).strip().replace(".", ",")


def inmet_csv(records: list[dict[str, Any]], station: str) -> tuple[str, str]:
    """API records -> (file name stem, text of a yearly-file-format CSV)."""
    first = records[0]
    uf = str(first.get("UF") or "").upper()
    name = str(first.get("DC_NOME") or station).upper()
    lines = [
        f"REGIAO:;{_REGION.get(uf, '')}",
        f"UF:;{uf}",
        f"ESTACAO:;{name}",
        f"CODIGO (WMO):;{station}",
        f"LATITUDE:;{_inmet_value(first.get('VL_LATITUDE'))}",
        f"LONGITUDE:;{_inmet_value(first.get('VL_LONGITUDE'))}",
        f"ALTITUDE:;{_inmet_value(first.get('VL_ALTITUDE'))}",
        "DATA DE FUNDACAO:;",
        ";".join(h for h, _ in INMET_HEADER) + ";",
    ]
    for r in sorted(records, key=lambda r: (str(r.get("DT_MEDICAO")), str(r.get("HR_MEDICAO")))):
        day = str(r.get("DT_MEDICAO", "")).replace("-", "/")
        hour = str(r.get("HR_MEDICAO", "")).zfill(4)
        values = [_inmet_value(r.get(key)) for _, key in INMET_HEADER[2:]]
        lines.append(";".join([day, f"{hour} UTC", *values]) + ";")
    safe = re.sub(r"[^A-Z0-9]+", "-", name).strip("-") or station
    return f"INMET_{_REGION.get(uf, 'XX')}_{uf or 'XX'}_{station}_{safe}", "\n".join(lines) + "\n"


NO_TOKEN = ("INMET's API answers station data only with a token: set NOVA_RAY_INMET_TOKEN (ask INMET "
            "for one), or put the station's yearly CSV files from INMET's historical-data portal in "
            "raw/inmet/")


def inmet_url(base_url: str, station: str, lo: date, hi: date, token: str = "") -> str:
    """The API's hourly data of `station` from `lo` to `hi`: ``/token/estacao/.../<token>`` with a
    token, else the open ``/estacao/...`` (which INMET has stopped answering with data)."""
    base, span = base_url.rstrip("/"), f"{lo:%Y-%m-%d}/{hi:%Y-%m-%d}/{station}"
    return f"{base}/token/estacao/{span}/{token}" if token else f"{base}/estacao/{span}"


def fetch_inmet(
    raw_dir: Path, station: str, base_url: str, start: date, end: date, get: Callable[[str], bytes],
    token: str = "",
) -> list[Path]:
    """Download one station, one request and one yearly-format file per calendar year."""
    try:
        return _fetch_inmet(raw_dir, station, base_url, start, end, get, token)
    except EtlError as exc:  # the URL, or an answer quoted in a message, holds the key
        if not token:
            raise
        raise EtlError(redact(str(exc), token)) from None


def _fetch_inmet(
    raw_dir: Path, station: str, base_url: str, start: date, end: date, get: Callable[[str], bytes],
    token: str,
) -> list[Path]:
    written = []
    folder = raw_dir / "inmet"
    for year in range(start.year, end.year + 1):
        lo, hi = max(start, date(year, 1, 1)), min(end, date(year, 12, 31))
        url = inmet_url(base_url, station, lo, hi, token)
        try:
            body = get(url).decode("utf-8", errors="replace")
        except HttpStatusError as exc:
            if exc.code in (401, 403) and token:
                why = "INMET refused the token (check NOVA_RAY_INMET_TOKEN)"
            elif exc.code == 404 and not token:
                why = NO_TOKEN
            else:
                raise
            raise EtlError(f"{exc.reason}: {why}") from None
        if not body.strip():
            continue  # 204: no data for that year
        try:
            records = json.loads(body)
        except json.JSONDecodeError:
            raise EtlError(f"{url}: expected a JSON list, got {short(body)}") from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise EtlError(f"{url}: expected a JSON list of hourly records, got {short(records)}")
        if not records:
            continue
        stem, text = inmet_csv(records, station)
        path = folder / f"{stem}_{lo:%d-%m-%Y}_A_{hi:%d-%m-%Y}.CSV"
        # validated under a temporary name: a bad answer never replaces a good file of that range
        tmp = path.with_name(f".{path.name}.part")
        atomic_write_bytes(tmp, text.encode("latin-1", errors="replace"))
        try:
            read_inmet_file(tmp)
        except EtlError as exc:
            tmp.unlink(missing_ok=True)
            raise EtlError(f"{url}: the station's answer does not load: {exc}") from None
        os.replace(tmp, path)
        _drop_covered(folder, station, path, lo, hi)
        written.append(path)
    return written


def _drop_covered(folder: Path, station: str, new: Path, lo: date, hi: date) -> None:
    """Remove older files of `station` whose whole date range the new file covers."""
    for old in folder.glob(f"INMET_*_{station}_*"):
        m = _FILE_RANGE.search(old.name)
        if old == new or not m:
            continue
        a, b = (date(int(s[6:]), int(s[3:5]), int(s[:2])) for s in m.groups())
        if lo <= a and b <= hi:
            old.unlink(missing_ok=True)


def _in_clear(url: str) -> bool:
    """Whether `url` is plain http to another host (not loopback: a local test server or proxy)."""
    parts = urllib.parse.urlsplit(url.strip())
    return parts.scheme.lower() == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1")


def fetch_sources(
    raw_dir: str | Path,
    etl_config: Etl,
    client: HttpClient | None = None,
    start: date | None = None,
    end: date | None = None,
    sources: tuple[str, ...] = ("bcb", "inmet"),
    backoff_s: float = 1.0,
    notes: list[str] | None = None,
) -> list[Path]:
    """Download BCB series and INMET stations named in `etl_config` into `raw_dir`; return the files.
    `notes` gets a line for each station that had no data in the range (INMET answers 204).

    Range: `start` (default 1 January five years before `end`) to `end` (default today).
    Each URL gets ``etl_config.fetch_retries`` tries in all, with exponential backoff; a source
    that cannot be reached raises ``EtlError("cannot reach <url> after N tries: ...")``.
    """
    raw = Path(raw_dir)
    end = end or date.today()
    start = start or date(end.year - 5, 1, 1)
    if end < start:
        raise EtlError(f"end {end} is before start {start}")
    for name in ("bcb_base_url", "inmet_base_url"):  # urllib's own error would quote the whole URL
        if not str(getattr(etl_config, name)).lower().startswith(("http://", "https://")):
            raise EtlError(f"setting {name}: expected an http:// or https:// URL, got "
                           f"{short(str(getattr(etl_config, name)))}")
    client = client or urllib_client
    token = etl_config.inmet_token.strip()  # redacted in every message (`redact`)
    if token and "inmet" in sources and _in_clear(etl_config.inmet_base_url):
        raise EtlError(f"setting inmet_base_url {short(etl_config.inmet_base_url)}: http:// would send the "
                       "INMET token in clear text; use https:// (http:// only to this host)")

    def get(url: str) -> bytes:
        return get_with_retries(url, client, etl_config.fetch_retries, etl_config.fetch_timeout_s, backoff_s,
                                secret=token)

    written: list[Path] = []
    if "bcb" in sources:
        for name, code in parse_bcb_series(etl_config.bcb_series):
            written.append(fetch_bcb(raw, name, code, etl_config.bcb_base_url, start, end, get))
    if "inmet" in sources:
        for station in (s.strip().upper() for s in etl_config.inmet_stations.split(",")):
            if not station:
                continue
            got = fetch_inmet(raw, station, etl_config.inmet_base_url, start, end, get, token)
            if not got and notes is not None:  # a closed station, a typo in its code: not silent
                why = "check the code in [etl] inmet_stations" + ("" if token else f"; {NO_TOKEN}")
                notes.append(f"INMET station {station}: no data from {start} to {end} ({why})")
            written += got
    return written
