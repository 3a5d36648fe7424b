"""Stock snapshot validation: one-line errors naming file, line/row and column; unknown items warn."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from nova_ray.io.errors import InputError
from nova_ray.io.stock import check_matches, read_stock, resolve_stock_path, unknown_items

HEADER = "item_id,site,on_hand,lead_time_days"


def _csv(tmp_path: Path, text: str, name: str = "stock.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _error(path: Path) -> str:
    with pytest.raises(InputError) as exc:
        read_stock(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_reads_csv_with_defaults_for_missing_optional_columns(tmp_path: Path) -> None:
    p = _csv(tmp_path, f"{HEADER},unit_cost,pack_size\nA,S1,5,7,2.5,10\nA,S2,0,3,,\nB,S1,1.5,0,1,1\n")
    df = read_stock(p)
    assert df.columns[:4] == ["item_id", "site", "on_hand", "lead_time_days"]
    assert df["lead_time_days"].dtype == pl.Int64 and df["lead_time_days"].to_list() == [7, 3, 0]
    assert df["on_hand"].to_list() == [5.0, 0.0, 1.5]
    assert df["unit_cost"].to_list() == [2.5, None, 1.0]  # empty cell: use the default
    assert df["on_order"].null_count() == 3 and df["service_level"].null_count() == 3


def test_trailing_commas_are_no_extra_values(tmp_path: Path) -> None:
    """Rows ending in a comma: pandas took the item column as the index and shifted every value
    one column left (item '10', on_hand 2, lead time 5), silently."""
    p = _csv(tmp_path, f"{HEADER},on_order\nA,S,10,2,5,\nB,S,1,3,0,\n")
    df = read_stock(p)
    assert df["item_id"].to_list() == ["A", "B"] and df["on_hand"].to_list() == [10.0, 1.0]
    assert df["lead_time_days"].to_list() == [2, 3] and df["on_order"].to_list() == [5.0, 0.0]
    gz = tmp_path / "stock.csv.gz"
    gz.write_bytes(__import__("gzip").compress(p.read_bytes()))
    assert read_stock(gz).equals(df)


def test_semicolon_decimal_comma_cp1252(tmp_path: Path) -> None:
    """A Brazilian Excel export: `;`, decimal commas, points as thousands separators, cp1252."""
    p = tmp_path / "stock.csv"
    text = "item_id;site;on_hand;lead_time_days;unit_cost\nVálvula;S1;1.200;7;12,50\nB;S1;1,5;0;\n"
    p.write_bytes(text.encode("cp1252"))
    df = read_stock(p)
    assert df["item_id"].to_list() == ["Válvula", "B"] and df["on_hand"].to_list() == [1200.0, 1.5]
    assert df["unit_cost"].to_list() == [12.5, None] and df["lead_time_days"].to_list() == [7, 0]


def test_lines_named_past_blank_lines(tmp_path: Path) -> None:
    """Errors and warnings name the file's own lines, blank lines (skipped) included."""
    assert _error(_csv(tmp_path, f"{HEADER}\nA,S,10,7\n\nB,S,x,7\n")).endswith(
        "stock.csv: line 4: on_hand 'x' in column 'on_hand' is not a number")
    p = _csv(tmp_path, f"{HEADER}\n\nA,S,10,7\n\nB,S,1,7\n")
    assert unknown_items(p, read_stock(p), ["A"]) == [
        f"{p}: line 5: item_id 'B' in column 'item_id' is not in the forecast; skipped"]


def test_reads_parquet_without_site(tmp_path: Path) -> None:
    p = tmp_path / "stock.parquet"
    pl.DataFrame({"item_id": ["A", "B"], "on_hand": [1.0, 2.0], "lead_time_days": [5, 6],
                  "service_level": [0.99, None]}).write_parquet(p)
    df = read_stock(p)
    assert df["site"].to_list() == ["", ""] and df["service_level"].to_list() == [0.99, None]


