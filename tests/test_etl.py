"""ETL of external factors: loaders, broken files, build_features, future_features, calendar, fetch."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import urllib.parse
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nova_ray.config import Etl
from nova_ray.etl import (
    EtlError,
    build_features,
    calendar_features,
    climatology,
    fetch_sources,
    future_features,
    load_anatel,
    load_bcb,
    load_inmet,
    load_regressors,
    read_anatel_file,
    read_bcb_file,
    read_features,
    read_inmet_file,
    read_inmet_metadata,
    read_regressor_file,
)
from nova_ray.etl.features import DICTIONARY_FILE, FEATURES_FILE, STATIONS_FILE, day_of_year
from nova_ray.etl.fetch import NO_TOKEN

DATA = Path(__file__).parent / "data"
RAW = DATA / "raw"
A401_2023 = RAW / "inmet" / "INMET_NE_BA_A401_SALVADOR_01-01-2023_A_31-12-2023.CSV"
A401_2018 = RAW / "inmet" / "INMET_NE_BA_A401_SALVADOR_01-01-2018_A_31-12-2018.CSV"


def day(text: str) -> pd.Timestamp:
    return pd.Timestamp(text)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# ---------------------------------------------------------------- INMET


def test_inmet_new_format_daily_values() -> None:
    df = read_inmet_file(A401_2023)
    assert list(df.columns) == ["date", "station", "rain_mm", "temp_mean_c", "humidity_mean_pct"]
    assert df["station"].tolist() == ["A401", "A401"]
    first, second = df.iloc[0], df.iloc[1]
    assert first["date"] == day("2023-01-01")
    assert first["rain_mm"] == pytest.approx(1.6)  # 0 + ",2" + "1,4"
    assert first["temp_mean_c"] == pytest.approx(27.2)  # -9999 hour skipped
    assert first["humidity_mean_pct"] == pytest.approx(75.0)
    assert np.isnan(second["rain_mm"])  # every hour -9999
    assert second["humidity_mean_pct"] == pytest.approx(85.0)


def test_inmet_an_hour_given_twice_counts_once(tmp_path: Path) -> None:
    """Files joined by hand repeat hours: the rain of a repeated hour is not summed twice."""
    lines = A401_2023.read_bytes().split(b"\n")
    first_day = [x for x in lines if x.startswith(b"2023/01/01")]
    twice = tmp_path / A401_2023.name
    twice.write_bytes(b"\n".join(lines[:9] + first_day + lines[9:]))
    assert read_inmet_file(twice).equals(read_inmet_file(A401_2023))


def test_inmet_day_with_too_many_hours_missing_has_no_rain(tmp_path: Path) -> None:
    """A day's rain is a sum: 6 of 24 hours missing still gives it, 7 missing or a day cut short
    (the file ends at 11:00) leave it NaN rather than undercounted; the means of temperature and
    humidity need half the day's hours (the partial last day of a download, its night hours
    alone, is no daily mean)."""
    lines = _inmet_lines()
    template = lines[9].split(";")

    def hour(day: str, h: int, rain: str) -> str:
        return ";".join([day, f"{h:02d}00 UTC", rain, *template[3:]])

    rows = [hour("2023/01/01", h, "-9999" if h < 6 else "0,5") for h in range(24)]
    rows += [hour("2023/01/02", h, "-9999" if h < 7 else "0,5") for h in range(24)]
    rows += [hour("2023/01/03", h, "0,5") for h in range(11)]
    df = read_inmet_file(_write(tmp_path, INMET_NAME, lines[:9] + rows))
    assert df["rain_mm"].iloc[0] == pytest.approx(9.0)  # 18 hours of 0.5 mm
    assert np.isnan(df["rain_mm"].iloc[1]) and np.isnan(df["rain_mm"].iloc[2])
    assert df["temp_mean_c"].notna().tolist() == [True, True, False]
    assert df["humidity_mean_pct"].notna().tolist() == [True, True, False]


def test_inmet_old_format_latin1_empty_fields_crlf() -> None:
    df = read_inmet_file(A401_2018)
    assert df["date"].tolist() == [day("2018-01-01"), day("2018-01-02")]
    assert df["rain_mm"].iloc[0] == pytest.approx(1.4)
    assert df["temp_mean_c"].iloc[0] == pytest.approx(26.0)
    assert df["humidity_mean_pct"].iloc[0] == pytest.approx(81.0)
    assert np.isnan(df["rain_mm"].iloc[1])
    meta = read_inmet_metadata(A401_2018)
    assert meta["ESTACAO"] == "SALVADOR" and meta["CODIGO (WMO)"] == "A401"


def test_load_inmet_folder_all_stations() -> None:
    df = load_inmet(RAW / "inmet")
    assert sorted(df["station"].unique()) == ["A401", "A413"]
    assert len(df) == 6
    assert df["date"].is_monotonic_increasing


def _inmet_lines() -> list[str]:
    return A401_2023.read_bytes().decode("latin-1").splitlines()


def _write(tmp: Path, name: str, lines: list[str], encoding: str = "latin-1") -> Path:
    path = tmp / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


INMET_NAME = "INMET_NE_BA_A401_SALVADOR_01-01-2023_A_31-12-2023.CSV"


def test_inmet_utf8_file_reads_the_same(tmp_path: Path) -> None:
    path = _write(tmp_path, INMET_NAME, _inmet_lines(), encoding="utf-8")
    pd.testing.assert_frame_equal(read_inmet_file(path), read_inmet_file(A401_2023))


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda ls: ls[1:], r":8: found the column header at line 8; INMET files have 8 metadata lines"),
        (lambda ls: ["X;Y", *ls[1:]], r":1: expected an INMET metadata line 'KEY:;value'"),
        (lambda ls: ls[:8], r":9: missing the column header line"),
        (lambda ls: ls[:9], r":9: no data rows after the column header"),
        (
            lambda ls: [*ls[:8], ls[8].replace("UMIDADE RELATIVA DO AR", "UMIDADE"), *ls[9:]],
            r":9: missing column 'UMIDADE RELATIVA DO AR, HORARIA \(%\)'",
        ),
        (
            lambda ls: [*ls[:10], ls[10].replace("2023/01/01", "2023/13/01"), *ls[11:]],
            r":11: column 'Data': unparsable date '2023/13/01'",
        ),
        (
            lambda ls: [*ls[:10], ls[10].replace(";28,3;", ";abc;"), *ls[11:]],
            r":11: column 'TEMPERATURA DO AR - BULBO SECO, HORARIA \(°C\)': cannot parse 'abc' as a number",
        ),
        (lambda ls: [*ls[:9], "2023/01/01;0000 UTC;0;", *ls[9:]], r":10: expected at least 16 ';'-separated"),
        # a download cut short inside the last row, in the humidity it reads: 80 was read as 8
        (lambda ls: [*ls[:-1], ls[-1][: ls[-1].index(";80;") + 2]],
         r":15: expected 19 ';'-separated fields like the header, got 16: a file cut short\?"),
    ],
)
def test_inmet_broken_files(tmp_path: Path, edit, expected: str) -> None:
    path = _write(tmp_path, INMET_NAME, edit(_inmet_lines()))
    with pytest.raises(EtlError, match=expected) as exc:
        read_inmet_file(path)
    assert one_line(exc).startswith(str(path))


def test_empty_files_are_named(tmp_path: Path) -> None:
    for name, reader in [(INMET_NAME, read_inmet_file), ("usd_brl.json", read_bcb_file)]:
        (tmp_path / name).write_bytes(b"\n  \n")
        with pytest.raises(EtlError, match=r": empty file$") as exc:
            reader(tmp_path / name)
        assert one_line(exc) == f"{tmp_path / name}: empty file"


# ---------------------------------------------------------------- BCB


def test_bcb_json_csv_and_monthly_forward_fill() -> None:
    usd = read_bcb_file(RAW / "bcb" / "usd_brl.json")
    assert list(usd.columns) == ["date", "usd_brl"]
    assert usd["date"].tolist() == list(pd.date_range("2023-01-02", "2023-01-05"))
    assert usd["usd_brl"].tolist() == pytest.approx([5.354, 5.453, 5.453, 5.35])
    ipca = read_bcb_file(RAW / "bcb" / "ipca.csv")
    assert len(ipca) == 32  # 1 Dec .. 1 Jan, every calendar day
    assert ipca.set_index("date").loc["2022-12-31", "ipca"] == pytest.approx(0.62)
    assert read_bcb_file(RAW / "bcb" / "selic.json")["selic"].iloc[0] == pytest.approx(13.75)  # comma
    both = load_bcb(RAW / "bcb")
    assert list(both.columns) == ["date", "ipca", "selic", "usd_brl"]
    assert both["date"].is_monotonic_increasing and both["date"].diff().dropna().eq(pd.Timedelta("1D")).all()


def test_bcb_csv_empty_value_and_last_row_of_a_date(tmp_path: Path) -> None:
    """An empty valor is a missing value (as in JSON), not a row of one field; of two rows with one
    date the file's last wins."""
    p = tmp_path / "selic.csv"
    p.write_text('"data";"valor"\n"02/01/2023";"13,75"\n"03/01/2023";""\n"04/01/2023";"13,65"\n'
                 '"02/01/2023";"13,70"\n', encoding="utf-8")
    got = read_bcb_file(p)
    assert got["selic"].tolist() == pytest.approx([13.70, 13.70, 13.65])  # the gap forward-filled
    rows = [{"data": f"0{2 + i % 3}/01/2023", "valor": str(i)} for i in range(40)]
    (tmp_path / "usd_brl.json").write_text(json.dumps(rows), encoding="utf-8")
    assert read_bcb_file(tmp_path / "usd_brl.json")["usd_brl"].tolist() == [39.0, 37.0, 38.0]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("usd_brl.json", '[{"data": "02/01/2023", "valor": "5.1"},\n {"data": ', r":2: invalid JSON"),
        ("usd_brl.json", '{"erro": "Value(s) not found"}', r":1: expected a JSON list"),
        (
            "usd_brl.json",
            '[\n {"data": "02/01/2023", "valor": "5.1"},\n {"data": "32/01/2023", "valor": "5.2"}\n]',
            r":3: column 'data': unparsable date '32/01/2023'",
        ),
        (
            "usd_brl.json",
            '[\n {"data": "02/01/2023", "valor": "5.1"},\n\n {"data": "03/01/2023", "valor": "x5"}\n]',
            r":4: column 'valor': cannot parse 'x5' as a number",
        ),
        ("usd_brl.json", '[\n {"data": "02/01/2023"}\n]', r":2: entry 1: expected"),
        ("ipca.csv", '"data";"valor"\n"01/12/2022";"0,62"\n"01/01/2023";"n/d"\n', r":3: column 'valor'"),
        ("ipca.csv", '"date";"value"\n"01/12/2022";"0,62"\n', r':1: expected the header "data";"valor"'),
        ("ipca.csv", '"data";"valor"\n', r":1: no data rows"),
    ],
)
def test_bcb_broken_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(EtlError, match=expected) as exc:
        read_bcb_file(tmp_path / name)
    assert one_line(exc).startswith(str(tmp_path / name))


