"""Demand input contract: every bad-input case names the file and row or column."""

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nova_ray import series as series_mod
from nova_ray.io import demand as demand_io
from nova_ray.io.demand import dataset_id, read_demand, select_items
from nova_ray.io.errors import InputError
from nova_ray.series import build_series

GOOD = "item_id,date,quantity\nA,2024-01-01,1\nA,2024-01-03,2\nB,2024-01-02,0\n"


def _csv(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "d.csv"
    p.write_text(text)
    return p


def test_good_csv_and_missing_dates_are_zero(tmp_path: Path) -> None:
    df = read_demand(_csv(tmp_path, GOOD))
    s = build_series(df, "D")
    assert list(s.item_ids) == ["A", "B"]
    assert s.values_of(0).tolist() == [1.0, 0.0, 2.0]
    assert s.values_of(1).tolist() == [0.0, 0.0]  # B runs from its first day to the common end


def test_trailing_commas_and_gzip(tmp_path: Path) -> None:
    """A comma at the end of every row (spreadsheet exports) is no extra value; .csv.gz reads too."""
    import gzip

    text = "item_id,date,quantity\nA,2024-01-01,1,\nA,2024-01-03,2,\nB,2024-01-02,0,\n"
    assert read_demand(_csv(tmp_path, text)).equals(read_demand(_csv(tmp_path, GOOD)))
    (tmp_path / "d.csv.gz").write_bytes(gzip.compress(GOOD.encode()))
    assert read_demand(tmp_path / "d.csv.gz").equals(read_demand(_csv(tmp_path, GOOD)))


def test_brazilian_excel_export_semicolons_decimal_commas_cp1252(tmp_path: Path) -> None:
    """Excel in Brazilian Portuguese saves `;`-separated CSV in cp1252 with decimal commas and
    dd/mm/yyyy dates: read as such (points are thousands separators, as in Anatel's tables)."""
    rows = ["item_id;date;quantity", "Válvula;01/02/2024;1,5", "Válvula;02/02/2024;1.234"]
    rows.append("Cabo 2,5mm;01/02/2024;2")
    text = "\n".join(rows) + "\n"
    p = tmp_path / "d.csv"
    p.write_bytes(text.encode("cp1252"))
    df = read_demand(p)
    assert df["item_id"].tolist() == ["Válvula", "Válvula", "Cabo 2,5mm"]
    assert df["date"].tolist() == list(pd.to_datetime(["2024-02-01", "2024-02-02", "2024-02-01"]))
    assert df["quantity"].tolist() == [1.5, 1234.0, 2.0]
    p.write_bytes(text.encode("utf-8-sig"))  # Excel's "CSV UTF-8": a BOM before the header
    assert read_demand(p).equals(df)
    p.write_bytes(text.encode("utf-16"))  # Excel's "Unicode text"
    assert read_demand(p).equals(df)
    # tab-separated: decimal points (a tab file is no sign of Brazilian number writing)
    p.write_bytes(text.replace(";", "\t").replace("1,5", "1.5").replace("1.234", "1234").encode())
    assert read_demand(p).equals(df)


def test_a_broken_utf16_file_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    # a lone surrogate at the end
    p.write_bytes("item_id,date,quantity\nA,2024-01-01,1\n".encode("utf-16") + b"\x00\xd8")
    with pytest.raises(InputError, match=r"d.csv: cannot decode the file as utf-16$"):
        read_demand(p)


def test_semicolon_file_with_decimal_points_keeps_them(tmp_path: Path) -> None:
    """A `;` file whose column has a value that can only be a decimal point ("1.5") reads its
    points as decimal points ("1.250" = 1.25), and a comma still as a decimal mark."""
    p = _csv(tmp_path, "item_id;date;quantity\nA;2024-01-01;1.5\nA;2024-01-02;1.250\nA;2024-01-03;0,5\n")
    assert read_demand(p)["quantity"].tolist() == [1.5, 1.25, 0.5]


def test_semicolon_file_errors_name_the_line_once(tmp_path: Path) -> None:
    p = _csv(tmp_path, "item_id;date;quantity\nA;2024-01-01;1;7\nA;2024-01-02;2;7\n")
    with pytest.raises(InputError) as err:
        read_demand(p)
    assert str(err.value) == f"{p}: line 2: 4 values for 3 columns (extra value '7'; a separator too many?)"
    p = _csv(tmp_path, "item_id;date;quantity\nA;2024-01-01;1,2,3\n")
    with pytest.raises(InputError, match=r"line 2: quantity '1,2,3' in column 'quantity' is not a number"):
        read_demand(p)


def test_parquet_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    pd.DataFrame(
        {
            "item_id": ["A", "A"],
            "date": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "quantity": [1, 2],
            "site": ["S", "S"],
        }
    ).to_parquet(p)
    df = read_demand(p)
    assert df["quantity"].tolist() == [1.0, 2.0] and "site" in df.columns


@pytest.mark.parametrize(
    "text,message",
    [
        ("item_id,date\nA,2024-01-01\n", "d.csv: missing column 'quantity'"),
        ("item_id,date,quantity\n", "d.csv: file is empty"),
        (
            "item_id,date,quantity\nA,2024-01-01,1\nA,not-a-date,2\n",
            "d.csv: line 3: cannot parse date 'not-a-date' in column 'date'",
        ),
        (
            "item_id,date,quantity\nA,2024-01-01,-1\n",
            "d.csv: line 2: quantity -1 in column 'quantity' must be finite and >= 0",
        ),
        (
            "item_id,date,quantity\nA,2024-01-01,abc\n",
            "d.csv: line 2: quantity 'abc' in column 'quantity' is not a number",
        ),
        (  # a barcode pasted into the quantity column: orders worth 7.8e13, no word
            "item_id,date,quantity\nA,2024-01-01,1\nA,2024-01-02,7891234567895\n",
            "d.csv: line 3: quantity '7891234567895' in column 'quantity' is over 1e+09 for one row",
        ),
        (
            "item_id,date,quantity\nA,2024-01-01,1\nB,2024-01-01,1\nA,2024-01-01,3\n",
            "d.csv: line 2 and line 4: duplicate item_id/date ('A', 2024-01-01)",
        ),
        ("item_id,date,quantity\n,2024-01-01,1\n", "d.csv: line 2: empty item_id"),
        ("item_id,date,quantity\nA,2024-01-01,1\nA, ,2\n", "d.csv: line 3: missing date in column 'date'"),
        ("item_id,date,quantity\nA,2024-01-01,\n", "d.csv: line 2: missing quantity in column 'quantity'"),
        (  # on the first row, pandas would take the first column as the index, shift the others
            "item_id,date,quantity\nA,2024-01-01,1,7\nA,2024-01-02,2,7\n",
            "d.csv: line 2: 4 values for 3 columns (extra value '7'; a separator too many?)",
        ),
        (  # blank lines (and a quoted line break) do not shift the line named
            'item_id,date,quantity,note\r\nA,2024-01-01,1,"two\r\nlines"\r\n\r\n\r\nA,2024-01-02,x,\r\n',
            "d.csv: line 6: quantity 'x' in column 'quantity' is not a number",
        ),
        (
            "item_id,date,quantity,quantity\nA,2024-01-01,1,2\n",
            "d.csv: column 'quantity' appears twice in the header",
        ),
        (
            "item_id,date,quantity\nA,2024-01-01,1\nA,2024-01-02,2,7\n",
            "d.csv: line 3: 4 values for 3 columns (extra value '7'; a separator too many?)",
        ),
    ],
)
def test_bad_input(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        read_demand(_csv(tmp_path, text))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_column_names_in_any_case(tmp_path: Path) -> None:
    """`Item_ID` reads as item_id; two columns that differ only in case are neither taken."""
    df = read_demand(_csv(tmp_path, "Item_ID, DATE ,Quantity,Site\nA,2024-01-01,1,S\n"))
    assert list(df.columns) == ["item_id", "date", "quantity", "site"]
    found = r"missing column 'item_id' \(found: ITEM_ID, item_ID, date, quantity\)"
    with pytest.raises(InputError, match=found):
        read_demand(_csv(tmp_path, "ITEM_ID,item_ID,date,quantity\nA,B,2024-01-01,1\n"))


def test_a_date_after_today_is_a_mistyped_year(tmp_path: Path) -> None:
    """One row dated years ahead would stretch every series to it, silently: an error names it."""
    from nova_ray import clock

    later = (pd.Timestamp(clock.today()) + pd.Timedelta(days=400)).strftime("%Y-%m-%d")
    tomorrow = (pd.Timestamp(clock.today()) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    assert len(read_demand(_csv(tmp_path, f"item_id,date,quantity\nA,2024-01-01,1\nA,{tomorrow},2\n"))) == 2
    with pytest.raises(InputError, match=rf"d.csv: line 3: date {later} in column 'date' is after today"):
        read_demand(_csv(tmp_path, f"item_id,date,quantity\nA,2024-01-01,1\nA,{later},2\n"))


def test_a_lone_first_row_years_early_is_a_warning(tmp_path: Path) -> None:
    """A first row a decade before the item's next (2014 typed for 2024) warns, naming the item."""
    rows = ["A,2014-01-05,1", "A,2024-01-05,2", "A,2024-01-06,2", "B,2023-06-01,1", "B,2024-01-05,1"]
    text = "item_id,date,quantity\n" + "\n".join(rows) + "\n"
    df = read_demand(_csv(tmp_path, text))
    assert demand_io.lone_first_rows(df, "d.csv") == [
        "d.csv: item 'A': its first row (2014-01-05) is 3652 days before its next (2024-01-05); "
        "a mistyped year? Its series starts there"
    ]
    more = ["d.csv: 1 more items with such a lone first row"]
    assert demand_io.lone_first_rows(df, "d.csv", shown=0) == more


def test_day_first_dates_with_a_time_of_day(tmp_path: Path) -> None:
    """Excel writes a date-time cell as dd/mm/yyyy hh:mm: the day as written."""
    df = read_demand(_csv(tmp_path, "item_id;date;quantity\nA;05/03/2024 00:00;1\nA;06/03/2024 17:45:10;2\n"))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-05", "2024-03-06"]


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="d.csv: file is empty"):
        read_demand(_csv(tmp_path, ""))
    with pytest.raises(InputError, match="nope.csv: file not found"):
        read_demand(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"unsupported file type '.xls'; use .csv, .parquet or .xlsx"):
        (tmp_path / "d.xls").write_text("x")
        read_demand(tmp_path / "d.xls")


def test_unknown_item_suggests_close_matches(tmp_path: Path) -> None:
    df = read_demand(_csv(tmp_path, "item_id,date,quantity\nSTL-0001,2024-01-01,1\nSTL-0002,2024-01-01,1\n"))
    with pytest.raises(InputError, match=r"unknown item 'STL-001' in --items; did you mean STL-0001"):
        select_items(df, ["STL-001"])
    assert len(select_items(df, ["STL-0002"])) == 1


@pytest.mark.parametrize("freq,periods", [("W", 5), ("M", 2), ("Q", 1)])
def test_aggregation_by_frequency(tmp_path: Path, freq: str, periods: int) -> None:
    df = read_demand(
        _csv(tmp_path, "item_id,date,quantity\nA,2024-01-01,1\nA,2024-01-30,2\nA,2024-02-01,4\n")
    )
    s = build_series(df, freq)
    assert len(s.values_of(0)) == periods and s.values_of(0).sum() == 7


def test_demand_from_an_s3_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Input read from shared storage (an S3-compatible store over real HTTP on loopback)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }.items():
            monkeypatch.setenv(name, value)
        s3 = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
        s3.create_bucket(Bucket="plant")
        s3.put_object(Bucket="plant", Key="in/demand.csv", Body=GOOD.encode())
        s3.put_object(Bucket="plant", Key="in/bad.csv", Body=b"item_id,date,quantity\nA,2024-01-01,-1\n")
        df = read_demand("s3://plant/in/demand.csv")
        assert sorted(df["item_id"].unique()) == ["A", "B"] and df["quantity"].sum() == 3
        with pytest.raises(InputError, match=r"s3://plant/in/bad.csv: line 2: quantity -1"):
            read_demand("s3://plant/in/bad.csv")
        with pytest.raises(InputError, match="s3://plant/in/none.csv: file not found"):
            read_demand("s3://plant/in/none.csv")
    finally:
        server.stop()


def test_parquet_dates_and_text_columns_read_fast_and_the_same(tmp_path: Path) -> None:
    """Parquet date32 columns arrive as datetime64 (no text parsing); ids, sites and families are
    stripped once per distinct value; a date outside the nanosecond range is a row error."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": [" A", "A ", None],
                "date": pa.array([dt.date(2024, 1, d) for d in (1, 2, 3)], pa.date32()),
                "quantity": [1.0, 2.0, 3.0],
                "site": ["S1 ", None, "S2"],
            }
        ),
        f,
    )
    with pytest.raises(InputError, match=r"row 3: empty item_id"):
        read_demand(f)
    pq.write_table(pq.read_table(f).slice(0, 2), f)
    df = read_demand(f)
    assert df["item_id"].tolist() == ["A", "A"] and df["site"].tolist() == ["S1", ""]
    assert str(df["date"].dtype) == "datetime64[ns]" and df["date"].iloc[1] == pd.Timestamp("2024-01-02")
    pq.write_table(
        pa.table(
            {
                "item_id": ["A", "A"],
                "date": pa.array([dt.date(2024, 1, 1), dt.date(1, 1, 1)], pa.date32()),
                "quantity": [1.0, 2.0],
            }
        ),
        f,
    )
    with pytest.raises(InputError, match=r"row 2: date 0001-01-01 in column 'date' lies outside "
                       r"1677-09-23..2262-04-10: a mistyped year\?$"):
        read_demand(f)
    # written as text: the same when the text spells a day, else it cannot be parsed
    for text, said in (("1500-01-01", "date 1500-01-01 in column 'date' lies outside"),
                       ("01/02/1500 00:00", "date 1500-02-01 in column 'date' lies outside"),
                       ("31/02/1500", "cannot parse date '31/02/1500'"),
                       ("05/03/2024 noon", "cannot parse date '05/03/2024 noon'")):
        with pytest.raises(InputError, match=rf"line 3: {said}"):
            read_demand(_csv(tmp_path, f"item_id;date;quantity\nA;01/02/2024;1\nA;{text};2\n"))
    # the range's first and last days: numpy's nanosecond-to-day cast wraps there (2262 for 1677)
    for edge in (np.datetime64("1677-09-22T00:00:01", "ns"), np.datetime64("2262-04-11", "ns")):
        stamps = pa.array(np.array(["2024-01-01", edge], dtype="M8[ns]"))
        pq.write_table(pa.table({"item_id": ["A", "A"], "date": stamps, "quantity": [1.0, 2.0]}), f)
        with pytest.raises(InputError, match=rf"row 2: date {str(edge)[:10]} in column 'date' lies outside"):
            read_demand(f)
    # timestamps with a time zone: each its wall-clock day, and a mistyped year named by its row as
    # for those without (it was pandas' OutOfBoundsDatetime traceback, exit 1)
    for zone in ("UTC", "America/Sao_Paulo"):
        noon = [dt.datetime(2024, 3, 5, 12), dt.datetime(3025, 3, 6, 12)]
        stamps = pa.array(noon, pa.timestamp("us", tz=zone))
        pq.write_table(pa.table({"item_id": ["A", "A"], "date": stamps, "quantity": [1.0, 2.0]}), f)
        with pytest.raises(InputError, match=r"d.parquet: row 2: date 3025-03-06 in column 'date' lies "
                           r"outside 1677-09-23..2262-04-10: a mistyped year\?$"):
            read_demand(f)
        pq.write_table(pq.read_table(f).slice(0, 1), f)
        assert read_demand(f)["date"].tolist() == [pd.Timestamp("2024-03-05")]


def test_text_columns_are_compact_categoricals(tmp_path: Path) -> None:
    """Ids, sites and families repeat on every row: categoricals with sorted categories, so that
    the values read as text (equal once stripped) and a numeric id column orders as text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "d.parquet"
    pq.write_table(
        pa.table(
            {
                "item_id": ["B", " A", "A ", "B"],
                "date": pa.array([dt.date(2024, 1, d) for d in (1, 1, 2, 2)], pa.date32()),
                "quantity": [1.0, 2.0, 3.0, 4.0],
                "site": ["S2", "S1", None, "S2"],
            }
        ),
        f,
    )
    df = read_demand(f)
    assert isinstance(df["item_id"].dtype, pd.CategoricalDtype)
    assert list(df["item_id"].cat.categories) == ["A", "B"]  # " A" and "A " are one item
    assert list(df["site"].cat.categories) == ["", "S1", "S2"]
    assert df["site"].tolist() == ["S2", "S1", "", "S2"]
    s = build_series(df, "D")
    assert list(s.item_ids) == ["A", "B"] and s.values_of(0).tolist() == [2.0, 3.0]
    sub = select_items(df, ["B"])
    assert list(sub["item_id"].cat.categories) == ["B"]  # no empty groups for unselected items

    pq.write_table(
        pa.table({"item_id": [9, 10], "date": pa.array([dt.date(2024, 1, 1)] * 2, pa.date32()),
                  "quantity": [1.0, 2.0]}),
        f,
    )
    assert list(build_series(read_demand(f), "D").item_ids) == ["10", "9"]  # as text, like CSV
    with pytest.raises(InputError, match=r"duplicate item_id/date \('A', 2024-01-01\)"):
        read_demand(_csv(tmp_path, "item_id,date,quantity\nA,2024-01-01,1\n A ,2024-01-01,2\n"))


def _reference_series(df: pd.DataFrame, freq: str) -> dict[str, tuple[pd.Timestamp, list[float]]]:
    """What build_series must give, the plain pandas way: sum per item and period, zero-filled
    from the item's first period to the common last one."""
    alias = {"D": "D", "W": "W-MON", "M": "MS", "Q": "QS", "Y": "YS"}[freq]
    start = (df["date"] - pd.to_timedelta(df["date"].dt.weekday, unit="D") if freq == "W"
             else df["date"] if freq == "D" else df["date"].dt.to_period(freq).dt.start_time)
    agg = df.assign(p=start, item_id=df["item_id"].astype(str)).groupby(["item_id", "p"])["quantity"].sum()
    last = agg.index.get_level_values("p").max()
    out = {}
    for item, g in agg.groupby(level="item_id"):
        g = g.droplevel("item_id")
        grid = pd.date_range(g.index.min(), last, freq=alias)
        out[item] = (g.index.min(), g.reindex(grid, fill_value=0.0).tolist())
    return out


@pytest.mark.parametrize("order", ["shuffled", "sorted", "sorted, wide keys", "one site"])
@pytest.mark.parametrize("freq", ["D", "W", "M", "Q", "Y"])
def test_series_and_dataset_id_from_many_shuffled_rows(
    tmp_path: Path, freq: str, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vectorised aggregation (several sites per item and day, fractional quantities, rows in
    any order) gives the plain pandas sums exactly; the dataset id is the hash of the sorted rows
    (hashed in blocks: 97 rows here, not a divisor of the row count); the sums, the period numbers
    and the values' places too are taken a block at a time (50 rows here), the dates read and the
    duplicate keys built 61 and 97 rows at a time. Rows already in (item, date) order skip the
    sorts; int64 keys (past NARROW_KEYS) give the same as int32 ones; daily rows of one site per
    item (a row per key) skip the sums."""
    monkeypatch.setattr(demand_io, "HASH_BLOCK", 97)
    monkeypatch.setattr(demand_io, "DAY_BLOCK", 61)
    monkeypatch.setattr(series_mod, "SUM_BLOCK", 50)
    if order == "sorted, wide keys":
        monkeypatch.setattr(series_mod, "NARROW_KEYS", 0)
    rng = np.random.default_rng(3)
    rows = []
    for k in range(12):
        days = pd.date_range("2023-11-01", "2024-05-31")[rng.integers(0, 40) :]
        for site in ("S1", "S2")[: 1 if order == "one site" else 1 + k % 2]:
            keep = rng.random(len(days)) < 0.7
            rows.append(pd.DataFrame({"item_id": f"I{k:02d}", "date": days[keep], "site": site,
                                      "quantity": rng.gamma(0.5, 3.3, keep.sum()).round(3)}))
    df = pd.concat(rows).sample(frac=1, random_state=1)
    if order != "shuffled":
        df = df.sort_values(["item_id", "date"], kind="stable")
    df.to_parquet(tmp_path / "d.parquet", index=False)
    demand = read_demand(tmp_path / "d.parquet")
    s = build_series(demand, freq)
    ref = _reference_series(df, freq)
    assert list(s.item_ids) == sorted(ref)
    for i, item in enumerate(s.item_ids):
        assert pd.Timestamp(s.starts[i]) == ref[item][0]
        assert s.values_of(i).tolist() == ref[item][1]  # exactly: the same (compensated) sums
    ordered = demand.sort_values(["item_id", "date"])[["item_id", "date", "quantity"]]
    expected = hashlib.sha256(pd.util.hash_pandas_object(ordered, index=False).to_numpy().tobytes())
    assert dataset_id(demand) == expected.hexdigest()[:16]  # ids of earlier runs stay valid
    # a duplicate far from its twin (other key blocks) is found, and named by its rows
    twin = df.iloc[[3]]
    pd.concat([df, twin]).to_parquet(tmp_path / "dup.parquet", index=False)
    with pytest.raises(InputError, match=rf"row 4 and row {len(df) + 1}: duplicate item_id/date"):
        read_demand(tmp_path / "dup.parquet")


def test_duplicates_per_site_and_time_zones(tmp_path: Path) -> None:
    """The same item and day at two sites is two rows, at one site a duplicate; dates with a time
    zone count by their own calendar day."""
    two_sites = "item_id,date,quantity,site\nA,2024-01-01,1,S1\nA,2024-01-01,2,S2\n"
    assert len(read_demand(_csv(tmp_path, two_sites))) == 2
    dup = r"duplicate item_id/date/site \('A', 2024-01-01, 'S1'\): one row each"
    with pytest.raises(InputError, match=r"line 2 and line 3: " + dup):
        read_demand(_csv(tmp_path, two_sites.replace("S2", "S1")))
    # the two rows named are those of one site, and blank lines do not shift the lines named
    four = "item_id,date,quantity,site\nA,2024-01-01,1,S1\nA,2024-01-01,1,S2\n\nA,2024-01-01,1,S1\n"
    with pytest.raises(InputError, match=r": line 2 and line 5: " + dup):
        read_demand(_csv(tmp_path, four))
    stamps = pd.to_datetime(["2024-01-01 23:30", "2024-01-02 00:30"]).tz_localize("America/Bahia")
    pd.DataFrame({"item_id": "A", "date": stamps, "quantity": [1.0, 2.0]}).to_parquet(tmp_path / "z.parquet")
    df = read_demand(tmp_path / "z.parquet")
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-02"]
    text = "item_id,date,quantity\nA,2024-01-01T23:30:00-03:00,1\nA,2024-01-02T00:30:00-03:00,2\n"
    df = read_demand(_csv(tmp_path, text))
    assert df["date"].dtype == "datetime64[ns]"
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-02"]


def test_an_items_run_keeps_the_files_end(tmp_path: Path) -> None:
    """`--items` picks rows, not dates: an item without rows lately (a slow mover, zero days not
    written) gets zeros up to the file's last date, as in a run over every item, not a series
    that stops at its own last row with forecasts dated in the past."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import load_demand, load_series

    rows = "A,2024-01-01,1\nA,2024-01-09,2\nB,2024-01-02,5\nB,2024-01-04,1\n"
    f = _csv(tmp_path, "item_id,date,quantity\n" + rows)
    cfg = load_config(None, {"data": str(f)}, env={}, dotenv=None)
    alone, _ = load_series(cfg, ["B"], load_demand(cfg, ["B"]))
    assert load_demand(cfg, ["B"]).end == pd.Timestamp("2024-01-09")
    every, _ = load_series(cfg, None)
    assert alone.end == every.end == np.datetime64("2024-01-09")
    assert alone.values_of(0).tolist() == every.values_of(1).tolist() == [5, 0, 1, 0, 0, 0, 0, 0]


def test_text_dates_are_iso_or_day_first_never_guessed_per_value(tmp_path: Path) -> None:
    """Dates are read strictly as ISO, else as dd/mm/yyyy (a Brazilian export): 05/03 is 5 March
    like 13/03 is 13 March (pandas' per-value guess made it 3 May, scrambling days 1-12 of every
    month silently); month-first dates are an error naming the line; each UTC offset keeps the
    day written (mixed offsets too)."""
    day_first = "item_id,date,quantity\nA,05/03/2024,1\nA,13/03/2024,2\nB,2024-03-06,3\n"
    df = read_demand(_csv(tmp_path, day_first))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-05", "2024-03-13", "2024-03-06"]
    with pytest.raises(InputError, match=r"d.csv: line 3: cannot parse date '03/13/2024' .*dd/mm/yyyy"):
        read_demand(_csv(tmp_path, "item_id,date,quantity\nA,03/05/2024,1\nA,03/13/2024,2\n"))
    text = "A,2024-01-01T23:30:00-03:00,1\nA,2024-01-02T00:30:00+01,2\nA,2024-01-03,4\n"
    df = read_demand(_csv(tmp_path, "item_id,date,quantity\n" + text))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-01", "2024-01-02", "2024-01-03"]


def test_text_dates_and_quantities_parsed_once_per_distinct_value(tmp_path: Path) -> None:
    """Text dates and quantities are parsed once per distinct text and spread back to every row
    holding it: the rows get the same values as a row-by-row parse, in their order, and a missing
    or bad value is still reported at its own row (the first of the repeated values)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    days = pd.date_range("2024-01-01", periods=40).strftime("%Y-%m-%d").to_numpy()
    n = 600
    date_text = days[rng.integers(0, 40, n)]
    qty_text = np.array([" 1", "2.5", "0 ", "3"])[rng.integers(0, 4, n)]
    items = np.array([f"I{i}" for i in range(n)])  # unique (item, date) pairs
    df = read_demand(_csv(tmp_path, "item_id,date,quantity\n" + "".join(
        f"{i},{d},{q}\n" for i, d, q in zip(items, date_text, qty_text, strict=True))))
    assert df["date"].dt.strftime("%Y-%m-%d").tolist() == date_text.tolist()
    assert df["quantity"].tolist() == [float(q) for q in qty_text]
    f = tmp_path / "d.parquet"  # a text date column with a missing value: an error at its row
    pq.write_table(pa.table({"item_id": ["A", "B", "C"], "date": ["2024-01-01", "2024-01-01", None],
                             "quantity": ["1", "1", "2"]}), f)
    with pytest.raises(InputError, match=r"d.parquet: row 3: missing date in column 'date'"):
        read_demand(f)
    pq.write_table(pa.table({"item_id": ["A"], "date": pa.array([None], pa.string()), "quantity": [1.0]}), f)
    with pytest.raises(InputError, match=r"d.parquet: row 1: missing date in column 'date'"):
        read_demand(f)  # no date at all: nothing to parse
    pq.write_table(pa.table({"item_id": ["A", "B", "C"], "date": ["2024-01-01"] * 3,
                             "quantity": ["1", None, "x"]}), f)
    with pytest.raises(InputError, match=r"d.parquet: row 2: missing quantity in column 'quantity'"):
        read_demand(f)


def test_an_incomplete_last_period_is_left_out(tmp_path: Path) -> None:
    """Daily rows to the 12th of June under monthly periods: June (12 days) is left out, not fitted
    and backtested as a month-long slump, and the forecast starts with it; a note says so. A
    period the data fill (to its last day), per-period rows dated on period starts, and daily
    periods keep their end."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import load_demand, load_series
    from nova_ray.series import complete_end

    daily = pd.Series(pd.date_range("2024-01-01", "2024-06-12"))
    assert complete_end(daily, "M") == (pd.Timestamp("2024-05-31"), pd.Timestamp("2024-06-01"))
    assert complete_end(daily, "W") == (pd.Timestamp("2024-06-09"), pd.Timestamp("2024-06-10"))  # a Wednesday
    assert complete_end(daily, "Q") == (pd.Timestamp("2024-03-31"), pd.Timestamp("2024-04-01"))
    assert complete_end(daily, "D") == (pd.Timestamp("2024-06-12"), None)
    assert complete_end(pd.Series(pd.date_range("2024-01-01", "2024-06-30")), "M")[1] is None
    assert complete_end(pd.Series(pd.date_range("2024-01-01", periods=6, freq="MS")), "M")[1] is None

    rows = "".join(f"A,{d:%Y-%m-%d},1\n" for d in daily)
    f = _csv(tmp_path, "item_id,date,quantity\n" + rows)
    cfg = load_config(None, {"data": str(f), "freq": "M"}, env={}, dotenv=None)
    loaded = load_demand(cfg, None)
    series, _ = load_series(cfg, None, loaded)
    assert series.end == np.datetime64("2024-05-01") and series.values_of(0).tolist() == [31, 29, 31, 30, 31]
    (note,) = loaded.notes
    assert "d.csv: the data end on 2024-06-12, inside the period from 2024-06-01" in note
    # an item whose rows all fall in that period has no forecast yet: named, not dropped silently
    g = _csv(tmp_path, "item_id,date,quantity\n" + rows + "NEW,2024-06-03,5\nNEW,2024-06-10,4\n")
    cfg = load_config(None, {"data": str(g), "freq": "M"}, env={}, dotenv=None)
    loaded = load_demand(cfg, None)
    assert len(load_series(cfg, None, loaded)[0]) == 1
    assert loaded.notes[1] == ("1 item(s) have rows only in that incomplete period: no forecast for them "
                               "until it is complete: NEW")


def test_an_incomplete_first_period_is_left_out(tmp_path: Path) -> None:
    """Daily rows from the 12th of January under monthly periods: January (20 days) is left out, not
    fitted as a slump (nor does its total change as a rolling export loses a day a night); a note
    says so and names an item whose rows all fall in it. Rows from a period's first day, per-period
    rows and daily periods keep their start; so does data without a complete period after it."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import load_demand, load_series
    from nova_ray.series import complete_start

    daily = pd.Series(pd.date_range("2024-01-12", "2024-05-31"))
    assert complete_start(daily, "M") == pd.Timestamp("2024-02-01")
    assert complete_start(daily, "W") == pd.Timestamp("2024-01-15")  # the 12th is a Friday
    assert complete_start(daily, "Q") is None  # no complete quarter after the first: kept whole
    assert complete_start(daily, "D") is None
    assert complete_start(pd.Series(pd.date_range("2024-01-01", "2024-05-31")), "M") is None
    assert complete_start(pd.Series(pd.date_range("2024-01-01", periods=6, freq="MS")), "M") is None
    month_ends = pd.Series(pd.date_range("2024-01-31", periods=24, freq="ME"))  # totals dated on the last day
    assert complete_start(month_ends, "M") is None
    assert complete_start(month_ends, "Q") is None  # the row of January 31 is all of January
    assert complete_start(month_ends, "Y") is None
    no_january = month_ends[1:].reset_index(drop=True)
    assert complete_start(no_january, "Q") == pd.Timestamp("2024-04-01")
    assert complete_start(pd.Series(pd.date_range("2024-01-07", periods=9, freq="W-SUN")), "W") is None
    short = pd.Series(pd.date_range("2024-01-12", "2024-02-20"))
    assert complete_start(short, "M") is None  # no complete month after it

    rows = "".join(f"A,{d:%Y-%m-%d},1\n" for d in daily)
    f = _csv(tmp_path, "item_id,date,quantity\n" + rows + "OLD,2024-01-20,5\n")
    cfg = load_config(None, {"data": str(f), "freq": "M"}, env={}, dotenv=None)
    loaded = load_demand(cfg, None)
    series, _ = load_series(cfg, None, loaded)
    assert list(series.item_ids) == ["A"] and series.values_of(0).tolist() == [29, 31, 30, 31]
    assert series.starts[0] == np.datetime64("2024-02-01")
    assert "d.csv: the data start on 2024-01-12, inside the period before 2024-02-01" in loaded.notes[0]
    assert loaded.notes[1] == ("1 item(s) have rows only in that incomplete first period: no forecast "
                               "for them: OLD")
    # the rows stay: the dataset's id is the file's, as `recommend` and `report` compute it (they
    # said every W/M run had used other data)
    from nova_ray.io.demand import dataset_id

    assert load_series(cfg, None, loaded)[1] == dataset_id(read_demand(f))
    # series from the file's first date, with an incomplete last period too: from the first
    # complete period (a per-item Series took the file's first date's name: a TypeError)
    g = _csv(tmp_path, "item_id,date,quantity\n" + rows + "A,2024-06-05,1\n")
    cfg = load_config(None, {"data": str(g), "freq": "M", "series_start": "file"}, env={}, dotenv=None)
    loaded = load_demand(cfg, None)
    series, _ = load_series(cfg, None, loaded)
    assert loaded.start == pd.Timestamp("2024-02-01") and series.starts[0] == np.datetime64("2024-02-01")
    assert series.end == np.datetime64("2024-05-01")


def test_totals_dated_on_their_period_end_are_per_period_rows(tmp_path: Path) -> None:
    """Totals dated on the day that closes their period (quarter ends under quarters, Sundays under
    weeks, month ends under months) are per-period rows, as those dated on its first day are: one
    shared rule (`period_dating`). A first quarter dated March 31 was taken for daily rows starting
    inside the quarter and left out of the series."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import load_demand, load_series
    from nova_ray.series import per_period_rows, period_dating

    assert period_dating(pd.Series(pd.date_range("2024-01-01", periods=4, freq="MS")), "M") == "start"
    assert period_dating(pd.Series(pd.date_range("2024-01-31", periods=4, freq="ME")), "M") == "end"
    assert period_dating(pd.Series(pd.date_range("2024-01-07", periods=4, freq="W-SUN")), "W") == "end"
    assert period_dating(pd.Series(pd.date_range("2024-01-31", periods=4, freq="ME")), "Q") is None  # months
    assert period_dating(pd.Series(pd.date_range("2024-01-31", periods=4, freq="ME")), "D") is None
    assert not per_period_rows(pd.Series(pd.date_range("2024-01-01", periods=60)), "M")
    ends = pd.date_range("2023-03-31", periods=8, freq="QE")
    rows = "".join(f"A,{d:%d/%m/%Y},{k + 90}\n" for k, d in enumerate(ends))
    f = _csv(tmp_path, "item_id,date,quantity\n" + rows)
    cfg = load_config(None, {"data": str(f), "freq": "Q"}, env={}, dotenv=None)
    loaded = load_demand(cfg, None)
    series, _ = load_series(cfg, None, loaded)
    assert loaded.notes == [] and loaded.begin is None
    assert series.starts[0] == np.datetime64("2023-01-01")
    assert series.values_of(0).tolist() == list(range(90, 98))


def test_export_quirks_three_decimals_tabs_empty_rows_and_totals(tmp_path: Path) -> None:
    """What ERP and Excel exports write: "0.500" is a decimal point (a thousands group never starts
    with 0), and a column of "1.500"-like values only is read as thousands with a note saying so;
    Excel's Unicode text (tabs) with decimal commas; rows of separators only are skipped; a totals
    row's error says what it is; Portuguese column names get the renames; a return gets a hint."""
    notes: list[str] = []
    p = _csv(tmp_path, "date;item_id;quantity\n01/12/2024;000123;0.500\n02/12/2024;000123;1.000\n")
    assert read_demand(p, notes)["quantity"].tolist() == [0.5, 1.0] and notes == []
    p = _csv(tmp_path, "date;item_id;quantity\n01/12/2024;000123;1.500\n02/12/2024;000123;12\n")
    assert read_demand(p, notes)["quantity"].tolist() == [1500.0, 12.0]
    assert len(notes) == 1 and "d.csv: column 'quantity'" in notes[0] and "'1.500'" in notes[0]
    assert "(1.500 = 1500)" in notes[0] and "decimal comma (1,500)" in notes[0]
    notes.clear()  # a comma elsewhere in the column settles it: no note
    p = _csv(tmp_path, "date;item_id;quantity\n01/12/2024;A;1.500\n02/12/2024;A;2,5\n")
    assert read_demand(p, notes)["quantity"].tolist() == [1500.0, 2.5] and notes == []
    # Excel's Unicode text from a Brazilian Excel: tabs, utf-16, decimal commas
    text = "item_id\tdate\tquantity\nA\t01/02/2024\t112,5\nA\t02/02/2024\t1.234,5\nA\t03/02/2024\t2\n"
    p.write_bytes(text.encode("utf-16"))
    assert read_demand(p)["quantity"].tolist() == [112.5, 1234.5, 2.0]
    p.write_text(text.replace("112,5", "112.5").replace("1.234,5", "1,234.5"))  # English numbers
    assert read_demand(p)["quantity"].tolist() == [112.5, 1234.5, 2.0]
    # formatted empty cells: `;;` rows, skipped like blank lines; line numbers stay the file's
    p = _csv(tmp_path, "item_id;date;quantity\nA;01/02/2024;1\n;;\n\nA;02/02/2024;x\n;;\n")
    with pytest.raises(InputError, match=r"d.csv: line 5: quantity 'x' in column 'quantity' is not a "
                       r"number$"):
        read_demand(p)
    p = _csv(tmp_path, "item_id;date;quantity\nA;01/02/2024;1\nTotal;;1\n")
    with pytest.raises(InputError, match=r"line 3: missing date in column 'date' \(a totals row\?"):
        read_demand(p)
    p = _csv(tmp_path, "item_id;date;quantity\nA;01/02/2024;1\n;TOTAL GERAL;1\n")
    with pytest.raises(InputError, match=r"line 3: empty item_id in column 'item_id' \(a totals row\?"):
        read_demand(p)
    p = _csv(tmp_path, "data;codigo_item;descricao;quantidade\n01/02/2024;A;x;1\n")
    with pytest.raises(InputError, match=r"missing columns 'item_id', 'date', 'quantity' \(found: data, "
                       r"codigo_item, descricao, quantidade\); rename codigo_item -> item_id, data -> date, "
                       r"quantidade -> quantity \(in the file, or \[paths\] columns = "
                       r"\"codigo_item=item_id,data=date,quantidade=quantity\"\)$"):
        read_demand(p)
    renamed = read_demand(p, columns="Codigo_Item=item_id, data=date,quantidade=quantity")  # any case
    assert renamed["item_id"].tolist() == ["A"] and renamed["quantity"].tolist() == [1.0]
    # a rename onto a column the file has too: both named, nothing read
    both = _csv(tmp_path, "item_id;data;date;quantity\nA;01/02/2024;02/02/2024;1\n")
    with pytest.raises(InputError, match=r": columns 'data' and 'date' both read as 'date': keep one "
                       r"\(rename or drop the other in the file, or change \[paths\] columns\)$"):
        read_demand(both, columns="data=date")
    p = _csv(tmp_path, "item_id,date,quantity\nA,2024-01-01,-5\n")
    with pytest.raises(InputError, match=r"must be finite and >= 0 \(a return\? net returns"):
        read_demand(p)


def test_an_excel_workbook_reads_like_its_csv(tmp_path: Path) -> None:
    """A history saved from Excel as .xlsx: date cells, number cells, codes as text, dd/mm/yyyy
    text dates and decimal-comma text where typed so; an empty formatted row skipped; a bad cell
    named by the sheet's row."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["date", "item_id", "quantity"])
    ws.append([dt.datetime(2024, 1, 1), "000123", 1.5])
    ws.append([None, None, None])
    ws.append(["02/01/2024", "000123", "2,5"])
    ws.append([dt.datetime(2024, 1, 1), "B", 3])
    wb.save(tmp_path / "d.xlsx")
    df = read_demand(tmp_path / "d.xlsx")
    assert df["item_id"].tolist() == ["000123", "000123", "B"]
    assert df["date"].tolist() == list(pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01"]))
    assert df["quantity"].tolist() == [1.5, 2.5, 3.0]
    ws.append([dt.datetime(2024, 1, 3), "B", -1])
    wb.save(tmp_path / "d.xlsx")
    with pytest.raises(InputError, match=r"d.xlsx: row 6: quantity -1 in column 'quantity' must be finite"):
        read_demand(tmp_path / "d.xlsx")


def test_thousands_points_in_tab_files_and_workbook_text_read_as_in_a_semicolon_file(tmp_path: Path) -> None:
    """`1.500`, `2.000`, `750` (a Brazilian export's grouping) in a tab file (Excel's Unicode text)
    or in .xlsx text cells: 1500, 2000, 750 with the note, as a `;` file reads them; they were read
    as 1.5 and 2.0 without a word. A value such as `1.5` or `0.500` still settles decimal points."""
    import openpyxl

    p = tmp_path / "d.csv"
    rows = [("A", "05/03/2024", "1.500"), ("A", "06/03/2024", "2.000"), ("A", "07/03/2024", "750")]
    for sep, encoding in (("\t", "utf-16"), ("\t", "utf-8"), (";", "utf-8")):
        text = "\n".join(sep.join(r) for r in [("item_id", "date", "quantity"), *rows])
        p.write_bytes(text.encode(encoding))
        notes: list[str] = []
        assert read_demand(p, notes)["quantity"].tolist() == [1500.0, 2000.0, 750.0], (sep, encoding)
        assert len(notes) == 1
        assert "d.csv: column 'quantity': the points in numbers such as '1.500' " in notes[0]
    p.write_bytes("item_id\tdate\tquantity\nA\t05/03/2024\t1.500\nA\t06/03/2024\t0.250\n".encode("utf-16"))
    notes = []
    assert read_demand(p, notes)["quantity"].tolist() == [1.5, 0.25] and notes == []
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["item_id", "date", "quantity"])
    for item, day, qty in rows:
        ws.append([item, day, qty if qty != "750" else 750])
    wb.save(tmp_path / "d.xlsx")
    notes = []
    assert read_demand(tmp_path / "d.xlsx", notes)["quantity"].tolist() == [1500.0, 2000.0, 750.0]
    assert len(notes) == 1 and "d.xlsx: column 'quantity'" in notes[0]


def test_a_us_monthly_export_is_refused_not_read_as_days_of_january(tmp_path: Path) -> None:
    """mm/dd/yyyy dated on the 1st (11/01/2024, 12/01/2024, 01/01/2025, ...) read as dd/mm/yyyy is
    days 1-12 of January in each year: refused in one line naming the file, the column and a value
    (it gave a forecast of 0 and exit 0). Within one year a note; real dd/mm data never trips it."""
    months = pd.date_range("2022-11-01", periods=24, freq="MS")
    us = _csv(tmp_path, "item_id,date,quantity\n" + "".join(f"A,{d:%m/%d/%Y},300\n" for d in months))
    with pytest.raises(InputError, match=r"^[^\n]*d.csv: column 'date': dates such as '11/01/2022' are "
                       r"mm/dd/yyyy \(a US export, every date on day 1 of its month\), not dd/mm/yyyy "
                       r"\(days 1-12 of January in each year\): write them as yyyy-mm-dd \(or dd/mm/yyyy\)$"):
        read_demand(us)
    notes: list[str] = []
    rows = "".join(f"A,{m:02d}/01/2024,3\n" for m in range(1, 13))
    one_year = _csv(tmp_path, "item_id,date,quantity\n" + rows)
    assert read_demand(one_year, notes)["date"].max() == pd.Timestamp("2024-01-12")
    assert notes == [f"{one_year}: column 'date': dates such as '02/01/2024' were read as dd/mm/yyyy "
                     "(2 January; all on days 1-12 of January); if they are mm/dd/yyyy (1 February, a US "
                     "export), write them as yyyy-mm-dd"]
    notes.clear()
    years = pd.date_range("2020-01-01", periods=4, freq="YS")
    for days in (pd.date_range("2023-01-01", "2024-12-31"), months, years):
        ok = _csv(tmp_path, "item_id,date,quantity\n" + "".join(f"A,{d:%d/%m/%Y},1\n" for d in days))
        assert len(read_demand(ok, notes)) == len(days) and notes == []


def test_columns_the_reader_does_not_use_are_not_read(tmp_path: Path) -> None:
    """An export's description columns are never read (CSV and Parquet): 12 of them took a 1 M-row
    file from 0.6 s and 200 MB to 18 s and 1.1 GB. Lines named stay the file's, a totals row's
    word in such a column still gives the hint, and a value past the header is still an error."""
    import tracemalloc

    import pyarrow as pa
    import pyarrow.parquet as pq

    n, extra = 20_000, [f"descricao{k}" for k in range(12)]
    days = [f"{1 + i // 200 % 28:02d}/{1 + i // 5600:02d}/2024" for i in range(n)]
    lines = [";".join(["codigo", "data", *extra, "qtd"])]
    lines += [";".join([f"{i % 200:05d}", days[i], *(f"item {i} texto {k}" for k in range(12)), str(i % 7)])
              for i in range(n)]
    p = tmp_path / "d.csv"
    p.write_text("\n".join(lines) + "\n")
    q = tmp_path / "d.parquet"
    table = {"codigo": [f"{i % 200:05d}" for i in range(n)], "data": pd.to_datetime(days, dayfirst=True),
             **{c: [f"item {i} texto {k}" for i in range(n)] for k, c in enumerate(extra)}, "qtd": [1.0] * n}
    pq.write_table(pa.table(table), q)
    for path in (p, q):
        tracemalloc.start()
        try:
            df = read_demand(path, columns="codigo=item_id,data=date,qtd=quantity")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert len(df) == n and list(df.columns) == ["item_id", "date", "quantity"]
        assert peak < 8 * 2**20, (path, peak / 2**20)  # every column: 23 MiB (CSV)
    renames = "codigo=item_id,data=date,qtd=quantity"
    # a row without a value in the columns read is skipped (a report's group heading), and the
    # lines named stay the file's; a totals row's word in a column not read still says what it is
    p.write_text("codigo;descricao;data;qtd\nA;cabo;01/02/2024;1\n;CABOS;;\n\nA;x;02/02/2024;y\n")
    with pytest.raises(InputError, match=r"d.csv: line 5: quantity 'y' in column 'quantity' is not a "
                       r"number$"):
        read_demand(p, columns=renames)
    p.write_text("codigo;descricao;data;qtd\nA;cabo;01/02/2024;1\n;TOTAL GERAL;;1\n")
    with pytest.raises(InputError, match=r"line 3: empty item_id in column 'item_id' \(a totals row\?"):
        read_demand(p, columns=renames)
    table = {"codigo": ["A", None], "descricao": ["cabo", "TOTAL"], "data": ["01/02/2024", None],
             "qtd": [1, 2]}
    pq.write_table(pa.table(table), q)
    with pytest.raises(InputError, match=r"row 2: empty item_id in column 'item_id' \(a totals row\?"):
        read_demand(q, columns=renames)
    # a value past the header's columns, on a later row too (it was a parser's message)
    for row, line in (("A;x;02/02/2024;2;7", 3), ('A;"a;b";02/02/2024;2;', 0)):
        p.write_text(f"codigo;descricao;data;qtd\nA;cabo;01/02/2024;1\n{row}\n")
        if line:
            with pytest.raises(InputError, match=rf"d.csv: line {line}: 5 values for 4 columns \(extra "):
                read_demand(p, columns=renames)
        else:  # a quoted separator and a separator ending the row: fine
            assert read_demand(p, columns=renames)["quantity"].tolist() == [1.0, 2.0]


def test_items_whose_daily_rows_stop_early_are_named() -> None:
    """A partial export (one item's rows missing for the last 10 days) cut its forecast by 40% with
    no word: an item with rows on most days that stop over a week before the file's end is named;
    an item with rows on a few days only (an ERP's consumption days) is not."""
    from nova_ray.io.demand import stopped_items

    days = pd.date_range("2024-01-01", "2024-03-31")
    rows = [("DENSE", d) for d in days[:-10]] + [("FULL", d) for d in days]
    rows += [("SPARSE", d) for d in days[::9]]
    df = pd.DataFrame(rows, columns=["item_id", "date"]).assign(quantity=1.0)
    df["item_id"] = df["item_id"].astype("category")
    (msg,) = stopped_items(df, "d.csv")
    assert msg.startswith("d.csv: 1 item(s) with rows on most days stop over 7 days before the file's last "
                          "date 2024-03-31: DENSE (2024-03-21)")
    only = df[df["item_id"] == "DENSE"].copy()
    assert stopped_items(only, "d.csv") == []  # its own last date: the file's is given by the caller
    assert len(stopped_items(only, "d.csv", end=pd.Timestamp("2024-03-31"))) == 1


def test_series_start_file_starts_every_item_at_the_files_first_date(tmp_path: Path) -> None:
    """An ERP export lists an item only on the days it was used: with series_start = "file" an item
    first used 46 days ago has zeros from the file's first date, so its rate is not 46 days'
    worth (it ordered 94 units for an item of 30 units in two years); the recommendation's history
    starts there too. "item" (default): each series from its first row."""
    from datetime import date, timedelta

    import polars as pl

    from nova_ray.config import load_config
    from nova_ray.recommend import Policy, recommend
    from nova_ray.run_inputs import load_demand, load_series

    p = _csv(tmp_path, "item_id,date,quantity\nOLD,2024-01-01,5\nOLD,2025-12-31,5\nNEW,2025-11-16,20\n"
             "NEW,2025-12-10,10\n")
    per_item = load_config(None, {"data": str(p)}, env={}, dotenv=None)
    series, _ = load_series(per_item, None)
    assert series.starts.tolist() == [np.datetime64("2025-11-16"), np.datetime64("2024-01-01")]  # NEW, OLD
    whole = load_config(None, {"data": str(p), "series_start": "file"}, env={}, dotenv=None)
    loaded = load_demand(whole, None)
    series, _ = load_series(whole, None, loaded)
    assert series.starts.tolist() == [np.datetime64("2024-01-01")] * 2
    assert series.values_of(0).sum() == 30 and len(series.values_of(0)) == len(series.values_of(1))
    # the recommendation's rate of an intermittent item: over its series, not its 46 days
    hist = pl.from_pandas(loaded.rows.astype({"item_id": str}))
    days = [date(2026, 1, 1) + timedelta(days=t) for t in range(30)]
    fc = pl.DataFrame({"item_id": ["NEW"] * 30, "date": days, "forecast": [0.5] * 30})
    st = pl.DataFrame({"item_id": ["NEW"], "on_hand": [0.0], "lead_time_days": [30]})
    items = pl.DataFrame({"item_id": ["NEW"], "demand_class": ["intermittent"]})
    short = recommend(fc, st, history=hist, items=items, policy=Policy(undershoot=False)).row(0, named=True)
    full = recommend(fc, st, history=hist, items=items, policy=Policy(undershoot=False),
                     series_start=date(2024, 1, 1)).row(0, named=True)
    assert "rate from the recent history 0.652/day (last 46 d" in short["notes"]
    assert "rate from the recent history 0.0822/day (last 365 d" in full["notes"]
    assert full["order_qty"] < short["order_qty"]


def test_reading_edge_dates_and_direct_series_callers(tmp_path: Path) -> None:
    """A date on the nanosecond range's first day (numpy casts it to days wrongly as one value)
    does not make two rows look alike in the duplicate check; a null Parquet date is a missing
    date; build_series takes dates with a time zone and refuses missing ones at every frequency."""
    lowest = np.datetime64("1677-09-22", "ns")
    high, low = np.datetime64("2024-12-31"), np.datetime64("1950-01-01")
    span = int(high.astype(np.int64)) - int(lowest.astype("M8[D]").astype(np.int64)) + 1  # the wrong range
    for dc in range(1, 200_000):  # two items whose wrong 4-byte keys collide
        r = (-dc * span) % 2**32
        r = r - 2**32 if r >= 2**31 else r
        if abs(r) <= int((high - low).astype(int)):
            break
    other = low if r >= 0 else high
    rows = [(0, lowest), (0, high), (0, low), (dc, other + r), (0, other)]
    names = [f"c{i:06d}" for i in range(dc + 1)]
    df = pd.DataFrame({
        "item_id": pd.Categorical.from_codes([c for c, _ in rows], categories=names),
        "date": np.array([d for _, d in rows], dtype="M8[ns]"),
    }).drop_duplicates().reset_index(drop=True)
    assert not demand_io._any_duplicate(df, ["item_id", "date"])

    table = pd.DataFrame({"item_id": ["A", "A"], "date": pd.to_datetime(["2024-01-01", None]),
                          "quantity": [1.0, 2.0]})
    table.to_parquet(tmp_path / "n.parquet")
    with pytest.raises(InputError, match=r"row 2: missing date in column 'date'"):
        read_demand(tmp_path / "n.parquet")

    naive = pd.DataFrame({"item_id": ["a", "b"], "date": pd.to_datetime(["2024-01-03", "2024-02-10"]),
                          "quantity": [1.0, 2.0]})
    zoned = build_series(naive.assign(date=naive["date"].dt.tz_localize("UTC")), "D")
    assert zoned.values.tolist() == build_series(naive, "D").values.tolist()
    missing = naive.assign(date=pd.to_datetime(["2024-01-03", None]))
    for freq in ("D", "W", "M", "Q", "Y"):
        with pytest.raises(ValueError, match="rows without a date"):
            build_series(missing, freq, end=pd.Timestamp("2024-02-01"))