def test_demo_stock_is_valid(small_demo: Path) -> None:
    df = read_stock(small_demo / "stock.parquet")
    assert df.height == 12 and df["pack_size"].null_count() == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("item_id,on_hand\nA,1\n", "missing column 'lead_time_days' (found: item_id, on_hand)"),
    (f"{HEADER}\n", "file is empty (no data rows)"),
    (f"{HEADER}\nA,S,1,2\n,S,1,2\n", "line 3: empty item_id in column 'item_id'"),
    (f"{HEADER}\nA,S,abc,2\n", "line 2: on_hand 'abc' in column 'on_hand' is not a number"),
    (f"{HEADER}\nA,S,,2\n", "line 2: empty value in required column 'on_hand'"),
    (f"{HEADER},on_order\nA,S,1,2,1\nB,S,-3,2,-1\n", "line 3: on_order -1 in column 'on_order' must be >= 0"),
    (f"{HEADER}\nA,S,1,-1\n",
     "line 2: lead_time_days -1 in column 'lead_time_days' must be a whole number in [0, 3650]"),
    (f"{HEADER}\nA,S,1,1e20\n",
     "line 2: lead_time_days 1e+20 in column 'lead_time_days' must be a whole number in [0, 3650]"),
    (f"{HEADER}\nA,S,1,2.5\n",
     "line 2: lead_time_days 2.5 in column 'lead_time_days' must be a whole number"),
    (f"{HEADER}\nA,S,1,x\n", "line 2: lead_time_days 'x' in column 'lead_time_days' is not a number"),
    (f"{HEADER},service_level\nA,S,1,2,1\n",
     "line 2: service_level 1 in column 'service_level' must be between 0 and 1 (exclusive)"),
    (f"{HEADER},service_level\nA,S,1,2,0\n", "service_level 0 in column 'service_level' must be between 0"),
    (f"{HEADER},service_level\nA,S,1,2,95\n", "service_level 95 in column 'service_level' must be between 0"),
    (f"{HEADER},pack_size\nA,S,1,2,0\n", "line 2: pack_size 0 in column 'pack_size' must be > 0"),
    (f"{HEADER},unit_cost\nA,S,1,2,-4\n", "line 2: unit_cost -4 in column 'unit_cost' must be >= 0"),
    (f"{HEADER},on_order\nA,S,1,2,lots\n", "line 2: on_order 'lots' in column 'on_order' is not a number"),
    (f"{HEADER}\nA,S,1,2\nB,S,1,2\nA,S,3,4\n", "line 2 and line 4: duplicate item_id/site ('A', 'S')"),
    # a row for the whole item beside its sites' rows got the whole item's demand: counted twice
    (f"{HEADER}\nA,S1,100,5\nA,,100,5\n",
     "line 3: item 'A' has a row without a site beside rows for its sites (S1): give its site, or one row"),
    (f"{HEADER}\nA,S,inf,2\n", "line 2: on_hand inf in column 'on_hand' must be finite"),
    (f"{HEADER}\nB,S,10,2,5\nA,S,1,2,5\n", "line 2: 5 values for 4 columns (extra value '5'"),
])
def test_csv_errors(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in _error(_csv(tmp_path, text))


def test_file_level_errors(tmp_path: Path) -> None:
    assert _error(tmp_path / "nope.csv").endswith("nope.csv: file not found")
    assert _error(_csv(tmp_path, "", "empty.csv")).endswith("empty.csv: file is empty")
    assert "unsupported file type '.ods'" in _error(_csv(tmp_path, "x", "stock.ods"))
    broken = _error(_csv(tmp_path, "x", "stock.xlsx"))
    assert broken.startswith(f"{tmp_path / 'stock.xlsx'}: cannot read the workbook")


def test_reads_an_excel_workbook(tmp_path: Path) -> None:
    """A stock spreadsheet saved as .xlsx: codes kept as typed (text '000123', a number 456),
    numbers and percentages as cells, formatted empty rows skipped, errors naming the sheet's row."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Item_ID", "on_hand", "lead_time_days", "unit_cost"])
    ws.append(["000123", 150, 10, 2.5])
    ws.append([456, 1250.5, 14, None])
    ws.append([None, None, None, None])
    ws.append(["C", "x", 5, 1])
    wb.save(tmp_path / "s.xlsx")
    with pytest.raises(InputError, match=r"s.xlsx: row 5: on_hand 'x' in column 'on_hand' is not a number$"):
        read_stock(tmp_path / "s.xlsx")
    ws.delete_rows(5)
    wb.save(tmp_path / "s.xlsx")
    st = read_stock(tmp_path / "s.xlsx")
    assert st["item_id"].to_list() == ["000123", "456"] and st["on_hand"].to_list() == [150.0, 1250.5]
    assert st["lead_time_days"].to_list() == [10, 14] and st["unit_cost"].to_list() == [2.5, None]
    assert unknown_items(tmp_path / "s.xlsx", st, ["000123"]) == [
        f"{tmp_path / 's.xlsx'}: row 3: item_id '456' in column 'item_id' is not in the forecast; skipped"]


def test_open_orders_due_dates(tmp_path: Path) -> None:
    """`on_order_due`: ISO or dd/mm/yyyy text, empty allowed, a date as Parquet stores it; anything
    else names the line."""
    p = tmp_path / "stock.csv"
    p.write_text("item_id,on_hand,lead_time_days,on_order,on_order_due\nA,1,60,600,2026-01-10\nB,2,5,,\n"
                 "C,1,5,3,05/02/2026\n")
    assert read_stock(p)["on_order_due"].to_list() == [date(2026, 1, 10), None, date(2026, 2, 5)]
    p.write_text("item_id,on_hand,lead_time_days,on_order_due\nA,1,60,2026-01-10\nB,1,60,soon\n")
    assert _error(p) == (f"{p}: line 3: on_order_due 'soon' in column 'on_order_due' is not a date "
                         "(yyyy-mm-dd or dd/mm/yyyy)")
    q = tmp_path / "stock.parquet"
    pl.DataFrame({"item_id": ["A", "B"], "on_hand": [1.0, 2.0], "lead_time_days": [3, 4],
                  "on_order_due": [date(2026, 1, 10), None]}).write_parquet(q)
    assert read_stock(q)["on_order_due"].to_list() == [date(2026, 1, 10), None]
    assert read_stock(q).schema["on_order_due"] == pl.Date


def test_a_due_date_with_a_mistyped_year_names_its_row(tmp_path: Path) -> None:
    """An `on_order_due` of 3025 (a typo) is refused naming the row, whether the Parquet file stores
    it as a date, a timestamp or a timestamp with a time zone (its wall-clock day), or the CSV as
    text; it was taken as an order due in a thousand years (or "not a date")."""
    import datetime as dt

    import pyarrow as pa
    import pyarrow.parquet as pq

    q = tmp_path / "stock.parquet"
    for kind in (pa.date32(), pa.timestamp("us"), pa.timestamp("us", tz="America/Sao_Paulo")):
        due = [dt.date(2026, 1, 10), dt.date(3025, 3, 6)]
        if kind != pa.date32():
            due = [dt.datetime(d.year, d.month, d.day, 12) for d in due]
        pq.write_table(pa.table({"item_id": ["A", "B"], "on_hand": [1.0, 2.0], "lead_time_days": [3, 4],
                                 "on_order_due": pa.array(due, kind)}), q)
        assert _error(q) == (f"{q}: row 2: on_order_due 3025-03-06 in column 'on_order_due' lies outside "
                             "1677-09-23..2262-04-10: a mistyped year?"), kind
        pq.write_table(pq.read_table(q).slice(0, 1), q)
        assert read_stock(q)["on_order_due"].to_list() == [date(2026, 1, 10)], kind
    p = _csv(tmp_path, "item_id,on_hand,lead_time_days,on_order_due\nA,1,60,2026-01-10\nB,1,60,06/03/3025\n")
    assert _error(p) == (f"{p}: line 3: on_order_due 3025-03-06 in column 'on_order_due' lies outside "
                         "1677-09-23..2262-04-10: a mistyped year?")


def test_parquet_errors_name_the_row(tmp_path: Path) -> None:
    p = tmp_path / "stock.parquet"
    pl.DataFrame({"item_id": ["A", "B"], "on_hand": [1.0, -2.0], "lead_time_days": [1, 2],
                  "on_order": [0.0, -2.0]}).write_parquet(p)
    assert f"{p}: row 2: on_order -2 in column 'on_order' must be >= 0" == _error(p)
    pl.DataFrame({"item_id": ["A", "A"], "on_hand": [1.0, 2.0], "lead_time_days": [1, 2]}).write_parquet(p)
    assert "row 1 and row 2: duplicate item_id/site ('A', '')" in _error(p)
    pl.DataFrame({"item_id": ["A"], "on_hand": [1.0], "lead_time_days": [1.5]}).write_parquet(p)
    assert "row 1: lead_time_days 1.5 in column 'lead_time_days' must be a whole number in" in _error(p)


def test_same_item_at_two_sites_is_fine(tmp_path: Path) -> None:
    assert read_stock(_csv(tmp_path, f"{HEADER}\nA,S1,1,2\nA,S2,1,2\n")).height == 2


def test_unknown_items_are_warnings_with_the_line(tmp_path: Path) -> None:
    p = _csv(tmp_path, f"{HEADER}\nA,S,1,2\nZZ,S,1,2\n")
    warnings = unknown_items(p, read_stock(p), ["A"])
    assert warnings == [f"{p}: line 3: item_id 'ZZ' in column 'item_id' is not in the forecast; skipped"]


def test_a_stock_file_of_other_items_is_an_error_before_any_fit(tmp_path: Path) -> None:
    """None of the stock's items in the forecast: one line naming both sides' codes, raised by the
    forecast's stock check (before fitting); some missing: one warning naming them."""
    import pandas as pd

    from nova_ray.config import Config
    from nova_ray.pipeline import load_stock

    p = _csv(tmp_path, f"{HEADER}\nfix-1,S,1,2\nfix-2,S,1,2\n")
    msg = str(pytest.raises(InputError, check_matches, p, read_stock(p), ["FIX-1", "FIX-2"]).value)
    assert msg == (f"{p}: none of its 2 items is in the forecast (the file has 'fix-1', 'fix-2'; the "
                   "forecast 'FIX-1', 'FIX-2'): the wrong file, or other item codes?")
    cfg = Config()
    cfg.set("stock", str(p), "test")
    demand = pd.DataFrame({"item_id": ["FIX-1", "FIX-2"]})
    with pytest.raises(InputError, match="none of its 2 items"):
        load_stock(cfg, demand, None)
    ok = _csv(tmp_path, f"{HEADER}\nFIX-1,S,1,2\n", "ok.csv")
    assert check_matches(ok, read_stock(ok), ["FIX-1", "FIX-2", "FIX-3"]) == [
        f"{ok}: 2 forecast item(s) have no stock row and get no recommendation: FIX-2, FIX-3"]
    # a subset run with no stock row for its items warns instead (the file serves the other items)
    cfg.set("stock", str(ok), "test")
    stock, warnings = load_stock(cfg, demand[demand.item_id == "FIX-2"], ["FIX-2"])
    assert stock.height == 0
    assert warnings == [f"{ok}: no stock row for the selected items: no recommendations"]


def test_resolve_stock_path(tmp_path: Path) -> None:
    assert resolve_stock_path("x.csv", None) == "x.csv"
    assert resolve_stock_path("", str(tmp_path / "demand.parquet")) is None
    (tmp_path / "stock.csv").write_bytes(b"x")
    assert resolve_stock_path(None, str(tmp_path / "demand.parquet")) == str(tmp_path / "stock.csv")
    (tmp_path / "stock.parquet").write_bytes(b"x")  # before stock.csv
    assert resolve_stock_path(None, str(tmp_path / "demand.parquet")) == str(tmp_path / "stock.parquet")


def test_export_quirks_zeros_lost_totals_names_and_three_decimals(tmp_path: Path) -> None:
    """A code that lost its leading zeros is named with its twin; a totals row and Portuguese
    column names get hints; "1.500" on hand with no decimal comma anywhere is noted."""
    p = tmp_path / "s.csv"
    p.write_text("item_id;on_hand;lead_time_days\n123;1.500;10\nB;2;5\nTotal;1.502;\n")
    with pytest.raises(InputError, match=r"line 4: empty value in required column 'lead_time_days' "
                       r"\(a totals row\?"):
        read_stock(p)
    p.write_text("item_id;on_hand;lead_time_days\n123;1.500;10\nB;2;5\n;;\n")
    notes: list[str] = []
    stock = read_stock(p, notes)
    assert stock["on_hand"].to_list() == [1500.0, 2.0]
    assert len(notes) == 1 and "column 'on_hand'" in notes[0] and "(1.500 = 1500)" in notes[0]
    warnings = unknown_items(p, stock, ["000123", "B"])
    assert warnings == [f"{p}: line 2: item_id '123' in column 'item_id' is not in the forecast; skipped "
                        "(the forecast has '000123': leading zeros lost, by Excel?)"]
    p.write_text("item_id;on_hand;lead_time_days\nA;x;10\nTotal geral;1,5;\n")
    with pytest.raises(InputError, match=r"line 2: on_hand 'x' in column 'on_hand' is not a number$"):
        read_stock(p)
    p.write_text("codigo_item;saldo;prazo_entrega\nA;1;10\n")
    with pytest.raises(InputError, match=r"rename codigo_item -> item_id, saldo -> on_hand, "
                       r"prazo_entrega -> lead_time_days \(in the file, or \[paths\] columns"):
        read_stock(p)
    assert read_stock(p, columns="codigo_item=item_id,saldo=on_hand,prazo_entrega=lead_time_days").height == 1
    p.write_text("item_id;saldo;on_hand;lead_time_days\nA;1;2;10\n")
    with pytest.raises(InputError, match=r"columns 'saldo' and 'on_hand' both read as 'on_hand'"):
        read_stock(p, columns="saldo=on_hand")


def test_a_service_level_as_a_percentage(tmp_path: Path) -> None:
    """'98%' and '97,5 %' (a spreadsheet's percentages) are 0.98 and 0.975; 98 is still an error."""
    p = tmp_path / "s.csv"
    p.write_text("item_id;on_hand;lead_time_days;service_level\nA;1;2;98%\nB;1;2;97,5 %\nC;1;2;0,9\n")
    assert read_stock(p)["service_level"].to_list() == pytest.approx([0.98, 0.975, 0.9])
    p.write_text("item_id;on_hand;lead_time_days;service_level\nA;1;2;98\n")
    with pytest.raises(InputError, match="service_level 98 in column 'service_level' must be between"):
        read_stock(p)