# ---------------------------------------------------------------- Anatel and regressors


def test_anatel_latin1_month_dates_thousands() -> None:
    df = read_anatel_file(RAW / "anatel" / "5g_rollout.csv")
    assert list(df.columns) == ["date", "g5_municipios_5g", "g5_estacoes_5g"]
    # a month's count is its state at the month's end: dated then, not seen before it existed
    assert df["date"].iloc[0] == day("2022-12-31") and df["date"].iloc[-1] == day("2023-01-31")
    assert df.set_index("date").loc["2023-01-30", "g5_estacoes_5g"] == 1250
    assert df["g5_estacoes_5g"].iloc[-1] == 1480
    assert load_anatel(RAW / "anatel").equals(df)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data,sites\n2023-01-01,5\n2023-02-01,6\n", None),
        ("Data;Estações 5G\n01/01/2023;5\n15/01/2023;6\n", None),
        ("date,sites\n2023-01,5\n2023-02,6\n", None),
        ("UF;sites\nBA;5\n", r":1: no date column"),
        ("data;sites\n2023-01-01;5\n2023-01-99;6\n", r":3: column 'data': unparsable date '2023-01-99'"),
        ("data;sites\n2023-01-01;5\n2023-01-02;muitos\n", r":3: column 'sites': cannot parse 'muitos'"),
        ("data;sites\n2023-01-01;5;7;8\n", r":2: expected 2 ';'-separated fields"),
        # a mistyped year: a traceback (pandas' nanosecond range) or a table of 66,000 days
        ("Data;Estacoes\n0024-01-01;10\n", r":2: column 'Data': date '0024-01-01' outside 1900-01-01"),
        ("data;sites\n2023-01-01;5\n2204-01-01;6\n", r":3: column 'data': date '2204-01-01' outside "),
    ],
)
def test_anatel_variants_and_errors(tmp_path: Path, text: str, expected: str | None) -> None:
    path = tmp_path / "rollout.csv"
    path.write_text(text, encoding="utf-8")
    if expected is None:
        df = read_anatel_file(path)
        assert df.columns[1].startswith("g5_") and df.iloc[:, 1].iloc[-1] == 6
        return
    with pytest.raises(EtlError, match=expected) as exc:
        read_anatel_file(path)
    one_line(exc)


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("Data;Estacoes\n01/01/2024;999.0\n01/02/2024;1250.0\n", [999, 1250]),  # pandas' to_csv(sep=';')
        ('Data,Estacoes\n2024-01-01,999.00\n2024-02-01,"1,250"\n', [999, 1250]),  # US thousands
        ("Data;Estacoes\n01/01/2024;1.250\n01/02/2024;2.300\n", [1250, 2300]),  # Brazilian thousands
        ("Data;Estacoes\n01/01/2024;1.250\n01/02/2024;2,5\n", [1250, 2.5]),  # decimal comma shown
        ("Data,Estacoes\n2024-01-01,1.250\n2024-02-01,2.5\n", [1.25, 2.5]),  # decimal points shown
        ('Data,Estacoes\n2024-01-01,"1,250"\n2024-02-01,"2,300"\n', [1250, 2300]),
    ],
)
def test_anatel_decimal_marks_follow_the_column(tmp_path: Path, text: str, values: list[float]) -> None:
    """A column's own values say which mark is decimal: `999.0` and `1250.0` in a `;` file were
    read as 9990 and 12500 (points taken as thousands), and `"1,250"` after `999.00` as 1.25."""
    path = tmp_path / "rollout.csv"
    path.write_text(text, encoding="utf-8")
    df = read_anatel_file(path)
    assert df.iloc[[0, -1], 1].tolist() == values


def test_a_rate_below_one_in_a_semicolon_file_is_never_read_as_thousands(tmp_path: Path) -> None:
    """`0.125` in a `;` file read as 125 (no number grouped by thousands starts with `0.`), as
    the demand reader already knew; `1.250` in such a file is still 1250."""
    rates = tmp_path / "rates.csv"
    rates.write_text("date;taxa\n2024-01-01;0.125\n2024-02-01;0.250\n")
    assert read_regressor_file(rates)["rates_taxa"].iloc[[0, -1]].tolist() == [0.125, 0.25]
    rates.write_text("date;pedidos\n2024-01-01;1.250\n2024-02-01;2.500\n")
    assert read_regressor_file(rates)["rates_pedidos"].iloc[[0, -1]].tolist() == [1250, 2500]


