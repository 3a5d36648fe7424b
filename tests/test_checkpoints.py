"""ResultWriter's checkpoints read back: done items, groups of whole batches, the rows to store."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa

from nova_ray.engine import BACKTEST_TABLE, FORECAST_TABLE
from nova_ray.io.results import BATCH_PREFIX, ResultWriter
from nova_ray.schemas import ITEMS

DAY = date(2025, 1, 1)


def _table(columns: dict[str, list], schema: pa.Schema) -> pa.Table:
    """The given columns, nulls in the schema's others."""
    n = len(next(iter(columns.values())))
    return pa.table({c: columns.get(c, [None] * n) for c in schema.names}, schema=schema)


def _tables(items: list[str], model: str) -> dict[str, pa.Table]:
    """One batch's checkpoint: a forecast and a backtest row per item, and its items rows (none
    for the LSTM's, which spans every item)."""
    n = len(items)
    fc = {"item_id": items, "model": [model] * n, "date": [DAY] * n, "forecast": [1.0] * n}
    bt = fc | {"window": [0] * n, "origin": [DAY - timedelta(days=1)] * n, "actual": [2.0] * n}
    own = [] if model == "lstm" else items
    rows = {"item_id": own, "demand_class": ["smooth"] * len(own), "models": [model] * len(own)}
    return {
        "forecasts": _table(fc, FORECAST_TABLE),
        "backtests": _table(bt, BACKTEST_TABLE),
        "items": _table(rows, ITEMS) if own else ITEMS.empty_table(),
    }


def _writer(tmp_path: Path) -> ResultWriter:
    w = ResultWriter(tmp_path / "out", "run-1", DAY, {"run_id": "run-1"})
    w.checkpoint(f"{BATCH_PREFIX}zz", _tables(["A", "B"], "arima"))  # names are random: order by items
    w.checkpoint(f"{BATCH_PREFIX}aa", _tables(["C"], "arima"))
    w.checkpoint(f"{BATCH_PREFIX}mm", _tables(["D", "E", "F"], "arima"))
    w.checkpoint("lstm", _tables(["A", "B", "C", "D", "E", "F"], "lstm"))
    w.checkpoint("cache", {"backtests": _tables(["G"], "ets")["backtests"]})  # a warm item's stored rows
    return w


def test_done_items_and_groups_of_whole_batches_in_item_order(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    assert w.done_items() == set("ABCDEF")
    groups = list(w.batch_groups(3))
    assert groups == [({f"{BATCH_PREFIX}zz", f"{BATCH_PREFIX}aa"}, ["A", "B", "C"]),
                      ({f"{BATCH_PREFIX}mm"}, ["D", "E", "F"])]
    stems, items = groups[0]
    fc = w.read_group("forecasts", FORECAST_TABLE, stems, items)  # its batches whole, the LSTM's filtered
    assert sorted(zip(fc["item_id"], fc["model"], strict=True)) == [
        (i, m) for i in "ABC" for m in ("arima", "lstm")]
    bt = w.read_group("backtests", BACKTEST_TABLE, stems, items)
    assert set(bt["item_id"]) == set("ABC")  # the cache's item G belongs to no group of these


def test_rows_to_store_are_this_runs_fits_only(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    items = w.checkpointed_items(exclude={"B", "E"})  # warm items keep their stored entries
    assert sorted(items["item_id"]) == ["A", "C", "D", "F"] and set(items["models"]) == {"arima"}
    bt = w.checkpointed_backtests(["A", "D", "G"])
    assert isinstance(bt, pl.LazyFrame)
    got = bt.collect()
    assert sorted(zip(got["item_id"], got["model"], strict=True)) == [
        ("A", "arima"), ("A", "lstm"), ("D", "arima"), ("D", "lstm")]  # never the warm cache's rows
    empty = ResultWriter(tmp_path / "other", "run-2", DAY, {"run_id": "run-2"})
    assert empty.checkpointed_items().height == 0 and empty.checkpointed_backtests(["A"]) is None
    assert empty.done_items() == set() and list(empty.batch_groups(3)) == []
