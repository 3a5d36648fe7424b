"""ResultWriter's checkpoints read back: done items, groups of whole batches, the rows to store."""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from nova_ray.io.results import BATCH_PREFIX, ResultWriter
from nova_ray.result_rows import BACKTEST_TABLE, FORECAST_TABLE
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


def test_discarded_checkpoints_are_gone_from_every_reader(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    w.discard({f"{BATCH_PREFIX}aa", "lstm", "no-such-checkpoint"})
    assert w.done() == {f"{BATCH_PREFIX}zz", f"{BATCH_PREFIX}mm", "cache"}
    assert w.done_items() == set("ABDEF")
    assert not list(w.stage.glob(f"checkpoints/*/{BATCH_PREFIX}aa.parquet"))
    bt = w.checkpointed_backtests(["A", "C"])
    assert bt is not None and set(bt.collect()["model"]) == {"arima"}  # the LSTM's rows are gone


class _StopAt:
    """A progress that interrupts the run (as Ctrl-C would) at a stage, or right after the LSTM's
    first part (`stage=None`)."""

    def __init__(self, stage: str | None = None) -> None:
        self.at = stage

    def stage(self, name: str, total: int | None = None) -> None:
        if name == self.at:
            raise KeyboardInterrupt

    def advance(self, n: int = 1) -> None:
        if n == 0 and self.at is None:  # the local path advances by 0 for the LSTM's parts but the last
            raise KeyboardInterrupt


def _cfg(demo: Path, out: Path):
    from nova_ray.config import load_config

    over = {"data": str(demo / "demand.parquet"), "output": str(out / "results"),
            "models_dir": str(out / "models"), "models": "naive,lstm", "horizon": 7,
            "backtest_windows": 1, "epochs": 1}
    return load_config(None, over, env={}, dotenv=None)


@pytest.fixture(scope="module")
def clean(small_demo: Path, tmp_path_factory) -> Path:
    """The results of an uninterrupted naive + LSTM run (local path, no Ray)."""
    from nova_ray.pipeline import run_forecast

    out = tmp_path_factory.mktemp("clean")
    run_forecast(_cfg(small_demo, out), use_ray=False, run_date=DAY)
    return out / "results"


KEYS = {
    "metrics": ["item_id", "model", "window"],
    "backtests": ["item_id", "model", "window", "date"],
    "forecasts": ["item_id", "model", "date"],
    "ensemble_weights": ["item_id", "model"],
}


def _assert_same_tables(results: Path, clean: Path) -> None:
    from polars.testing import assert_frame_equal

    for kind, key in KEYS.items():
        got = pl.read_parquet(results / kind).sort(key)
        assert_frame_equal(got, pl.read_parquet(clean / kind).sort(key))
        if kind == "metrics":
            assert "lstm" in got["model"].to_list()


def test_a_resumed_lstm_discards_parts_that_its_run_did_not_produce(
    small_demo: Path, tmp_path: Path, clean: Path
) -> None:
    """A part left by an earlier attempt that made more parts would add its rows to the run's
    (here the first backtest part under another part's name, its forecasts off by 10: it would
    change the LSTM's metrics, its ensemble weight, the ensemble's backtests and forecasts)."""
    from nova_ray.pipeline import run_forecast

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_forecast(_cfg(small_demo, out), progress=_StopAt(), use_ray=False, run_date=DAY)
    (ck,) = (out / "results" / ".staging").glob("*/checkpoints")
    assert (ck / "done" / "lstm-bt-0000").exists() and not (ck / "done" / "lstm").exists()
    for kind in ("forecasts", "backtests", "items"):  # the stale part of an "earlier attempt"
        shutil.copy(ck / kind / "lstm-bt-0000.parquet", ck / kind / "lstm-bt-0007.parquet")
    stale = pl.read_parquet(ck / "backtests" / "lstm-bt-0000.parquet")
    assert stale.height > 0
    stale.with_columns(pl.col("forecast") + 10).write_parquet(ck / "backtests" / "lstm-bt-0007.parquet")
    shutil.copy(ck / "done" / "lstm-bt-0000", ck / "done" / "lstm-bt-0007")
    summary = run_forecast(_cfg(small_demo, out), use_ray=False, run_date=DAY, resume=True)
    assert summary.resumed_items == summary.items  # the naive batches came from the checkpoints
    _assert_same_tables(out / "results", clean)


def test_a_run_killed_after_storing_its_models_resumes_to_the_clean_tables(
    small_demo: Path, tmp_path: Path, clean: Path, killed_at_publish
) -> None:
    """Killed between the model store's update and the publish, the resumed run finds every item
    warm (its own fits) and their stored backtests besides the checkpointed ones: the stored rows
    stand in only for what the run did not fit, or every backtest would count twice."""
    from nova_ray.pipeline import run_forecast

    out = tmp_path / "out"
    killed_at_publish(_cfg(small_demo, out), run_date=DAY)
    assert list((out / "models").glob("*/backtests.parquet")) and not (out / "results" / "metadata").exists()
    summary = run_forecast(_cfg(small_demo, out), use_ray=False, run_date=DAY, resume=True)
    # each item counted once: resumed (it read "12 reused stored model choices; 12 resumed")
    assert summary.resumed_items == summary.items and summary.warm_items == 0
    assert summary.incremental().startswith(f"0 items reused stored model choices; {summary.items} resumed")
    _assert_same_tables(out / "results", clean)


def test_the_lstm_network_is_stored_by_whole_runs_also_when_resumed(
    small_demo: Path, tmp_path: Path
) -> None:
    """A run over some items (--items) stores no network (it would replace the one trained on
    every item); a run killed once its LSTM was done stores the network it trained when resumed."""
    from nova_ray.pipeline import run_forecast

    out = tmp_path / "out"
    subset = run_forecast(_cfg(small_demo, out), ["CAB-0001", "ELE-0001"], use_ray=False, run_date=DAY)
    assert subset.lstm == "cold" and not list((out / "models").glob("*/lstm.npz"))
    with pytest.raises(KeyboardInterrupt):
        run_forecast(_cfg(small_demo, out), progress=_StopAt("ensemble and metrics"), use_ray=False,
                     run_date=DAY)
    summary = run_forecast(_cfg(small_demo, out), use_ray=False, run_date=DAY, resume=True)
    assert summary.resumed_items == summary.items and summary.lstm == "cold"
    (stored,) = (out / "models").glob("*/lstm.npz")
    nxt = DAY + timedelta(days=1)  # the next day's run reuses it
    warm = run_forecast(_cfg(small_demo, out), use_ray=False, run_date=nxt)
    assert warm.lstm == "warm" and warm.warm_items == warm.items


def test_a_commit_killed_after_its_swap_is_resumed_and_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the partitions' swap and the metadata, a second run of the date resumes (same
    run id) and publishes: the partitions it swapped in the first time go to a trash folder of
    their own, not onto the first attempt's trash (ENOTEMPTY, on every resume)."""
    import os

    from nova_ray.io import results

    root = tmp_path / "out"
    first = ResultWriter(root, "run-1", DAY, {"run_id": "run-1"}, stage_key="k1")
    first.write("items", _tables(["A"], "arima")["items"])
    first.commit({}, {})

    def attempt(resume: bool) -> ResultWriter:
        w = ResultWriter(root, "run-2", DAY, {"run_id": "run-2"}, stage_key="k2", resume=resume)
        w.write("items", _tables(["B"], "arima")["items"])
        return w

    replace = os.replace

    def killed(src, dst):
        if str(dst).endswith("model_versions.json"):
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(results.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        attempt(False).commit({}, {})
    monkeypatch.setattr(results.os, "replace", replace)
    items = lambda: pl.read_parquet(root / "items")["item_id"].to_list()  # noqa: E731
    assert items() == ["B"] and list((root / ".trash").iterdir())  # swapped; the stage is kept
    assert results.read_pointer(root)["run_id"] == "run-1"
    again = attempt(True)
    assert again.resumed and again.run_id == "run-2"
    again.commit({}, {})
    assert items() == ["B"] and results.read_pointer(root)["run_id"] == "run-2"
    assert sorted(p.name for p in root.iterdir()) == ["items", "metadata"]  # no trash, no stage


def test_a_stage_is_renamed_before_it_is_deleted(tmp_path: Path) -> None:
    """A new run drops an old stage of its key in one rename, and what a killed deletion left."""
    w = _writer(tmp_path)
    left = w.stage.parent / ".dropped-old-0000"
    (left / "checkpoints").mkdir(parents=True)
    again = ResultWriter(tmp_path / "out", "run-9", DAY, {"run_id": "run-9"}, stage_key=w.stage.name)
    assert not again.resumed and again.done() == set()
    assert sorted(p.name for p in again.stage.parent.iterdir()) == [w.stage.name]


def test_a_full_refit_does_not_resume_a_run_that_was_not_one(small_demo: Path, tmp_path: Path) -> None:
    """`nova-ray run --full-refit` after a killed night resumed the killed run's warm items, then
    stored them as if fitted cold (no backtests, a fresh date): the stage key holds --full-refit."""
    from nova_ray.config import load_config
    from nova_ray.pipeline import run_forecast

    over = {"data": str(small_demo / "demand.parquet"), "output": str(tmp_path / "results"),
            "models_dir": str(tmp_path / "models"), "models": "naive", "horizon": 7, "backtest_windows": 1}
    cfg = load_config(None, over, env={}, dotenv=None)
    with pytest.raises(KeyboardInterrupt):  # every batch checkpointed, then stopped
        run_forecast(cfg, progress=_StopAt("ensemble and metrics"), use_ray=False, run_date=DAY)
    forced = run_forecast(cfg, use_ray=False, run_date=DAY, resume=True, full_refit=True)
    assert forced.resumed_items == 0 and any("--resume: no interrupted run" in w for w in forced.warnings)
    with pytest.raises(KeyboardInterrupt):
        run_forecast(cfg, progress=_StopAt("ensemble and metrics"), use_ray=False, run_date=DAY,
                     full_refit=True)
    again = run_forecast(cfg, use_ray=False, run_date=DAY, resume=True, full_refit=True)
    assert again.resumed_items == again.items  # the same mode resumes
    # `nova-ray train` (a full refit, not published) between the kill and the resume dropped the
    # killed run's checkpoints (it shared their stage): it has its own now
    with pytest.raises(KeyboardInterrupt):
        run_forecast(cfg, progress=_StopAt("ensemble and metrics"), use_ray=False, run_date=DAY,
                     full_refit=True)
    trained = run_forecast(cfg, use_ray=False, run_date=DAY, full_refit=True, publish=False)
    assert trained.resumed_items == 0
    again = run_forecast(cfg, use_ray=False, run_date=DAY, resume=True, full_refit=True)
    assert again.resumed_items == again.items


def test_a_resume_keeps_the_warm_set_of_its_first_attempt(small_demo: Path, tmp_path: Path) -> None:
    """The warm items were looked up again when a run resumed, while its checkpoints held the first
    attempt's: an item stored meanwhile (`nova-ray train --items`) was published warm without
    backtests, metrics or learned weights; items warm in the first attempt but not under a shorter
    age limit were stored as fresh cold fits without their backtests. Now a resume fits by the
    warm set its checkpoints were made with, and gives the clean run's tables."""
    import pandas as pd

    from nova_ray.config import load_config
    from nova_ray.io.model_store import age_limit
    from nova_ray.pipeline import run_forecast

    demand = pd.read_parquet(small_demo / "demand.parquet")
    new_item = sorted(demand["item_id"].unique())[1]
    demand[(demand["date"] < demand["date"].max()) & (demand["item_id"] != new_item)].to_parquet(
        tmp_path / "day1.parquet")  # the new item has its first rows on day 2
    demand.to_parquet(tmp_path / "day2.parquet")
    day1, day2 = DAY, DAY + timedelta(days=3)  # the day-1 fits are 3 days old on day 2

    def cfg(day: str, out: Path, **kw):
        over = {"data": str(tmp_path / f"{day}.parquet"), "output": str(out / "results"),
                "models_dir": str(out / "models"), "models": "naive,theta", "horizon": 7,
                "backtest_windows": 2} | kw
        return load_config(None, over, env={}, dotenv=None)

    def tables(out: Path) -> dict[str, pl.DataFrame]:
        keys = {"backtests": ["item_id", "model", "window", "date"],
                "metrics": ["item_id", "model", "window"], "ensemble_weights": ["item_id", "model"]}
        return {k: pl.read_parquet(out / "results" / k).drop("run_date").sort(by) for k, by in keys.items()}

    clean, out = tmp_path / "clean", tmp_path / "resumed"
    for o in (clean, out):
        run_forecast(cfg("day1", o), use_ray=False, run_date=day1)
    run_forecast(cfg("day2", clean), use_ray=False, run_date=day2)
    with pytest.raises(KeyboardInterrupt):  # the warm set looked up and checkpointed, nothing fitted
        run_forecast(cfg("day2", out), progress=_StopAt("fit and backtest"), use_ray=False, run_date=day2)
    trained = run_forecast(cfg("day2", out), items=[new_item], use_ray=False, run_date=day2, full_refit=True,
                           publish=False)  # `nova-ray train --items`: the new item is stored now
    assert trained.items == 1
    resumed = run_forecast(cfg("day2", out), use_ray=False, run_date=day2, resume=True)
    assert resumed.warm_items == resumed.items - 1  # the new item fitted cold, as in the first attempt
    got, want = tables(out), tables(clean)
    assert got["backtests"].filter(pl.col("item_id") == new_item).height > 0
    for kind in want:
        assert got[kind].drop("run_id", strict=False).equals(want[kind].drop("run_id", strict=False)), kind

    # a shorter age limit at the resume (4 days: a fit is reused 2 to 4 days, by item): the first
    # attempt's warm items stay warm, their entries as they were (not stored again as day-2 cold fits)
    older = [i for i in sorted(demand["item_id"].unique()) if i != new_item and age_limit(i, 4) < 3]
    assert older  # items the resume's own lookup would have fitted cold
    out2 = tmp_path / "shorter"
    run_forecast(cfg("day1", out2), use_ray=False, run_date=day1)
    with pytest.raises(KeyboardInterrupt):  # every batch checkpointed
        run_forecast(cfg("day2", out2), progress=_StopAt("ensemble and metrics"), use_ray=False,
                     run_date=day2)
    store = next(p for p in (out2 / "models").iterdir() if p.is_dir())
    before = pl.read_parquet(store / "items.parquet").filter(pl.col("item_id") != new_item)
    again = run_forecast(cfg("day2", out2, cache_max_age_days=4), use_ray=False, run_date=day2, resume=True)
    assert again.resumed_items == again.items
    after = pl.read_parquet(store / "items.parquet").filter(pl.col("item_id") != new_item)
    assert after.sort("item_id").equals(before.sort("item_id"))
    got, want = tables(out2), tables(clean)
    for kind in want:
        assert got[kind].drop("run_id", strict=False).equals(want[kind].drop("run_id", strict=False)), kind


def test_unreadable_checkpoints_are_fitted_again_when_resumed(
    small_demo: Path, tmp_path: Path, clean: Path, killed_at_publish
) -> None:
    """A batch marked done whose file a disk lost the end of (a power cut; checkpoints are now
    fsynced before their marker): `--resume` refitted the rest, then died in the ensemble with a
    traceback, every retry alike. Now the batch is fitted again, an LSTM part with all the LSTM's."""
    from nova_ray.pipeline import run_forecast

    w = _writer(tmp_path)
    (w.stage / "checkpoints" / "forecasts" / f"{BATCH_PREFIX}aa.parquet").write_bytes(b"PAR1")
    again = ResultWriter(tmp_path / "out", "run-9", DAY, {"run_id": "run-9"}, stage_key="run-1", resume=True)
    assert again.resumed and again.damaged == [f"{BATCH_PREFIX}aa"]
    assert again.done_items() == set("ABDEF") and f"{BATCH_PREFIX}aa" not in again.done()

    out, out2 = tmp_path / "run", tmp_path / "run2"
    killed_at_publish(_cfg(small_demo, out), run_date=DAY, full_refit=True)
    # a second killed run, the same (the stage's key holds no paths): its LSTM network damaged below
    shutil.copytree(out, out2, symlinks=True)
    ck = next((out / "results" / ".staging").iterdir()) / "checkpoints"
    batch = sorted((ck / "forecasts").glob(f"{BATCH_PREFIX}*.parquet"))[0]
    part = sorted((ck / "forecasts").glob("lstm-*.parquet"))[0]
    for f in (batch, part):
        f.write_bytes(f.read_bytes()[:30])
    summary = run_forecast(_cfg(small_demo, out), use_ray=False, run_date=DAY, full_refit=True, resume=True)
    (note,) = [w for w in summary.warnings if "could not be read" in w]
    assert note.startswith("2 checkpoint(s) of the interrupted run could not be read (")
    assert batch.stem in note and note.endswith("): fitted again")
    assert summary.resumed_items < summary.items and summary.lstm == "cold"
    _assert_same_tables(out / "results", clean)
    # the LSTM's network kept with the checkpoints, emptied: it was a traceback on every retry
    state = next((out2 / "results" / ".staging").iterdir()) / "checkpoints" / "lstm-state.npz"
    state.write_bytes(b"")
    summary = run_forecast(_cfg(small_demo, out2), use_ray=False, run_date=DAY, full_refit=True, resume=True)
    (note,) = [w for w in summary.warnings if "could not be read" in w]
    assert "lstm-state.npz" in note and summary.lstm == "cold"
    _assert_same_tables(out2 / "results", clean)


def test_resume_after_midnight_goes_on_with_the_run_of_the_day_before(small_demo: Path,
                                                                      tmp_path: Path) -> None:
    """A forecast stopped at 23:50 and resumed at 00:10 crossed midnight: the run date is in the
    stage's key, so `--resume` started afresh. It now goes on with the run of the day before (and
    its run date); a run without --resume, or with a date given, does not."""
    from nova_ray import clock
    from nova_ray.config import load_config
    from nova_ray.pipeline import run_forecast

    over = {"data": str(small_demo / "demand.parquet"), "output": str(tmp_path / "results"),
            "models_dir": str(tmp_path / "models"), "models": "naive", "horizon": 7, "backtest_windows": 1}
    cfg = load_config(None, over, env={}, dotenv=None)
    today = clock.today()
    evening = today - timedelta(days=1)
    with pytest.raises(KeyboardInterrupt):  # every batch checkpointed, then stopped
        run_forecast(cfg, progress=_StopAt("ensemble and metrics"), use_ray=False, run_date=evening)
    pinned = run_forecast(cfg, use_ray=False, run_date=today, resume=True, publish=False)
    assert pinned.resumed_items == 0  # a date given (`run --date`): that date's run, afresh
    after = run_forecast(cfg, use_ray=False, resume=True)  # the clock says today
    assert after.resumed_items == after.items and after.run_date == evening.isoformat()
    assert after.run_id.startswith(f"{evening:%Y%m%d}-") and not any("--resume" in w for w in after.warnings)
    fresh = run_forecast(cfg, use_ray=False, resume=True)  # nothing left to resume: today's, afresh
    assert fresh.resumed_items == 0 and fresh.run_date == today.isoformat()