def test_regressors_prefix_and_errors(tmp_path: Path) -> None:
    df = load_regressors(RAW / "regressors")
    assert list(df.columns) == ["date", "campaign_planned_visits", "campaign_budget_k"]
    assert df["campaign_planned_visits"].tolist() == [10, 10, 12]
    bad = tmp_path / "promo.csv"
    bad.write_text("day,x\n2023-01-01,1\n")
    with pytest.raises(EtlError, match=r"promo.csv:1: no 'date' column"):
        read_regressor_file(bad)
    bad.write_text("date,x\n2023-01-01,1\n2023-01-02,?\n")
    with pytest.raises(EtlError, match=r"promo.csv:3: column 'x': cannot parse '\?' as a number"):
        read_regressor_file(bad)
    bad.write_text("date,x\n2023-01-01,1\n31/12/9999,2\n")  # an export's "open end"
    with pytest.raises(EtlError, match=r"promo.csv:3: column 'date': date '31/12/9999' outside 1900-01-01"):
        read_regressor_file(bad)
    # a quoted English number keeps its thousands commas out of the decimals (was 1.2345)
    good = tmp_path / "budget.csv"
    good.write_text('date,k\n2023-01-01,"1,234.5"\n2023-01-02,"1.234,5"\n2023-01-03,"0,5"\n')
    assert read_regressor_file(good)["budget_k"].tolist() == [1234.5, 1234.5, 0.5]


# ---------------------------------------------------------------- calendar


def test_calendar_national_state_municipal() -> None:
    cal = calendar_features("2024-01-01", "2024-12-31").set_index("date")
    assert len(cal) == 366
    expect = {
        "2024-09-07": ("national", "Independência do Brasil"),
        "2024-11-15": ("national", "Proclamação da República"),
        "2024-07-02": ("state", "Independência da Bahia"),
        "2024-06-24": ("municipal", "São João"),
        "2024-12-08": ("municipal", "Nossa Senhora da Conceição da Praia"),
        "2024-05-30": ("municipal", "Corpus Christi"),
    }
    for when, (level, name) in expect.items():
        row = cal.loc[when]
        assert (row["is_holiday"], row["holiday_level"], row["holiday_name"]) == (1, level, name)
    carnival = cal.loc["2024-02-13"]
    assert carnival["is_carnival"] == 1 and carnival["is_holiday"] == 0
    plain = cal.loc["2024-03-05"]
    assert (plain["is_holiday"], plain["holiday_name"], plain["is_weekend"]) == (0, "", 0)
    assert cal.loc["2024-03-09", "is_weekend"] == 1 and cal.loc["2024-03-09", "day_of_week"] == 5
    assert cal["month"].min() == 1 and cal["month"].max() == 12


# ---------------------------------------------------------------- build_features


def test_build_features_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "processed"
    res = build_features(RAW, out, start="2022-12-30", end="2023-01-05")
    assert res.path == out / FEATURES_FILE and res.rows == 7
    assert res.stations_path == out / STATIONS_FILE and res.dictionary_path == out / DICTIONARY_FILE
    assert len(res.sources) == 8
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    f = read_features(res.path).set_index("date")
    assert len(f) == 7 and f.index.is_monotonic_increasing
    assert f.loc["2023-01-01", "rain_mm"] == pytest.approx(1.8)  # mean of A401 1.6 and A413 2.0
    assert f.loc["2023-01-01", "temp_mean_c"] == pytest.approx(26.6)
    assert f.loc["2023-01-02", "rain_mm"] == pytest.approx(3.0)  # A401 missing -> A413 alone
    assert f.loc["2023-01-01", "climate_imputed"] == 0
    # 30 Dec has no observation: climatology of 1-2 January (1.6 and 3.0 mm) smoothed
    assert f.loc["2022-12-30", "climate_imputed"] == 1
    assert f.loc["2022-12-30", "rain_mm"] == pytest.approx(2.3)
    assert f.loc["2022-12-30", "usd_brl"] == pytest.approx(5.354)  # back-filled before first quote
    assert f.loc["2023-01-04", "usd_brl"] == pytest.approx(5.453)  # forward-filled
    assert f.loc["2023-01-05", "ipca"] == pytest.approx(0.53)
    # January's count (1480) is January's end: the table's 5 January still has December's
    assert f.loc["2022-12-30", "g5_estacoes_5g"] == 1250 and f.loc["2023-01-05", "g5_estacoes_5g"] == 1250
    assert f.loc["2023-01-05", "campaign_planned_visits"] == 12
    assert f.loc["2023-01-01", "is_holiday"] == 1
    assert not f.drop(columns=["holiday_level", "holiday_name"]).isna().any().any()
    assert set(res.feature_columns) == set(f.columns) - {"holiday_level", "holiday_name"}
    raw_dates = pd.read_parquet(res.path)["date"]
    assert isinstance(raw_dates.iloc[0], date)  # stored as parquet date32
    stations = read_features(res.stations_path)
    assert sorted(stations["station"].unique()) == ["A401", "A413"] and len(stations) == 4
    dictionary = json.loads(res.dictionary_path.read_text(encoding="utf-8"))
    assert set(dictionary) == set(f.columns) | {"date"}
    assert dictionary["usd_brl"]["sources"] == ["bcb/usd_brl.json"]
    assert dictionary["temp_mean_c"]["unit"] == "°C" and len(dictionary["rain_mm"]["sources"]) == 3
    assert dictionary["g5_estacoes_5g"]["sources"] == ["anatel/5g_rollout.csv"]


def test_inmet_yearly_zips_give_the_configured_stations(tmp_path: Path) -> None:
    """INMET's historical-data portal publishes one zip per year with every automatic station's
    CSV (at its top, or in a folder of the year). Such a zip in inmet/ is read for the stations of
    [etl] inmet_stations only (all of them averaged would be the whole country's weather)."""
    import zipfile

    def raw_with(*zips: tuple[str, list[tuple[str, bytes]]]) -> Path:
        raw = tmp_path / f"raw{len(list(tmp_path.iterdir()))}"
        shutil.copytree(RAW / "bcb", raw / "bcb")
        (raw / "inmet").mkdir()
        for name, members in zips:
            with zipfile.ZipFile(raw / "inmet" / name, "w", zipfile.ZIP_DEFLATED) as zf:
                for member, data in members:
                    zf.writestr(member, data)
        return raw

    files = sorted((RAW / "inmet").glob("*2023*.CSV"))  # A401 and A413 of 2023
    members = [(f"2023/{f.name}", f.read_bytes()) for f in files] + [("2023/leia-me.txt", b"x")]
    raw = raw_with(("2023.zip", members))
    res = build_features(raw, tmp_path / "out", start="2023-01-01", end="2023-01-05", inmet_stations="a401")
    alone = tmp_path / "alone"
    shutil.copytree(RAW / "bcb", alone / "bcb")
    (alone / "inmet").mkdir()
    shutil.copy(files[0], alone / "inmet")  # the A401 file as it is
    want = build_features(alone, tmp_path / "out2", start="2023-01-01", end="2023-01-05")
    got = read_features(res.path)
    assert got.equals(read_features(want.path)) and got.loc[0, "rain_mm"] == pytest.approx(1.6)  # not 1.8
    assert json.loads(res.dictionary_path.read_text())["rain_mm"]["sources"] == ["inmet/2023.zip"]
    assert read_features(res.stations_path)["station"].unique().tolist() == ["A401"]
    both = build_features(raw, tmp_path / "out3", start="2023-01-01", end="2023-01-05",
                          inmet_stations="A401, A413")
    assert read_features(both.path).loc[0, "rain_mm"] == pytest.approx(1.8)  # the two stations' mean
    (raw / "inmet" / "2023.zip").rename(raw / "inmet" / "zz-2023.zip")  # after the CSV in path order
    edited = files[0].read_bytes().replace(b"2023/01/01;0000 UTC;0;", b"2023/01/01;0000 UTC;5;", 1)
    assert edited != files[0].read_bytes()
    (raw / "inmet" / files[0].name).write_bytes(edited)  # the station's own file, corrected
    mine = build_features(raw, tmp_path / "out5", start="2023-01-01", end="2023-01-05", inmet_stations="A401")
    assert read_features(mine.path).loc[0, "rain_mm"] == pytest.approx(1.6 + 5.0)  # the CSV's day wins
    (raw / "inmet" / files[0].name).unlink()

    every = r"2023\.zip: an INMET zip holds every station .* inmet_stations"
    with pytest.raises(EtlError, match=every) as exc:
        build_features(raw, tmp_path / "out4")
    one_line(exc)
    absent = r"2023\.zip: no file of station A999 \(\[etl\] inmet_stations\) among its 2"
    with pytest.raises(EtlError, match=absent):
        build_features(raw, tmp_path / "out4", inmet_stations="A999")
    bad = files[0].read_bytes().replace(b"2023/01/01;0000 UTC", b"2023/13/01;0000 UTC", 1)
    broken = raw_with(("2023.zip", [(f"2023/{files[0].name}", bad)]))
    with pytest.raises(EtlError, match=rf"2023\.zip/2023/{files[0].name}:10: .*unparsable date"):
        build_features(broken, tmp_path / "out4", inmet_stations="A401")
    spoilt = raw_with(("2023.zip", members))
    data = bytearray((spoilt / "inmet" / "2023.zip").read_bytes())
    data[300:340] = bytes(40)  # inside the first member's compressed data: the directory reads fine
    (spoilt / "inmet" / "2023.zip").write_bytes(bytes(data))
    with pytest.raises(EtlError, match=rf"2023\.zip/2023/{files[0].name}: cannot unpack it: ") as exc:
        build_features(spoilt, tmp_path / "out4", inmet_stations="A401")
    one_line(exc)
    cut = raw_with(("2023.zip", members))
    data = (cut / "inmet" / "2023.zip").read_bytes()
    (cut / "inmet" / "2023.zip").write_bytes(data[: len(data) // 2])  # a download cut short
    with pytest.raises(EtlError, match=r"2023\.zip: not a readable zip file"):
        build_features(cut, tmp_path / "out4", inmet_stations="A401")


def test_build_features_partial_layout_and_errors(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(RAW / "bcb", raw / "bcb")
    res = build_features(raw, tmp_path / "out")
    f = read_features(res.path)
    assert f["date"].min() == day("2022-12-01") and f["date"].max() == day("2023-01-05")
    assert "rain_mm" not in f.columns and "usd_brl" in f.columns
    assert read_features(res.stations_path).empty
    with pytest.raises(EtlError, match="raw folder not found"):
        build_features(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EtlError, match="no raw sources found"):
        build_features(tmp_path / "empty", tmp_path / "out")
    cal_only = build_features(tmp_path / "empty", tmp_path / "out2", start="2024-01-01", end="2024-01-31")
    assert cal_only.rows == 31
    (raw / "bcb" / "usd_brl.json").write_text("[oops]")
    with pytest.raises(EtlError, match=r"usd_brl.json:1: invalid JSON"):
        build_features(raw, tmp_path / "out")


# ---------------------------------------------------------------- future_features


def _history() -> pd.DataFrame:
    dates = pd.date_range("2021-01-01", "2023-12-31", freq="D")
    doy = dates.dayofyear.to_numpy()
    temp = 26 + 3 * np.cos(2 * np.pi * (doy - 30) / 365)
    hist = calendar_features(dates[0], dates[-1])
    hist["temp_mean_c"] = temp
    hist["rain_mm"] = np.where(dates.month.isin([4, 5, 6]), 8.0, 1.0)
    hist["climate_imputed"] = 0
    hist.loc[hist["date"] == "2022-03-15", ["temp_mean_c", "climate_imputed"]] = [999.0, 1]
    hist["usd_brl"] = np.linspace(5.0, 5.5, len(dates))
    hist["g5_estacoes_5g"] = np.arange(len(dates), dtype=float)
    return hist


def test_future_features_climatology_calendar_last_value() -> None:
    hist = _history()
    dates = pd.date_range("2024-03-01", "2024-09-30", freq="D")
    fut = future_features(hist, dates)
    assert list(fut.columns) == list(hist.columns) and len(fut) == len(dates)
    fut = fut.set_index("date")
    # climatology: the smooth seasonal curve, the imputed 999 day ignored
    assert fut.loc["2024-03-15", "temp_mean_c"] == pytest.approx(
        26 + 3 * np.cos(2 * np.pi * 44 / 365), abs=0.1
    )
    assert fut.loc["2024-05-15", "rain_mm"] == pytest.approx(8.0)
    assert fut["climate_imputed"].eq(1).all()
    assert fut["usd_brl"].eq(5.5).all() and fut["g5_estacoes_5g"].eq(len(hist) - 1).all()
    assert fut.loc["2024-09-07", "is_holiday"] == 1 and fut.loc["2024-07-02", "holiday_level"] == "state"
    assert fut.loc["2024-03-02", "is_weekend"] == 1
    assert fut["is_holiday"].dtype == hist["is_holiday"].dtype


def test_future_features_future_table_overrides() -> None:
    hist = _history()
    dates = pd.date_range("2024-01-01", "2024-01-10", freq="D")
    table = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-01-04", "2024-01-02"]),
            "usd_brl": [6.0, np.nan],
            "temp_mean_c": [30.0, np.nan],
            "unknown": [1, 2],
        }
    )
    fut = future_features(hist, dates, table).set_index("date")
    assert fut.loc["2024-01-03", "usd_brl"] == 5.5  # before the supplied value: last known
    assert fut.loc["2024-01-04", "usd_brl"] == 6.0 and fut.loc["2024-01-10", "usd_brl"] == 6.0
    assert fut.loc["2024-01-04", "temp_mean_c"] == 30.0
    assert fut.loc["2024-01-05", "temp_mean_c"] != 30.0  # climate is not carried forward
    assert "unknown" not in fut.columns
    assert fut.loc["2024-01-04", "climate_imputed"] == 1  # rain still from the climatology


def test_climatology_leap_day_and_gaps() -> None:
    frame = pd.DataFrame({"date": pd.to_datetime(["2024-02-29", "2024-03-01"]), "rain_mm": [4.0, 6.0]})
    clim = climatology(frame, ["rain_mm"], window=1)
    assert clim.loc[59, "rain_mm"] == 4.0 and clim.loc[60, "rain_mm"] == 6.0
    assert clim["rain_mm"].notna().all()  # circular interpolation fills the rest


def test_climatology_of_whole_years_is_the_annual_cycle() -> None:
    """Three years of noisy days: the harmonic fit lands nearer the true cycle than the 15-day
    mean per day of year, which follows single wet days."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2022-01-01", "2024-12-31", freq="D")
    truth = 1.0 + 0.6 * np.cos(2 * np.pi * (np.arange(1, 366) - 150) / 365.0)
    noisy = truth[day_of_year(dates) - 1] + rng.normal(0, 1.0, len(dates))
    frame = pd.DataFrame({"date": dates, "rain_mm": noisy})
    cycle = climatology(frame, ["rain_mm"])["rain_mm"].to_numpy()
    windowed = climatology(frame, ["rain_mm"], harmonics=0)["rain_mm"].to_numpy()
    err_cycle, err_window = (float(np.sqrt(np.mean((c - truth) ** 2))) for c in (cycle, windowed))
    assert err_cycle < 0.1 and err_cycle < 0.6 * err_window, (err_cycle, err_window)
    # within the observed range: a dry season does not get negative rain
    dry = frame.assign(rain_mm=np.where(frame["date"].dt.month.between(6, 9), 0.0, 8.0))
    assert climatology(dry, ["rain_mm"])["rain_mm"].min() >= 0.0


def test_climatology_of_part_of_a_year_is_the_smoothed_day_mean() -> None:
    """Half a year of data cannot fix an annual cycle (a fit would extrapolate into the missing
    season): the windowed day-of-year mean stands, the missing days interpolated."""
    dates = pd.date_range("2023-01-01", "2023-06-30", freq="D")
    frame = pd.DataFrame({"date": dates, "rain_mm": np.linspace(0.0, 9.0, len(dates))})
    assert climatology(frame, ["rain_mm"]).equals(climatology(frame, ["rain_mm"], harmonics=0))
    # one month short of a full year is still a missing season
    year = pd.DataFrame({"date": pd.date_range("2023-01-01", "2023-12-31", freq="D")})
    year["rain_mm"] = np.where(year["date"].dt.month == 10, np.nan, 5.0)
    assert climatology(year, ["rain_mm"]).equals(climatology(year, ["rain_mm"], harmonics=0))
    year.loc[year["date"].dt.month == 10, "rain_mm"] = 5.0
    assert climatology(year, ["rain_mm"])["rain_mm"].to_numpy() == pytest.approx(5.0)


def test_sources_starting_after_the_range_are_back_filled(tmp_path: Path) -> None:
    """A range that ends before a source's first value gets that first value (back-filled), not a
    column of NaN."""
    res = build_features(RAW, tmp_path, start="2022-11-01", end="2022-11-05")
    f = read_features(res.path)
    assert f["usd_brl"].tolist() == pytest.approx([5.354] * 5)  # the series starts 2023-01-02
    assert f["ipca"].notna().all()


def test_future_features_on_built_table(tmp_path: Path) -> None:
    res = build_features(RAW, tmp_path, start="2022-12-30", end="2023-01-05")
    fut = future_features(read_features(res.path), pd.date_range("2023-01-06", periods=3))
    assert fut["usd_brl"].eq(5.35).all() and fut["g5_estacoes_5g"].eq(1250).all()
    assert fut["rain_mm"].notna().all()


# ---------------------------------------------------------------- fetch (loopback only)


class _Recorded(BaseHTTPRequestHandler):
    """Serves the recorded API answers in tests/data/http; a path in ``fail_once`` answers 503 first."""

    fail_once: set[str] = set()
    seen: list[str] = []
    bodies: dict[str, bytes] = {}  # path -> an answer given instead of the recorded one
    gone: set[str] = set()  # paths answered 404 (INMET's open data path since it wants a token)
    TOKEN = "s3cr3t"  # the key INMET's `/token/estacao/.../<token>` path takes here

    def do_GET(self) -> None:  # noqa: N802
        url = urllib.parse.urlsplit(self.path)
        type(self).seen.append(self.path)
        if url.path in self.fail_once:
            self.fail_once.discard(url.path)
            self.send_error(503)
            return
        parts = url.path.strip("/").split("/")
        if url.path in self.gone or (parts[1:2] == ["token"] and parts[-1] != self.TOKEN):
            self.send_error(404 if url.path in self.gone else 403)
            return
        station = parts[-2] if parts[1:2] == ["token"] else parts[-1]
        name = {"bcb": f"bcb_{parts[1] if len(parts) > 1 else ''}", "inmet": f"inmet_{station}"}
        recorded = DATA / "http" / f"{name.get(parts[0], '-')}.json"
        if url.path not in self.bodies and not recorded.is_file():
            self.send_error(404)
            return
        body = self.bodies.get(url.path) or recorded.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorded)
    _Recorded.seen = []
    _Recorded.fail_once = set()
    _Recorded.bodies = {}
    _Recorded.gone = set()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _cfg(base: str, **kw: object) -> Etl:
    cfg = Etl(
        bcb_base_url=f"{base}/bcb/{{code}}/dados",
        bcb_series="usd_brl:1,ipca:433",
        inmet_base_url=f"{base}/inmet",
        inmet_stations="A401",
        fetch_retries=3,
        fetch_timeout_s=5.0,
    )
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


def test_fetch_writes_raw_layout_with_retry(server: str, tmp_path: Path) -> None:
    _Recorded.fail_once = {"/bcb/1/dados"}
    raw = tmp_path / "raw"
    paths = fetch_sources(raw, _cfg(server), start=date(2023, 1, 1), end=date(2023, 1, 2), backoff_s=0.01)
    names = sorted(p.relative_to(raw).as_posix() for p in paths)
    assert names == [
        "bcb/ipca.json",
        "bcb/usd_brl.json",
        "inmet/INMET_NE_BA_A401_SALVADOR_01-01-2023_A_02-01-2023.CSV",
    ]
    bcb_calls = [s for s in _Recorded.seen if s.startswith("/bcb/1/")]
    assert len(bcb_calls) == 2  # 503, then 200
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(bcb_calls[0]).query)
    assert query == {"formato": ["json"], "dataInicial": ["01/01/2023"], "dataFinal": ["02/01/2023"]}
    assert "/inmet/estacao/2023-01-01/2023-01-02/A401" in _Recorded.seen
    daily = read_inmet_file(raw / names[2])
    assert daily["temp_mean_c"].tolist() == pytest.approx([27.2, 25.0])  # null -> -9999 -> skipped
    assert daily["rain_mm"].tolist() == pytest.approx([0.2, 0.2])
    res = build_features(raw, tmp_path / "out")
    assert {"usd_brl", "ipca", "rain_mm"} <= set(res.feature_columns)


def test_a_station_without_data_is_said(server: str, tmp_path: Path) -> None:
    """A station code with no data in the range (closed, mistyped: INMET answers an empty list or
    204): `etl --fetch` said "downloaded 1 file(s)" and nothing of the station."""
    _Recorded.bodies = {"/inmet/estacao/2023-01-01/2023-01-02/A401": b"[]"}
    notes: list[str] = []
    paths = fetch_sources(tmp_path, _cfg(server), start=date(2023, 1, 1), end=date(2023, 1, 2), notes=notes)
    assert all(p.parent.name == "bcb" for p in paths)
    assert notes == [f"INMET station A401: no data from 2023-01-01 to 2023-01-02 (check the code in [etl] "
                     f"inmet_stations; {NO_TOKEN})"]


def test_inmet_data_with_a_token_and_without(server: str, tmp_path: Path) -> None:
    """INMET's API answers station data only at `/token/estacao/<from>/<to>/<station>/<token>`;
    the open path answers 404 or nothing. `--fetch` took the open path only: a 404 was an error
    naming the URL, an empty answer "check the station code". The token (NOVA_RAY_INMET_TOKEN)
    is never written in a message."""
    from nova_ray.config import load_config

    token = load_config(None, env={"NOVA_RAY_INMET_TOKEN": _Recorded.TOKEN}, dotenv=None).etl.inmet_token
    cfg = _cfg(server, bcb_series="", inmet_token=token)
    (got,) = fetch_sources(tmp_path / "raw", cfg, start=date(2023, 1, 1), end=date(2023, 1, 2))
    assert _Recorded.seen == [f"/inmet/token/estacao/2023-01-01/2023-01-02/A401/{token}"]
    assert read_inmet_file(got)["rain_mm"].tolist() == pytest.approx([0.2, 0.2])
    refused = r"/A401/<token>: HTTP 403 .*INMET refused the token \(check NOVA_RAY_INMET_TOKEN"
    with pytest.raises(EtlError, match=refused) as exc:
        fetch_sources(tmp_path / "raw", _cfg(server, bcb_series="", inmet_token="wrong-key"))
    one_line(exc)
    assert "wrong-key" not in str(exc.value)
    _Recorded.gone = {"/inmet/estacao/2023-01-01/2023-01-02/A401"}  # the open path, as INMET now answers
    with pytest.raises(EtlError, match="HTTP 404 .*set NOVA_RAY_INMET_TOKEN .*historical-data portal"):
        fetch_sources(tmp_path / "raw", _cfg(server, bcb_series=""), start=date(2023, 1, 1),
                      end=date(2023, 1, 2))
    # an answer that quotes the key back, and a base URL without its scheme: the key in no message
    _Recorded.bodies = {f"/inmet/token/estacao/2023-01-01/2023-01-02/A401/{token}":
                        b'{"erro": "token s3cr3t expirado"}'}
    with pytest.raises(EtlError, match=r"hourly records, got .*token <token> expirado") as exc:
        fetch_sources(tmp_path / "raw", cfg, start=date(2023, 1, 1), end=date(2023, 1, 2))
    assert token not in str(exc.value)
    bare = _cfg(server.removeprefix("http://"), bcb_series="", inmet_token=token)
    with pytest.raises(EtlError, match="setting bcb_base_url: expected an http:// or https:// URL") as exc:
        fetch_sources(tmp_path / "raw", bare, start=date(2023, 1, 1), end=date(2023, 1, 2))
    assert token not in str(exc.value)
    with socket.socket() as s:  # offline: the URL in the message, the token not
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    offline = rf"cannot reach http://127\.0\.0\.1:{port}/inmet/token/\S+/A401/<token> "
    with pytest.raises(EtlError, match=offline):
        fetch_sources(tmp_path / "raw", _cfg(f"http://127.0.0.1:{port}", bcb_series="", inmet_token=token),
                      start=date(2023, 1, 1), end=date(2023, 1, 2), backoff_s=0.001)
    # plain http to another host would carry the key in clear text: refused before any request
    # (loopback, as the test server above, is this host's own)
    _Recorded.seen = []
    clear = _cfg("http://inmet.example.org", bcb_series="", inmet_token=token)
    said = r"setting inmet_base_url 'http://inmet\.example\.org/inmet': http:// would send the INMET token"
    with pytest.raises(EtlError, match=said + r" in clear text; use https://") as exc:
        fetch_sources(tmp_path / "raw", clear, start=date(2023, 1, 1), end=date(2023, 1, 2))
    assert token not in str(exc.value) and _Recorded.seen == []


def test_a_shorter_bcb_fetch_adds_to_the_file_instead_of_replacing_it(server: str, tmp_path: Path) -> None:
    """A second `--fetch` of a later, shorter range kept only that range: two years of a series
    became a month. The entries already downloaded stay, the new ones are added (a date in both:
    the new value), in date order."""
    raw = tmp_path / "raw"
    cfg = _cfg(server, bcb_series="usd_brl:1", inmet_stations="")
    (raw / "bcb").mkdir(parents=True)
    older = [{"data": "30/12/2022", "valor": "5,2177"}, {"data": "02/01/2023", "valor": "9,9"}]
    (raw / "bcb" / "usd_brl.json").write_text(json.dumps(older))
    fetch_sources(raw, cfg, start=date(2023, 1, 1), end=date(2023, 1, 2))
    got = json.loads((raw / "bcb" / "usd_brl.json").read_text())
    recorded = json.loads((DATA / "http" / "bcb_1.json").read_text())
    assert got[0] == older[0] and {e["data"] for e in got} == {"30/12/2022"} | {e["data"] for e in recorded}
    assert [e for e in got if e["data"] == "02/01/2023"] == [e for e in recorded if e["data"] == "02/01/2023"]


def test_a_bad_station_answer_never_replaces_a_good_file(server: str, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    cfg = _cfg(server, bcb_series="usd_brl:1")
    paths = fetch_sources(raw, cfg, start=date(2023, 1, 1), end=date(2023, 1, 2))
    (good,) = [p for p in paths if "inmet" in p.parts]
    before = good.read_bytes()
    records = json.loads((DATA / "http" / "inmet_A401.json").read_text())
    records[0]["CHUVA"] = "1.2.3"
    _Recorded.bodies = {"/inmet/estacao/2023-01-01/2023-01-02/A401": json.dumps(records).encode()}
    with pytest.raises(EtlError, match=r"A401: the station's answer does not load: .*cannot parse") as exc:
        fetch_sources(raw, cfg, start=date(2023, 1, 1), end=date(2023, 1, 2))
    one_line(exc)
    assert good.read_bytes() == before and sorted(p.name for p in good.parent.iterdir()) == [good.name]


def test_fetch_offline_and_http_errors(server: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(f"http://127.0.0.1:{port}")
    with pytest.raises(
        EtlError, match=rf"^cannot reach http://127\.0\.0\.1:{port}/bcb/1/dados\?\S+ after 3 tries: "
    ) as exc:
        fetch_sources(tmp_path, cfg, start=date(2023, 1, 1), end=date(2023, 1, 2), backoff_s=0.001)
    one_line(exc)
    cfg = _cfg(server, bcb_series="x:999", inmet_stations="")
    with pytest.raises(EtlError, match=r"HTTP 404"):  # not retried
        fetch_sources(tmp_path, cfg, start=date(2023, 1, 1), end=date(2023, 1, 2), backoff_s=0.001)
    assert len([s for s in _Recorded.seen if "/999/" in s]) == 1
    with pytest.raises(EtlError, match=r"bcb_series: expected 'name:code"):
        fetch_sources(tmp_path, _cfg(server, bcb_series="usd_brl"), backoff_s=0.001)


# ---------------------------------------------------------------- demo data (nova_ray.demo)


def test_loaders_read_demo_output(tmp_path: Path) -> None:
    demo = pytest.importorskip("nova_ray.demo")
    demo.generate_demo(tmp_path, items=5, days=400)
    res = build_features(tmp_path / "raw", tmp_path / "processed", start="2023-01-01", end="2024-02-04")
    f = read_features(res.path)
    truth = demo.demo_factors(days=400).to_pandas()
    truth["date"] = pd.to_datetime(truth["date"])
    merged = f.merge(truth, on="date", suffixes=("", "_truth"))
    assert len(merged) == 400 and f["climate_imputed"].eq(0).all()
    for col in ["rain_mm", "temp_mean_c", "humidity_mean_pct", "usd_brl", "ipca", "selic", "g5_estacoes_5g"]:
        np.testing.assert_allclose(merged[col], merged[f"{col}_truth"], atol=1e-9, err_msg=col)


def test_a_sensor_no_station_reports_gives_no_column(tmp_path: Path) -> None:
    """Humidity missing (-9999) in every row: no humidity column, and rain and temperature keep
    their observed days (one all-missing column marked every day imputed, which left the
    future's rain and temperature climatology nothing to learn from: all NaN)."""
    raw = tmp_path / "raw"
    (raw / "inmet").mkdir(parents=True)
    lines = A401_2023.read_bytes().split(b"\n")
    names = [x.strip().upper() for x in lines[8].decode("latin-1").split(";")]
    hum = next(i for i, n in enumerate(names) if n.startswith("UMIDADE RELATIVA DO AR, HOR"))
    rows = []
    for x in lines[9:]:
        fields = x.split(b";")
        if len(fields) > hum:
            fields[hum] = b"-9999"
        rows.append(b";".join(fields))
    (raw / "inmet" / A401_2023.name).write_bytes(b"\n".join(lines[:9] + rows))
    res = build_features(raw, tmp_path / "out", start="2023-01-01", end="2023-01-02")
    f = read_features(res.path).set_index("date")
    assert "humidity_mean_pct" not in f.columns and f.loc["2023-01-01", "climate_imputed"] == 0
    assert not f.drop(columns=["holiday_level", "holiday_name"]).isna().any().any()
    fut = future_features(read_features(res.path), pd.date_range("2023-01-03", periods=2))
    assert fut["rain_mm"].notna().all() and fut["temp_mean_c"].notna().all()
    gone = "(every value -9999 or empty): left out"
    assert f"climate: no station reports humidity_mean_pct {gone}" in res.warnings
    # a station whose every sensor is out: no climate at all, said so (it was exit 0, no word, and
    # a climate_imputed column of zeros claiming every day's climate observed)
    dead = [b";".join(f if i < 2 else b"-9999" for i, f in enumerate(x.split(b";"))) for x in lines[9:]]
    (raw / "inmet" / A401_2023.name).write_bytes(b"\n".join(lines[:9] + dead))
    res = build_features(raw, tmp_path / "out2", start="2023-01-01", end="2023-01-02")
    f = read_features(res.path)
    assert not {"rain_mm", "temp_mean_c", "humidity_mean_pct", "climate_imputed"} & set(f.columns)
    assert f"climate: no station reports rain_mm, temp_mean_c, humidity_mean_pct {gone}" in res.warnings


def test_etl_names_what_it_filled_left_out_or_did_not_read(tmp_path: Path) -> None:
    """Sources far from the range, an empty column and files in a sub-folder exited 0 with the
    normal table only: a 'climate' that was all climatology, an economy column back-filled for
    years, a column of NaN in a table documented as gap-free, a year's INMET files ignored."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(RAW, raw)
    (raw / "regressors" / "empty.csv").write_text("date,promo\n2023-01-01,\n2023-01-02,\n")
    nested = raw / "inmet" / "2024"
    nested.mkdir()
    shutil.copy(next((RAW / "inmet").iterdir()), nested / "x.CSV")
    res = build_features(raw, tmp_path / "out", "2021-01-01", "2023-01-05")
    text = " | ".join(res.warnings)
    assert "climate: " in text and "of the days from 2021-01-01 to 2023-01-05 have no station data" in text
    assert "economy " in text and ": the data start" in text and "days into the range from 2021-01-01" in text
    assert "column(s) empty_promo have no value" in text
    assert "empty_promo" not in pd.read_parquet(res.path).columns
    assert f"{raw / 'inmet'}: files in sub-folders (2024) are not read" in text


def test_a_column_from_two_files_names_both(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "bcb").mkdir(parents=True)
    (raw / "bcb" / "usd_brl.json").write_text('[{"data": "02/01/2023", "valor": "5,1"}]')
    (raw / "regressors").mkdir()
    (raw / "regressors" / "usd.csv").write_text("date,brl\n2023-01-02,5.2\n")
    (raw / "bcb" / "usd_brl.csv").write_text("data;valor\n02/01/2023;5,1\n")
    csv, js = raw / "bcb" / "usd_brl.csv", raw / "bcb" / "usd_brl.json"
    with pytest.raises(EtlError) as exc:
        build_features(raw, tmp_path / "out")
    want = f"bcb: column 'usd_brl' comes from two files ({csv} and {js}); rename one of them"
    assert str(exc.value) == want


def test_anatel_one_row_per_date_and_utf16(tmp_path: Path) -> None:
    """A table per state (several rows a date) was collapsed to each date's last row, a state's
    count standing for the country; a utf-16 export failed with a field-count message."""
    long = tmp_path / "uf.csv"
    long.write_text("Data;UF;Estacoes\n01/01/2024;BA;10\n01/01/2024;PE;7\n", encoding="utf-8")
    with pytest.raises(EtlError, match=r"uf.csv:3: column 'Data': date 2024-01-01 also on line 2: one row"):
        read_anatel_file(long)
    wide = tmp_path / "u16.csv"
    wide.write_text("Data;Estacoes\n01/01/2024;1.250\n01/02/2024;1.300\n", encoding="utf-16")
    assert read_anatel_file(wide)["g5_estacoes"].iloc[[0, -1]].tolist() == [1250, 1300]


def test_a_series_that_ends_early_is_named_not_carried_silently(tmp_path: Path) -> None:
    """Each BCB series is forward-filled up to the latest date of any: one that stopped half a
    year earlier was carried flat with no word, as the warning looked at the merged frame."""
    raw = tmp_path / "raw"
    (raw / "bcb").mkdir(parents=True)
    (raw / "bcb" / "usd_brl.json").write_text('[{"data": "02/01/2023", "valor": "5.0"}, '
                                              '{"data": "30/06/2023", "valor": "5.1"}]')
    days = pd.date_range("2023-01-02", "2023-12-29", freq="B")
    (raw / "bcb" / "selic.csv").write_text(
        "data;valor\n" + "".join(f"{d:%d/%m/%Y};13,75\n" for d in days)
    )
    res = build_features(raw, tmp_path / "out")
    stale = [w for w in res.warnings if "the data end" in w]
    assert len(stale) == 1 and stale[0].startswith("economy usd_brl: the data end 2023-06-30"), res.warnings


def test_a_hole_of_months_inside_a_series_is_named(tmp_path: Path) -> None:
    """A daily series missing March to September was carried flat over the hole with no word (only
    the two ends were looked at). A hole over a month and three usual intervals is named; a monthly
    series' month-to-month steps and the holes before the table's range are not."""
    raw = tmp_path / "raw"
    (raw / "bcb").mkdir(parents=True)
    days = pd.date_range("2023-01-02", "2023-12-29", freq="B")
    quotes = [d for d in days if not pd.Timestamp("2023-03-01") <= d <= pd.Timestamp("2023-09-30")]
    (raw / "bcb" / "usd_brl.json").write_text(
        json.dumps([{"data": f"{d:%d/%m/%Y}", "valor": "5,0"} for d in quotes]))
    months = pd.date_range("2021-01-01", "2023-12-01", freq="MS")
    monthly = [m for m in months if not pd.Timestamp("2021-04-01") <= m <= pd.Timestamp("2021-10-01")]
    (raw / "bcb" / "ipca.csv").write_text("data;valor\n" + "".join(f"{m:%d/%m/%Y};0,4\n" for m in monthly))
    res = build_features(raw, tmp_path / "out", start="2023-01-02", end="2023-12-29")
    holes = [w for w in res.warnings if "no data from" in w]
    assert holes == ["economy usd_brl: no data from 2023-02-28 to 2023-10-02, 215 days that repeat the "
                     "value of 2023-02-28"], res.warnings


def test_climate_that_ends_long_before_the_table_is_named(tmp_path: Path) -> None:
    """Portal INMET files lag by weeks: the table's last days are climatology, and said so."""
    raw = tmp_path / "raw"
    (raw / "inmet").mkdir(parents=True)
    shutil.copy(A401_2023, raw / "inmet" / A401_2023.name)
    res = build_features(raw, tmp_path / "out", "2023-01-01", "2023-03-01")
    text = " | ".join(res.warnings)
    assert "climate: the data end 2023-01-01, 59 days before the range's end 2023-03-01: those days are " \
           "filled from the climatology" in text, text
    table = read_features(res.path).set_index("date")
    assert table.loc["2023-01-01", "climate_imputed"] == 0 and table.loc["2023-01-02", "climate_imputed"] == 1


def test_imputed_flag_follows_the_rain_not_a_broken_humidity_sensor(tmp_path: Path) -> None:
    """A day with its rain observed but no humidity keeps its rain as observed (flag 0)."""
    lines = _inmet_lines()
    hum = 15  # UMIDADE RELATIVA DO AR, HORARIA
    assert "UMIDADE RELATIVA DO AR" in lines[8].split(";")[hum]
    rows = [";".join(f if i != hum else "-9999" for i, f in enumerate(x.split(";")))
            for x in lines[9:] if x.startswith("2023/01/01")]
    raw = tmp_path / "raw"
    (raw / "inmet").mkdir(parents=True)
    _write(raw / "inmet", INMET_NAME, lines[:9] + rows)
    table = read_features(build_features(raw, tmp_path / "out", "2023-01-01", "2023-01-01").path)
    assert table["rain_mm"].iloc[0] == pytest.approx(1.6) and table["climate_imputed"].iloc[0] == 0


def test_regressor_semicolon_files_read_the_brazilian_way_and_one_row_per_date(tmp_path: Path) -> None:
    """A `;` regressor file (a Brazilian spreadsheet's export) read `1.050` as 1.05 next to 850,
    and `5,899` as 5899; a date given twice kept its last row without a word."""
    path = tmp_path / "pedidos.csv"
    path.write_text("date;pedidos;preco\n2024-01-01;850;5,899\n2024-01-02;1.050;5,912\n"
                    "2024-01-03;1.200;5,874\n")
    df = read_regressor_file(path)
    assert df["pedidos_pedidos"].tolist() == [850, 1050, 1200]
    assert df["pedidos_preco"].tolist() == pytest.approx([5.899, 5.912, 5.874])
    comma = tmp_path / "us.csv"
    comma.write_text("date,units\n2024-01-01,1.25\n2024-01-02,2.5\n")
    assert read_regressor_file(comma)["us_units"].tolist() == [1.25, 2.5]
    twice = tmp_path / "twice.csv"
    twice.write_text("date,promo\n2024-01-01,1\n2024-01-02,0\n2024-01-01,100\n")
    with pytest.raises(EtlError) as exc:
        read_regressor_file(twice)
    text = one_line(exc)
    assert f"{twice}:4" in text and "date 2024-01-01 also on line 2: one row per date" in text


def test_a_range_outside_the_raw_data_says_which_end_is_the_data(tmp_path: Path) -> None:
    """`etl --start` after every raw row said "end 2024-02-04 is before start", no end given."""
    with pytest.raises(EtlError, match=r"start 2099-01-01 is after the raw data's last day \d{4}-\d\d-\d\d$"):
        build_features(RAW, tmp_path / "a", start="2099-01-01")
    with pytest.raises(EtlError, match=r"end 1999-01-01 is before the raw data's first day \d{4}-\d\d-\d\d$"):
        build_features(RAW, tmp_path / "b", end="1999-01-01")
    with pytest.raises(EtlError, match=r"^end 2023-01-01 is before start 2023-02-01$"):
        build_features(RAW, tmp_path / "c", start="2023-02-01", end="2023-01-01")


def test_overlapping_inmet_files_keep_every_value_the_newer_file_first(tmp_path: Path) -> None:
    """Two files of a station sharing days: the one that sorted last by path (`_A_31-05-2023` after
    `_A_30-06-2023`) replaced whole rows, so its missing hours turned a real rain day into NaN.
    Per column the last value that exists wins, the file that ends later last."""
    lines = _inmet_lines()

    def edit(row: str, rain: str, temp: str) -> str:
        f = row.split(";")
        f[2], f[7] = rain, temp
        return ";".join(f)

    older = [edit(r, "-9999", "20") if r.startswith("2023/01/01") else edit(r, "1,0", "21")
             for r in lines[9:]]
    _write(tmp_path, "INMET_NE_BA_A401_SALVADOR_01-01-2023_A_30-06-2023.CSV", lines)
    _write(tmp_path, "INMET_NE_BA_A401_SALVADOR_01-01-2023_A_31-05-2023.CSV", lines[:9] + older)
    df = load_inmet(tmp_path)
    assert list(df.columns) == ["date", "station", "rain_mm", "temp_mean_c", "humidity_mean_pct"]
    assert df.dtypes.astype(str).tolist() == ["datetime64[ns]", "object", "float64", "float64", "float64"]
    assert df["date"].tolist() == [day("2023-01-01"), day("2023-01-02")]
    assert df["rain_mm"].tolist() == pytest.approx([1.6, 3.0])  # the newer file's; its NaN -> the older's
    assert df["temp_mean_c"].tolist() == pytest.approx([27.2, 27.0])  # both have it: the newer file's


def test_inmet_csv_files_of_other_stations_are_skipped_and_named(tmp_path: Path) -> None:
    """[etl] inmet_stations filtered zips only: a CSV of another station was averaged in silently."""
    raw = tmp_path / "raw"
    (raw / "inmet").mkdir(parents=True)
    a413 = next((RAW / "inmet").glob("*A413*.CSV"))
    for f in (A401_2023, a413):
        shutil.copy(f, raw / "inmet")
    res = build_features(raw, tmp_path / "out", "2023-01-01", "2023-01-02", inmet_stations="A401")
    assert read_features(res.path)["rain_mm"].iloc[0] == pytest.approx(1.6)  # A401's alone, not 1.8
    assert read_features(res.stations_path)["station"].unique().tolist() == ["A401"]
    sources = json.loads(res.dictionary_path.read_text())["rain_mm"]["sources"]
    assert sources == [f"inmet/{A401_2023.name}"]
    skipped = [w for w in res.warnings if a413.name in w]
    assert len(skipped) == 1 and "A413" in skipped[0] and "inmet_stations" in skipped[0]
    every = build_features(raw, tmp_path / "out2", "2023-01-01", "2023-01-02")  # no station named: all
    assert read_features(every.path)["rain_mm"].iloc[0] == pytest.approx(1.8)
    assert not [w for w in every.warnings if a413.name in w]


def test_bcb_csv_thousands_follow_the_column(tmp_path: Path) -> None:
    """`1.250` next to `1.249,50` in an SGS CSV (decimal comma) was read as 1.25; JSON keeps its
    dot as the decimal mark."""
    p = tmp_path / "ibc.csv"
    p.write_text('"data";"valor"\n"01/01/2024";"1.249,50"\n"02/01/2024";"1.250"\n"03/01/2024";"1.251,25"\n',
                 encoding="utf-8")
    assert read_bcb_file(p)["ibc"].tolist() == pytest.approx([1249.5, 1250.0, 1251.25])
    j = tmp_path / "usd.json"
    j.write_text('[{"data": "01/01/2024", "valor": "1.250"}, {"data": "02/01/2024", "valor": "5.3540"}]')
    assert read_bcb_file(j)["usd"].tolist() == pytest.approx([1.25, 5.354])


@pytest.mark.parametrize(
    ("folder", "text", "read"),
    [
        ("bcb", '"data";"valor"\r"01/01/2024";"4,85"\r"02/01/2024";"4,86"\r', read_bcb_file),
        ("anatel", "Data;Estacoes_5G\r2024-01;1250\r2024-02;1300\r", read_anatel_file),
        ("regressors", "date,x\r2024-01-01,1\r2024-01-02,2\r", read_regressor_file),
    ],
)
def test_csv_with_cr_line_ends_and_an_unclosed_quote(tmp_path: Path, folder: str, text: str, read) -> None:
    """A CR-only file ("CSV (Macintosh)") and a stray quote crashed with a `_csv.Error` traceback."""
    path = tmp_path / "s.csv"
    path.write_bytes(text.encode())
    crlf = tmp_path / "crlf" / "s.csv"
    crlf.parent.mkdir()
    crlf.write_bytes(text.replace("\r", "\r\n").encode())
    pd.testing.assert_frame_equal(read(path), read(crlf))
    first, *rest = text.split("\r")
    plain = rest[1].replace('"', "")
    rows = [rest[0]] * 3 + ['"' + plain] + [plain] * 20000  # the quote opens a field to the end
    path.write_text("\n".join([first, *rows]) + "\n")
    with pytest.raises(EtlError) as exc:
        read(path)
    assert one_line(exc).startswith(f"{path}:5: ") and "never closes" in str(exc.value)
