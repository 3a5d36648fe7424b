"""Incremental daily runs: stored model choices reused after one more day of data, dropped when
history changed or the config changed; `train` stores without publishing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from nova_ray.cli import app
from nova_ray.config import load_config
from nova_ray.io.model_store import (
    COLD_CHANGED,
    COLD_CLASS,
    COLD_FAILED,
    COLD_FORCED,
    COLD_LATER,
    COLD_NEW,
    COLD_NO_STORE,
    COLD_OLD,
    age_limit,
    fingerprint,
)
from nova_ray.pipeline import load_series, run_forecast

ITEMS = ["CAB-0002", "ELE-0001", "FIX-0001", "STL-0002", "SAF-0001", "CAB-0001"]


@pytest.fixture(scope="module")
def days(tmp_path_factory, small_demo: Path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("inc")
    full = pd.read_parquet(small_demo / "demand.parquet")
    full = full[full["item_id"].isin(ITEMS)]
    last = full["date"].max()
    paths = {"day1": tmp / "day1.parquet", "day2": tmp / "day2.parquet", "changed": tmp / "changed.parquet"}
    full[full["date"] < last].to_parquet(paths["day1"])
    full.to_parquet(paths["day2"])
    # a rolling export window: the next night's file lost its first 3 days, once as it was and
    # once with a correction to a day that both files hold
    rolling = full[full["date"] >= full["date"].min() + pd.Timedelta(days=3)]
    paths["rolling"] = tmp / "rolling.parquet"
    rolling.to_parquet(paths["rolling"])
    corrected = rolling.copy()
    day = corrected["date"].min() + pd.Timedelta(days=40)
    corrected.loc[(corrected["item_id"] == "STL-0002") & (corrected["date"] == day), "quantity"] += 3
    paths["rolling_corrected"] = tmp / "rolling_corrected.parquet"
    corrected.to_parquet(paths["rolling_corrected"])
    changed = full.copy()
    changed.loc[
        (changed["item_id"] == "ELE-0001")
        & (changed["date"] == changed["date"].min() + pd.Timedelta(days=10)),
        "quantity",
    ] += 7
    changed.to_parquet(paths["changed"])
    return paths


def _cfg(data: Path, tmp: Path, **kw) -> object:
    return load_config(
        None,
        {
            "data": str(data),
            "output": str(tmp / "out"),
            "models_dir": str(tmp / "models"),
            "horizon": 14,
            "models": "arima,ets,theta,naive",
            **kw,
        },
        env={},
        dotenv=None,
    )


def _model_forecasts(out: Path, model: str) -> pl.DataFrame:
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    return pl.read_parquet(out / "forecasts" / f"run_date={ptr['run_date']}" / f"model={model}").select(
        "item_id", "date", "forecast"
    )


def _ensemble(out: Path) -> pl.DataFrame:
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    return pl.read_parquet(out / "forecasts" / f"run_date={ptr['run_date']}" / "model=ensemble").sort(
        "item_id", "date"
    )


def test_warm_rerun_reuses_choices_and_matches_cold(days, tmp_path: Path) -> None:
    cold1 = run_forecast(_cfg(days["day1"], tmp_path), use_ray=False)
    assert cold1.warm_items == 0
    assert cold1.cold_items == {COLD_NO_STORE: {"count": len(ITEMS), "items": sorted(ITEMS)}}
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    assert (store / "items.parquet").exists() and (store / "model_versions.json").exists()

    stored = pl.read_parquet(store / "items.parquet")
    # each entry records its item's history (the run no longer holds the series when it stores):
    # the first day, the days up to the file's last day, the fingerprint of the series fitted
    history = pd.read_parquet(days["day1"])
    first = history.groupby("item_id")["date"].min()
    n_obs = {k: (history["date"].max() - v).days + 1 for k, v in first.items()}
    assert dict(zip(stored["item_id"], stored["n_obs"], strict=True)) == n_obs
    assert dict(zip(stored["item_id"], stored["start"], strict=True)) == first.to_dict()
    series, _ = load_series(_cfg(days["day1"], tmp_path), None)
    by_item = {str(k): i for i, k in enumerate(series.item_ids)}
    for item, fp in zip(stored["item_id"], stored["fingerprint"], strict=True):
        assert fp == fingerprint(series.starts[by_item[item]], series.values_of(by_item[item])), item
    warm = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False)
    assert warm.warm_items == len(ITEMS) and warm.cold_items == {}
    assert warm.incremental() == f"{len(ITEMS)} items reused stored model choices"
    # their metrics and weights are the cold fit's: each item says so
    notes = pl.read_parquet(tmp_path / "out" / "items" / f"run_date={warm.run_date}")["notes"]
    assert all(f"warm: model choices and backtests of the fit of {cold1.run_date}" in n for n in notes)
    assert warm.cpu_seconds < cold1.cpu_seconds / 5
    # the stored parameters were re-filtered, not estimated again: the run's items carry them
    out_items = pl.read_parquet(next((tmp_path / "out" / "items").iterdir()))
    for before, after in zip(
        stored.sort("item_id")["params"], out_items.sort("item_id")["params"], strict=True
    ):
        a, b = json.loads(before), json.loads(after)
        for name in ("arima", "ets", "theta"):
            if name in a:
                assert "state" in a[name] and b[name]["state"] == a[name]["state"], name
    warm_fc = _ensemble(tmp_path / "out")

    cold = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, full_refit=True)
    assert cold.warm_items == 0 and cold.cold_items[COLD_FORCED]["count"] == len(ITEMS)
    cold_fc = _ensemble(tmp_path / "out")
    # stated tolerance: each item's horizon total within 10% of the cold refit's (or 1 unit)
    tot = (
        warm_fc.group_by("item_id")
        .agg(pl.col("forecast").sum())
        .join(cold_fc.group_by("item_id").agg(pl.col("forecast").sum()), on="item_id", suffix="_cold")
    )
    diff = (tot["forecast"] - tot["forecast_cold"]).abs()
    assert (diff <= (0.10 * tot["forecast_cold"]).clip(lower_bound=1.0)).all(), tot


def test_changed_history_and_config_drop_the_cache(days, tmp_path: Path) -> None:
    run_forecast(_cfg(days["day1"], tmp_path), use_ray=False)
    changed = run_forecast(_cfg(days["changed"], tmp_path), use_ray=False)
    assert changed.warm_items == len(ITEMS) - 1  # ELE-0001's past changed: refit cold
    assert changed.cold_items == {COLD_CHANGED: {"count": 1, "items": ["ELE-0001"]}}
    assert changed.incremental().endswith(f"1 fitted cold: {COLD_CHANGED} (ELE-0001)")
    record = json.loads(next((tmp_path / "out" / "metadata" / "runs").glob(f"{changed.run_id}*")).read_text())
    assert record["summary"]["cold_items"] == changed.cold_items  # in the run's record too
    other = run_forecast(_cfg(days["day2"], tmp_path, horizon=7), use_ray=False)
    assert other.warm_items == 0  # another config: another model version, a fresh store
    # the same models in another order (or case) are the same config: it made a new store, all cold
    again = run_forecast(_cfg(days["changed"], tmp_path, models="naive,Theta,ets, arima"), use_ray=False)
    assert again.warm_items == len(ITEMS)


def test_stores_of_other_versions_unused_for_a_month_are_removed(days, tmp_path: Path) -> None:
    """Each config change or upgrade starts a new store folder; the old ones, with their backtests,
    stayed on disk for ever. A run removes those of other versions unwritten for 30 days and for
    their own cache age (no entry in them can be reused), and nothing else."""
    import os
    import shutil
    import time

    run_forecast(_cfg(days["day1"], tmp_path, models="naive"), use_ray=False)
    models = tmp_path / "models"
    old = next(p for p in models.iterdir() if p.is_dir())
    assert json.loads((old / "model_versions.json").read_text())["cache_max_age_days"] == 7
    recent, monthly = shutil.copytree(old, models / "recent"), shutil.copytree(old, models / "monthly")
    versions = json.loads((monthly / "model_versions.json").read_text()) | {"cache_max_age_days": 60}
    (monthly / "model_versions.json").write_text(json.dumps(versions))  # a job that reuses fits 60 days
    odd = shutil.copytree(old, models / "odd")  # an age that int() cannot take: 30 days, no error
    (odd / "model_versions.json").write_text(json.dumps(versions | {"cache_max_age_days": float("inf")}))
    half = shutil.copytree(old, models / ".gone.pruning")  # a removal that stopped half-way
    notes = models / "notes"  # a user's folder: not a store
    notes.mkdir()
    shutil.copy(old / "items.parquet", notes / "items.parquet")
    (notes / "readme.txt").write_text("mine")
    (models / "dots").mkdir()
    (models / "dots" / ".env").write_text("X=1")
    elsewhere = shutil.copytree(old, tmp_path / "elsewhere")  # a store linked in from another disk
    (models / "link").symlink_to(elsewhere, target_is_directory=True)

    def age(folder: Path, days_old: float) -> None:
        t = time.time() - days_old * 86400
        for f in folder.iterdir():
            os.utime(f, (t, t))

    for folder in (old, monthly, odd, notes, models / "dots", elsewhere):
        age(folder, 31)
    age(recent, 10)
    run_forecast(_cfg(days["day2"], tmp_path, models="naive", horizon=7), use_ray=False)  # another version
    folders = {p.name for p in models.iterdir() if p.is_dir()}
    assert old.name not in folders
    assert {"recent", "monthly", "notes", "dots", "link"} <= folders and len(folders) == 6
    assert not half.exists() and not odd.exists()
    assert (notes / "readme.txt").exists() and (models / "dots" / ".env").exists()
    assert (elsewhere / "items.parquet").exists()


def test_a_rolling_export_window_keeps_the_cache(days, tmp_path: Path) -> None:
    """An export of the last N days loses its oldest days every night: the items stay warm, unless
    a value that both histories hold changed."""
    run_forecast(_cfg(days["day1"], tmp_path), use_ray=False)
    rolled = run_forecast(_cfg(days["rolling"], tmp_path), use_ray=False)
    assert rolled.warm_items == len(ITEMS) and rolled.cold_items == {}
    # the stored ETS states moved with the 3 days lost: the warm forecasts keep the weekly pattern
    # in phase with a cold refit's (unmoved, each item's pattern came out 3 days late)
    ets = lambda: _model_forecasts(tmp_path / "out", "ets")  # noqa: E731
    warm = ets()
    run_forecast(_cfg(days["rolling"], tmp_path), use_ray=False, full_refit=True)
    both = warm.join(ets(), on=["item_id", "date"], suffix="_cold")
    assert both.height == len(ITEMS) * 14
    per_item = both.group_by("item_id").agg(
        off=(pl.col("forecast") - pl.col("forecast_cold")).abs().max() / pl.col("forecast_cold").mean()
    )
    assert (per_item["off"] < 0.25).all(), per_item
    corrected = run_forecast(_cfg(days["rolling_corrected"], tmp_path), use_ray=False)
    assert corrected.cold_items == {COLD_CHANGED: {"count": 1, "items": ["STL-0002"]}}


def test_a_rolling_export_window_keeps_the_cache_at_weekly_periods(small_demo: Path, tmp_path: Path) -> None:
    """Weekly periods on an export that loses a day a night: its first, incomplete week changed its
    total every night, and every item was fitted cold as a changed history. That week is left out
    now (`complete_start`): the items stay warm."""
    full = pd.read_parquet(small_demo / "demand.parquet")
    full = full[full["item_id"].isin(ITEMS)]
    first, last = full["date"].min(), full["date"].max()
    nights = []
    for k in range(2):  # windows that start mid-week, a day later each night
        path = tmp_path / f"night{k}.parquet"
        start, end = first + pd.Timedelta(days=3 + k), last - pd.Timedelta(days=1 - k)
        full[(full["date"] >= start) & (full["date"] <= end)].to_parquet(path)
        cfg = _cfg(path, tmp_path, freq="W", horizon=4, models="naive,theta")
        nights.append(run_forecast(cfg, use_ray=False))
    assert nights[1].warm_items == len(ITEMS) and nights[1].cold_items == {}
    assert any("incomplete period is left out" in w for w in nights[1].warnings)


def test_an_item_grown_long_enough_for_the_lstm_is_fitted_cold(tmp_path: Path) -> None:
    """An item one period short of an LSTM window (lookback + horizon) at its fit, long enough the
    next night, was warm: the LSTM forecast it but its stored fit had no LSTM backtests, so the
    ensemble gave the LSTM no weight until the item's periodic refit. It is fitted cold now."""
    from nova_ray.io.model_store import COLD_LSTM_NOW

    rng = np.random.default_rng(1)
    days = pd.date_range("2024-01-01", periods=120)
    rows = [pd.DataFrame({"item_id": "A", "date": days, "quantity": 20 + rng.normal(0, 2, 120).round()}),
            pd.DataFrame({"item_id": "X", "date": days[-35:], "quantity": 30 + rng.normal(0, 3, 35).round()})]
    full = pd.concat(rows)
    full[full["date"] < days[-1]].to_parquet(tmp_path / "night1.parquet")  # X: 34 days, 28 + 7 needed
    full.to_parquet(tmp_path / "night2.parquet")

    def run(night: str):
        return run_forecast(_cfg(tmp_path / f"{night}.parquet", tmp_path, horizon=7, models="naive,lstm",
                                 epochs=1, units=4), use_ray=False)

    run("night1")
    second = run("night2")
    assert second.cold_items == {COLD_LSTM_NOW: {"count": 1, "items": ["X"]}} and second.warm_items == 1
    metrics = pl.read_parquet(tmp_path / "out" / "metrics").filter(pl.col("item_id") == "X")
    assert "lstm" in metrics["model"].to_list()  # its own LSTM backtests, which the ensemble weighs


def test_same_history_checks_what_both_histories_hold() -> None:
    """Grown at the end, or without its oldest periods (any frequency): the same history; a value
    changed where both hold it, an earlier start, or a shorter end: not the same. A store written
    before the block fingerprints, or with blocks of another length, reads a trimmed history as
    changed. Monthly, every period both hold is compared (blocks of one period): blocks of 28 left
    a 3-year history's first 27 months unchecked once its start moved, and made a history of 28
    months or fewer changed whenever it did."""
    from nova_ray.io.model_store import BLOCK, block_fingerprints, block_periods, same_history

    rng = np.random.default_rng(3)
    y = rng.poisson(4.0, 3 * BLOCK + 5).astype(float)
    for freq, start, later in (
        ("D", np.datetime64("2024-01-01"), lambda k: np.datetime64("2024-01-01") + k),
        ("W", np.datetime64("2024-01-01"), lambda k: np.datetime64("2024-01-01") + 7 * k),
        ("M", np.datetime64("2010-01-01"), lambda k: (np.datetime64("2010-01", "M") + k).astype("M8[D]")),
    ):
        block = block_periods(freq)
        entry = {"start": start, "n_obs": len(y), "fingerprint": fingerprint(start, y),
                 "blocks": block_fingerprints(y, block)}
        today = np.append(y, [1.0, 2.0])
        assert same_history(entry, start, today, freq)
        assert not same_history(entry, start, today[:-3], freq)  # ends before the stored history
        for k in (1, 3, block, block + 5, BLOCK + 5):  # the oldest k periods dropped
            assert same_history(entry, later(k), today[k:], freq), (freq, k)
            changed = today[k:].copy()
            changed[3 * BLOCK - k] += 1  # a stored day that both hold
            assert not same_history(entry, later(k), changed, freq), (freq, k)
            changed = today[k:].copy()
            changed[-(-k // block) * block - k] += 1  # the first period of the first whole block
            assert not same_history(entry, later(k), changed, freq), (freq, k)
        assert not same_history(entry, later(-1), np.append(0.0, today), freq)  # starts earlier
        assert not same_history(entry, later(len(y)), today[len(y):], freq)  # nothing in common
        assert not same_history({**entry, "blocks": None}, later(1), today[1:], freq)
        if block != BLOCK:  # a store's blocks of 28 periods, from before: changed, fitted cold once
            assert not same_history({**entry, "blocks": block_fingerprints(y)}, later(1), today[1:], freq)
    short = y[:24]  # two years of months: one dropped, the rest the same
    entry = {"start": np.datetime64("2010-01-01"), "n_obs": len(short),
             "fingerprint": fingerprint(np.datetime64("2010-01-01"), short),
             "blocks": block_fingerprints(short, block_periods("M"))}
    assert same_history(entry, np.datetime64("2010-02-01"), np.append(short[1:], 5.0), "M")
    changed = np.append(short[1:], 5.0)
    changed[0] += 1  # the oldest month both hold
    assert not same_history(entry, np.datetime64("2010-02-01"), changed, "M")


def test_the_block_fingerprint_column_holds_each_series_blocks() -> None:
    """The store's `blocks` column, built from Arrow buffers (not from Python lists of strings)."""
    from nova_ray.io.model_store import BLOCK, block_fingerprint_column, block_fingerprints

    rng = np.random.default_rng(5)
    series = [rng.poisson(3.0, n).astype(float) for n in (1, BLOCK, BLOCK + 1, 5 * BLOCK - 3)]
    assert block_fingerprint_column(series).to_pylist() == [block_fingerprints(y) for y in series]
    assert block_fingerprint_column([]).to_pylist() == []


def test_train_stores_without_publishing(days, tmp_path: Path, ray_session) -> None:
    """`train` then `forecast` with the same options: the forecast reuses what train stored (train
    lacked the backtest and ARIMA options, so a forecast that set them found another version)."""
    settings = ["--horizon", "14", "--models", "arima,ets,theta,naive", "--backtest-windows", "1",
                "--backtest-step", "7", "--arima-engine", "statsmodels", "--quiet"]
    args = ["--data", str(days["day1"]), "--models-dir", str(tmp_path / "models"), *settings]
    res = CliRunner().invoke(app, ["train", *args, "--output", str(tmp_path / "train")])
    assert res.exit_code == 0, res.output
    assert "stored model choices for 6 items" in res.output
    assert f"log {tmp_path / 'train' / 'logs'}" in res.output  # its log, lock and checkpoints there
    assert not (tmp_path / "out").exists() and not list((tmp_path / "train").glob("forecasts"))
    res = CliRunner().invoke(
        app,
        [
            "forecast",
            "--data",
            str(days["day2"]),
            "--output",
            str(tmp_path / "out"),
            "--models-dir",
            str(tmp_path / "models"),
            *settings,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "6 items reused stored model choices" in res.output


def _backtests(out: Path) -> pl.DataFrame:
    ptr = json.loads((out / "metadata" / "last_updated.json").read_text())
    part = out / "backtests" / f"run_date={ptr['run_date']}"
    return pl.read_parquet(part).sort("item_id", "window", "date")


def test_lstm_weights_are_stored_and_reused_or_fine_tuned(days, tmp_path: Path) -> None:
    kw = {"models": "naive,ets,lstm", "epochs": 4}
    cold1 = run_forecast(_cfg(days["day1"], tmp_path, **kw), use_ray=False)
    assert cold1.lstm == "cold"
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    assert (store / "lstm.npz").exists()
    bt_day1 = _backtests(tmp_path / "out")

    weights = dict(np.load(store / "lstm.npz"))
    warm = run_forecast(_cfg(days["day2"], tmp_path, **kw), use_ray=False)
    assert warm.warm_items == len(ITEMS) and warm.lstm == "warm"
    assert warm.cpu_seconds < cold1.cpu_seconds / 2
    with np.load(store / "lstm.npz") as z:  # warm_epochs = 0: the stored network forecast as it is
        assert all(np.array_equal(z[k], v) for k, v in weights.items())
    tuned = tmp_path / "tuned"  # warm_epochs = 1: another model version, fine-tuned when warm
    run_forecast(_cfg(days["day1"], tuned, **kw, warm_epochs=1), use_ray=False)
    store1 = next(p for p in (tuned / "models").iterdir() if p.is_dir())
    weights1 = dict(np.load(store1 / "lstm.npz"))
    assert run_forecast(_cfg(days["day2"], tuned, **kw, warm_epochs=1), use_ray=False).lstm == "warm"
    with np.load(store1 / "lstm.npz") as z:
        assert not all(np.array_equal(z[k], v) for k, v in weights1.items() if k.startswith("w"))
    # the stored LSTM backtests are reused once, not next to fresh ones: same ensemble backtests
    cols = ["item_id", "window", "date", "forecast"]
    assert_frame_equal(_backtests(tmp_path / "out").select(cols), bt_day1.select(cols), rel_tol=1e-9)
    warm_fc = _ensemble(tmp_path / "out")
    assert set(warm_fc["item_id"]) == set(ITEMS)

    assert (store / "lstm-backtest.npz").exists()  # the network the cold training backtested
    changed = run_forecast(_cfg(days["changed"], tmp_path, **kw), use_ray=False)
    # one item's past changed: it is fitted cold, and the global network is not trained again for
    # it (it was, for all items, on most nights: a catalogue has an item due for its refit nightly);
    # its windows are scored by the stored backtest network, out of that network's sample
    assert changed.lstm == "warm" and changed.warm_items == len(ITEMS) - 1
    with np.load(store / "lstm.npz") as z:
        assert all(np.array_equal(z[k], v) for k, v in weights.items())
    bt = _backtests(tmp_path / "out")
    others = pl.col("item_id") != "ELE-0001"
    # the other items keep their stored windows of every model, the LSTM's included
    assert_frame_equal(bt.filter(others).select(cols), bt_day1.filter(others).select(cols), rel_tol=1e-9)
    # the LSTM's windows are its models' (they meet in the ensemble: its rows are one per window
    # and day, as the night before), each scored out of the backtest network's sample
    ptr = json.loads((tmp_path / "out" / "metadata" / "last_updated.json").read_text())
    metrics = pl.read_parquet(tmp_path / "out" / "metrics" / f"run_date={ptr['run_date']}").filter(~others)
    windows = {m: sorted(metrics.filter(pl.col("model") == m)["window"].to_list())
               for m in ("lstm", "ets", "naive")}
    assert windows["lstm"] == windows["ets"] == windows["naive"] == [0, 1, 2]
    assert bt.filter(~others).height == bt_day1.filter(~others).height == 3 * 14
    with np.load(store / "lstm-backtest.npz") as z:  # the last day it saw, before every window's first
        assert z["through"].astype("datetime64[D]").item() < bt.filter(~others)["date"].min()
    weights_ele = pl.read_parquet(tmp_path / "out" / "ensemble_weights" / f"run_date={ptr['run_date']}")
    lstm_weight = weights_ele.filter(~others & (pl.col("model") == "lstm"))
    assert lstm_weight["weight"].item() > 0 and lstm_weight["windows"].item() == 3
    (store / "lstm-backtest.npz").unlink()  # a store from before it: the network trains cold
    again = run_forecast(_cfg(days["day2"], tmp_path, **kw), use_ray=False)  # ELE-0001 changed back
    assert again.lstm == "cold" and again.incremental().startswith(
        f"{len(ITEMS) - 1} items reused stored model choices (the LSTM trained cold); 1 fitted cold: history")
    assert (store / "lstm-backtest.npz").exists()
    full = run_forecast(_cfg(days["changed"], tmp_path, **kw), use_ray=False, full_refit=True)
    assert full.lstm == "cold"  # --full-refit: the network too


def test_a_stored_lstm_scores_cold_items_alike_on_ray(days, tmp_path: Path, ray_session) -> None:
    """The stored network with items to score, on Ray (a task: numpy, no actor), gives the
    tables of the local path."""
    import shutil

    kw = {"models": "naive,lstm", "epochs": 2, "backtest_windows": 2}
    run_forecast(_cfg(days["day1"], tmp_path / "cold", **kw), use_ray=False)
    shutil.copytree(tmp_path / "cold", tmp_path / "ray")
    local = run_forecast(_cfg(days["changed"], tmp_path / "cold", **kw), use_ray=False)
    on_ray = run_forecast(_cfg(days["changed"], tmp_path / "ray", **kw), use_ray=True)
    assert local.lstm == on_ray.lstm == "warm" and on_ray.backend.startswith("ray")
    for kind in ("forecasts", "metrics", "ensemble_weights"):
        a, b = (pl.read_parquet(tmp_path / d / "out" / kind).drop("run_date", strict=False)
                for d in ("cold", "ray"))
        assert_frame_equal(a.sort(pl.all()), b.sort(pl.all()), rel_tol=1e-9)
    assert pl.read_parquet(tmp_path / "ray" / "out" / "metrics").filter(
        (pl.col("item_id") == "ELE-0001") & (pl.col("model") == "lstm")).height == 2


def test_model_store_streams_backtests_and_replaces_refitted_items(tmp_path: Path) -> None:
    """The store's backtests (its bulk) are streamed into the new file: the entries saved replace
    theirs, the others stay; costs and warm lookup read the item entries alone."""
    from datetime import date

    from nova_ray.io.model_store import ModelStore, fingerprint

    store = ModelStore(tmp_path, "0.1.0+abc")
    start = np.datetime64("2025-01-01")
    ys = {"A": np.arange(10.0), "B": np.ones(12)}

    def entries(ids: list[str], cpu: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "item_id": ids,
                "params": [json.dumps({"ets": {"form": i}}) for i in ids],
                "cpu_seconds": [cpu] * len(ids),
                "demand_class": ["smooth"] * len(ids),
                "start": [start.astype(object)] * len(ids),
                "n_obs": [len(ys[i]) for i in ids],
                "fingerprint": [fingerprint(start, ys[i]) for i in ids],
                "fitted_on": [date(2026, 11, 1)] * len(ids),
            }
        )

    def rows(ids: list[str], value: float) -> pl.LazyFrame:
        n = len(ids)
        return pl.DataFrame({"item_id": ids, "model": ["ets"] * n, "forecast": [value] * n}).lazy()

    assert store.costs() is None and store.lookup(["A"], [start], [ys["A"]], date(2026, 11, 2), 7)[0] == {}
    store.save(entries(["A", "B"], 1.0), rows(["A", "A", "B"], 1.0), {"v": 1})
    store.save(entries(["B"], 2.0), rows(["B"], 2.0), {"v": 2})  # B refitted: its old rows go
    bt = lambda: pl.read_parquet(store.dir / "backtests.parquet").sort("item_id", "forecast")  # noqa: E731
    assert bt().select("item_id", "forecast").rows() == [("A", 1.0), ("A", 1.0), ("B", 2.0)]
    store.save(entries(["A"], 3.0), None, {"v": 3})  # A refitted with no backtest: its old rows go too
    assert bt().select("item_id", "forecast").rows() == [("B", 2.0)]
    store.save(entries(["A"], 3.0), rows(["A", "A"], 3.0), {"v": 4})
    assert bt().select("item_id", "forecast").rows() == [("A", 3.0), ("A", 3.0), ("B", 2.0)]
    assert store.costs() == {"A": 3.0, "B": 2.0}
    grown = {"A": np.append(ys["A"], 5.0), "B": ys["B"] + 1}  # A grew by a day, B's history changed
    warm = store.lookup(["A", "B"], [start, start], [grown["A"], grown["B"]], date(2026, 11, 2), 7)[0]
    assert warm == {"A": {"ets": {"form": "A"}, "fitted_on": "2026-11-01"}}
    # why the others are cold: changed history, a new item, an entry past the age limit
    ids = ["A", "B", "C"]
    warm2, cold = store.lookup(ids, [start] * 3, [grown["A"], grown["B"], ys["A"]], date(2026, 11, 2), 7)
    assert warm2 == warm and cold == {"B": COLD_CHANGED, "C": COLD_NEW}
    _, cold = store.lookup(["A"], [start], [grown["A"]], date(2026, 11, 30), 7)
    assert cold == {"A": COLD_OLD.format(days=7)}
    _, cold = store.lookup(["A"], [start], [grown["A"][:-3]], date(2026, 11, 2), 7)  # shorter
    assert cold == {"A": COLD_CHANGED}
    # another demand class today picks other models, which have no stored backtests: cold
    _, cold = store.lookup(["A"], [start], [grown["A"]], date(2026, 11, 2), 7, classes=["lumpy"])
    assert cold == {"A": COLD_CLASS}
    assert store.lookup(["A"], [start], [grown["A"]], date(2026, 11, 2), 7, classes=["smooth"])[0] == warm
    # a backfill (a run date before the fit) does not reuse a fit that saw days after it
    _, cold = store.lookup(["A"], [start], [ys["A"]], date(2026, 10, 30), 7)
    assert cold == {"A": COLD_LATER}
    assert store.backtests(list(warm)).collect()["item_id"].to_list() == ["A", "A"]
    assert store.backtests([]) is None
    # an entry past the age limit (an item that left the export) goes with its rows
    store.save(entries(["B"], 4.0), rows(["B"], 4.0), {"v": 5}, drop_before=date(2026, 11, 2))
    assert store.items()["item_id"].to_list() == ["B"]
    assert bt().select("item_id", "forecast").rows() == [("B", 4.0)]
    assert not list(store.dir.glob(".*tmp*"))  # no temp file left behind


def test_ensemble_chunks_of_batches_give_the_same_tables(
    days, small_demo: Path, tmp_path: Path, monkeypatch
) -> None:
    """The ensemble stage reads whole batch checkpoints a group at a time and filters only the
    shared ones (the LSTM's, the warm items' stored backtests), and hands the ensemble's tables
    to the recommendations through scratch files: its tables and the recommendations do not
    depend on the chunk size, on a warm run with the LSTM (both shared files present)."""
    import nova_ray.pipeline as pipeline
    from nova_ray.io.results import read_table

    kw = {"models": "naive,ets,lstm", "epochs": 2}
    run_forecast(_cfg(days["day1"], tmp_path, **kw), use_ray=False)
    outs = {}
    for size in (2, 500):  # 1-item batches (in-process): three chunks, then one
        monkeypatch.setattr(pipeline, "ENSEMBLE_CHUNK", size)
        cfg = _cfg(days["day2"], tmp_path, **kw)
        cfg.paths.output = str(tmp_path / f"out{size}")
        cfg.paths.stock = str(small_demo / "stock.parquet")
        s = run_forecast(cfg, use_ray=False)
        assert s.warm_items == len(ITEMS) and s.lstm == "warm" and s.recommendations["rows"] > 0
        outs[size] = cfg.paths.output
    for kind, keys in {
        "forecasts": ["item_id", "model", "date"],
        "backtests": ["item_id", "model", "window", "date"],
        "metrics": ["item_id", "model", "window"],
        "ensemble_weights": ["item_id", "model"],
        "items": ["item_id"],
        "recommendations": ["item_id", "site"],
    }.items():
        a, b = (
            pl.from_arrow(read_table(outs[n], kind)).drop("cpu_seconds", strict=False).sort(keys)
            for n in (2, 500)
        )
        assert a.height > 0 and set(a["item_id"]) == set(ITEMS), kind
        assert_frame_equal(a, b, check_column_order=False)
    assert set(pl.from_arrow(read_table(outs[2], "forecasts"))["model"]) >= {"lstm", "ensemble"}


def test_a_warm_item_whose_models_take_no_regressors_gets_no_regressor_note(
    days, tmp_path: Path, small_demo: Path
) -> None:
    """With external factors on and models that take no regressors, every warm item got '0 of 5
    regressors: too few observations for more' in its notes and a warning in the log (60 a night)."""
    import shutil

    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").symlink_to(small_demo / "raw")  # the demo's factor files: regressors attached
    for day in ("day1", "day2"):
        shutil.copy(days[day], data / f"{day}.parquet")
    run_forecast(_cfg(data / "day1.parquet", tmp_path, models="naive,theta"), use_ray=False)
    warm = run_forecast(_cfg(data / "day2.parquet", tmp_path, models="naive,theta"), use_ray=False)
    assert warm.exog.get("enabled")
    assert warm.warm_items == len(ITEMS)
    notes = pl.read_parquet(next((tmp_path / "out" / "items").iterdir()))["notes"].to_list()
    assert not [n for n in notes if "regressors" in (n or "")], notes
    # their fits took no regressors: a factors' history that moved leaves them warm (the whole
    # catalogue was fitted cold for it, also with models that read no factor)
    from nova_ray.etl import build_features
    from nova_ray.factor_history import NO_REGRESSORS

    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    assert set(pl.read_parquet(store / "items.parquet")["factors"]) == {NO_REGRESSORS}
    table = pd.read_parquet(build_features(small_demo / "raw", tmp_path / "features").path)
    table.loc[table.index[:120], "usd_brl"] *= 1.05  # four months of exchange rates 5% higher
    table.to_parquet(tmp_path / "moved.parquet")
    moved = run_forecast(_cfg(data / "day2.parquet", tmp_path, models="naive,theta",
                              features=str(tmp_path / "moved.parquet")), use_ray=False)
    assert moved.warm_items == len(ITEMS) and not moved.cold_items


def test_an_unreadable_store_is_set_aside_and_refitted(days, tmp_path: Path) -> None:
    """A truncated items.parquet (a full disk, a kill outside nova-ray's atomic writes) stopped every
    later night with a traceback: it is set aside with a warning naming it, the items are fitted
    cold and the store written again; the next night is warm."""
    cfg = _cfg(days["day1"], tmp_path, models="ets,naive")
    run_forecast(cfg, use_ray=False)
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    items = store / "items.parquet"
    items.write_bytes(items.read_bytes()[:200])
    again = run_forecast(_cfg(days["day2"], tmp_path, models="ets,naive"), use_ray=False)
    assert [w for w in again.warnings if "unreadable" in w] == [
        f"{items}: unreadable (Parquet magic bytes not found in footer. Either the file is corrupted or "
        "this is not a parquet file.); set aside as items.parquet.unreadable, its models are fitted cold and "
        "stored again"
    ]
    assert again.warm_items == 0 and (store / "items.parquet.unreadable").exists()
    assert (store / "backtests.parquet.unreadable").exists()  # stored with the items: set aside with them
    third = run_forecast(_cfg(days["day2"], tmp_path, models="ets,naive"), use_ray=False)
    assert third.warm_items == len(ITEMS) and not [w for w in third.warnings if "unreadable" in w]


def test_a_night_without_new_data_is_said(days, tmp_path: Path) -> None:
    """The latest run, of an earlier date, read the same data: a warning (nothing said it for a week,
    until the history was stale); new rows, or the same date again, say nothing."""
    from datetime import date

    cfg = _cfg(days["day1"], tmp_path, models="naive")
    run_forecast(cfg, use_ray=False, run_date=date(2026, 11, 1))
    same = run_forecast(cfg, use_ray=False, run_date=date(2026, 11, 2))
    said = [w for w in same.warnings if "the same demand data as run" in w]
    assert len(said) == 1 and "of 2026-11-01 (no new rows since): is the demand export up to date?" in said[0]
    again = run_forecast(cfg, use_ray=False, run_date=date(2026, 11, 2))  # a rerun of the date
    assert not [w for w in again.warnings if "the same demand data" in w]
    grown = run_forecast(_cfg(days["day2"], tmp_path, models="naive"), use_ray=False,
                         run_date=date(2026, 11, 3))
    assert not [w for w in grown.warnings if "the same demand data" in w or "no new day" in w]
    # a rolling export that dropped its first day and added none: another file, the same end
    rolled = tmp_path / "rolled.parquet"
    d = pd.read_parquet(days["day2"])
    d[d["date"] > d["date"].min()].to_parquet(rolled)
    moved = run_forecast(_cfg(rolled, tmp_path, models="naive"), use_ray=False, run_date=date(2026, 11, 4))
    end = pd.Timestamp(d["date"].max()).date()
    said = [w for w in moved.warnings if "no new day since" in w]
    assert len(said) == 1
    assert f"the history ends {end}; run {grown.run_id} of 2026-11-03 had it up to {end}" in said[0]


def test_what_a_reader_needs_is_in_the_files_pointer_and_api(days, tmp_path: Path) -> None:
    """A weekly run's rows are week totals dated their Monday: the frequency, horizon, the
    demand's last day and the schema version are in every Parquet file, the record, the pointer
    and what the API serves (they were in the run record only, and `history_end` was the last
    week's Monday)."""
    import pyarrow.parquet as pq

    from nova_ray.io.location import open_location
    from nova_ray.serve.store import load_run

    out = tmp_path / "out"
    cfg = _cfg(days["day2"], tmp_path, freq="W", horizon=4, models="naive,ets")
    summary = run_forecast(cfg, use_ray=False)
    last_day = str(pd.Timestamp(pd.read_parquet(days["day2"])["date"].max()).date())
    facts = {"freq": "W", "horizon": "4", "history_end": last_day}
    pointer = json.loads((out / "metadata" / "last_updated.json").read_text())
    record = json.loads((out / "metadata" / "runs" / f"{summary.run_id}.json").read_text())
    for where in (pointer, record):
        assert {k: where[k] for k in facts} == facts and where["schema_version"]
    meta = pq.read_schema(next((out / "forecasts").rglob("*.parquet"))).metadata
    assert {k: meta[k.encode()].decode() for k in facts} == facts
    run, _ = load_run(open_location(str(out)))
    assert {k: str(run.summary()[k]) for k in facts} == facts  # /health
    from nova_ray.io.publish import sync_run

    (tmp_path / "shared").mkdir()
    sync_run(out, tmp_path / "shared")
    synced = json.loads((tmp_path / "shared" / "last_updated.json").read_text())
    manifest = json.loads((tmp_path / "shared" / synced["manifest"]).read_text())
    for where in (synced, manifest):
        assert {k: str(where[k]) for k in facts} == facts and where["schema_version"]
    run, _ = load_run(open_location(str(tmp_path / "shared")))
    assert {k: str(run.summary()[k]) for k in facts} == facts


def test_periodic_refits_are_spread_over_the_nights() -> None:
    """Every item of a catalogue fitted cold on one night fell due on the same night 8 days later
    (a full cold run every 8th night): each item's limit lies between half the age and all of it."""
    limits = [age_limit(f"ITEM-{k:04d}", 7) for k in range(2000)]
    assert min(limits) == 4 and max(limits) == 7
    assert all(300 < limits.count(d) < 700 for d in range(4, 8))
    assert age_limit("X", 0) == 0 and age_limit("X", 1) == 1


def test_a_backfill_neither_reuses_nor_replaces_later_fits(days, tmp_path: Path) -> None:
    """`run --date` for an earlier day refitted cold (as "history changed") and replaced the
    store's entries with fits on the shorter history, which the next current night then reused."""
    from datetime import date

    run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 20))
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    before = pl.read_parquet(store / "items.parquet")
    back = run_forecast(_cfg(days["day1"], tmp_path), use_ray=False, run_date=date(2026, 11, 18))
    assert back.cold_items == {COLD_LATER: {"count": len(ITEMS), "items": sorted(ITEMS)}}
    assert_frame_equal(pl.read_parquet(store / "items.parquet"), before)
    warm = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 21))
    assert warm.warm_items == len(ITEMS)


def test_prophet_is_stored_and_warm_started(days, tmp_path: Path) -> None:
    """The stored choices include Prophet's fitted parameters; a warm night starts its fit there
    and forecasts as a cold refit does."""
    cfg = _cfg(days["day1"], tmp_path, models="prophet,naive")
    run_forecast(cfg, use_ray=False)
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    entries = pl.read_parquet(store / "items.parquet").to_dicts()
    stored = {r["item_id"]: json.loads(r["params"]) for r in entries}
    with_prophet = [i for i, p in stored.items() if "prophet" in p]
    assert with_prophet and all(len(stored[i]["prophet"]["state"]["delta"]) == 25 for i in with_prophet)
    warm = run_forecast(_cfg(days["day2"], tmp_path, models="prophet,naive"), use_ray=False)
    assert warm.warm_items == len(ITEMS)
    got = _model_forecasts(tmp_path / "out", "prophet")
    run_forecast(_cfg(days["day2"], tmp_path, models="prophet,naive"), use_ray=False, full_refit=True)
    both = got.join(_model_forecasts(tmp_path / "out", "prophet"), on=["item_id", "date"], suffix="_cold")
    assert both.height == got.height > 0
    # the stated tolerance of warm runs: each item's horizon total within 10% of the cold refit's
    tot = both.group_by("item_id").agg(pl.col("forecast").sum(), pl.col("forecast_cold").sum())
    diff = (tot["forecast"] - tot["forecast_cold"]).abs()
    assert (diff <= (0.10 * tot["forecast_cold"]).clip(lower_bound=1.0)).all(), tot


def test_a_stored_choice_that_fails_is_refitted_cold_the_next_night(days, tmp_path: Path) -> None:
    """A stored state that cannot be re-applied (here one another library version could not read)
    failed that model every night until the entry aged out: now the next run refits it cold."""
    from datetime import date

    run_forecast(_cfg(days["day1"], tmp_path), use_ray=False, run_date=date(2026, 11, 20))
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    entries = pl.read_parquet(store / "items.parquet")
    victim = next(r["item_id"] for r in entries.to_dicts() if "ets" in json.loads(r["params"]))

    def corrupt(row: dict) -> str:
        params = json.loads(row["params"])
        if row["item_id"] == victim:
            params["ets"]["state"]["par"] = ["x"]
        return json.dumps(params)

    entries.with_columns(params=pl.Series([corrupt(r) for r in entries.to_dicts()])).write_parquet(
        store / "items.parquet"
    )
    warm = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 21))
    assert warm.warm_items == len(ITEMS)
    out_items = pl.read_parquet(tmp_path / "out" / "items" / "run_date=2026-11-21")
    assert out_items.filter(pl.col("item_id") == victim)["failed_models"].item() == "ets"
    again = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 22))
    assert again.cold_items == {COLD_FAILED: {"count": 1, "items": [victim]}}
    out_items = pl.read_parquet(tmp_path / "out" / "items" / "run_date=2026-11-22")
    assert out_items.filter(pl.col("item_id") == victim)["failed_models"].item() == ""


def test_an_item_whose_warm_fit_fails_as_a_whole_is_refitted_cold_the_next_night(
    days, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An item whose fit failed outside its models (seasonal naive only, flagged) had its naive-only
    fit stored, or its stored choice kept: the next nights reused it, at naive alone until its
    periodic refit. Its entry is now marked failed, and the next run fits it cold. In the log its
    line is a warning; the warm items' routine notes are not (one line per item a night)."""
    import logging
    from datetime import date

    from nova_ray import engine

    run_forecast(_cfg(days["day1"], tmp_path), use_ray=False, run_date=date(2026, 11, 20))
    cycles, hit = engine._annual_cycles, []

    def fails_once_warm(names, y, dates, future, origins, spec, *rest):
        if spec.backtest_windows == 0 and not hit:  # the first warm item
            hit.append(True)
            raise RuntimeError("injected")
        return cycles(names, y, dates, future, origins, spec, *rest)

    monkeypatch.setattr(engine, "_annual_cycles", fails_once_warm)
    with caplog.at_level(logging.INFO, logger="nova_ray"):
        warm = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 21))
    monkeypatch.setattr(engine, "_annual_cycles", cycles)
    (victim,) = warm.fallbacks
    notes = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records if "warm: model choices" in
             r.getMessage() or "its fit failed" in r.getMessage()}
    assert notes == {item: logging.WARNING if item == victim else logging.INFO for item in ITEMS}
    assert warm.warm_items == len(ITEMS) and hit
    out_items = pl.read_parquet(tmp_path / "out" / "items" / "run_date=2026-11-21")
    row = out_items.filter(pl.col("item_id") == victim).row(0, named=True)
    assert row["models"] == "naive" and "its fit failed (RuntimeError: injected)" in row["notes"]
    again = run_forecast(_cfg(days["day2"], tmp_path), use_ray=False, run_date=date(2026, 11, 22))
    assert again.cold_items == {COLD_FAILED: {"count": 1, "items": [victim]}} and not again.fallbacks
    assert again.warm_items == len(ITEMS) - 1


def test_stored_fits_keep_the_meaning_of_their_regressors(days, tmp_path: Path, small_demo: Path) -> None:
    """A warm ARIMA re-filters with its stored coefficients: they hold only for regressors on the
    scale and with the history of their fit. Today's regressors are put on the store's scale; a
    feature table whose history moved (another build, a replaced source) makes the stored fits
    cold, with the reason; a revised day does not."""
    from nova_ray.etl import build_features
    from nova_ray.factor_history import COLD_FACTORS_UNKNOWN

    built = build_features(small_demo / "raw", tmp_path / "features").path
    table = pd.read_parquet(built)
    paths = {}
    changes = (("a", None), ("revised", (slice(200, 201), 1.002)), ("moved", (slice(0, 120), 1.05)))
    for name, change in changes:
        t = table.copy()
        if change is not None:
            t.loc[t.index[change[0]], "usd_brl"] *= change[1]
        paths[name] = tmp_path / f"features-{name}.parquet"
        t.to_parquet(paths[name])

    def run(day: str, features: str):
        return run_forecast(_cfg(days[day], tmp_path, models="arima,naive", features=str(paths[features])),
                            use_ray=False)

    cold = run("day1", "a")
    assert cold.exog.get("enabled") and "usd_brl" in cold.exog["features"]
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    assert (store / "factors.npz").exists()
    warm = run("day2", "a")
    assert warm.warm_items == len(ITEMS)
    # the models saw the regressors on the stored scale (the first fit's history), as recorded
    assert warm.exog["mean"] == cold.exog["mean"] and warm.exog["scale"] == "model store"
    revised = run("day2", "revised")  # one exchange rate revised by 0.2%
    assert revised.warm_items == len(ITEMS)
    moved = run("day2", "moved")  # four months of exchange rates 5% higher
    assert moved.warm_items == 0
    ((why, listed),) = moved.cold_items.items()
    assert why.startswith("external factors' history changed since the fit (usd_brl moved ")
    assert listed["count"] == len(ITEMS)
    assert run("day2", "moved").warm_items == len(ITEMS)  # stored again with that history
    (store / "factors.npz").unlink()  # a store from before the records: its fits' factors unknown
    unknown = run("day2", "moved")
    assert unknown.cold_items == {COLD_FACTORS_UNKNOWN: {"count": len(ITEMS), "items": sorted(ITEMS)}}
    # --full-refit: today's own scale, whatever the store's (two cold runs give the same numbers),
    # which the store then takes
    cfg = _cfg(days["day2"], tmp_path, models="arima,naive", features=str(paths["a"]))
    full = run_forecast(cfg, use_ray=False, full_refit=True)
    assert "scale" not in full.exog and full.exog["mean"] != cold.exog["mean"]
    after = run("day2", "a")
    assert after.warm_items == len(ITEMS) and after.exog["mean"] == full.exog["mean"]

    # a run over some items records the history its fits saw under its own key: the others keep
    # theirs, and are fitted cold when that moved (they were warm: the day's rows replaced)
    def some(features: str, items: list[str], full_refit: bool = False):
        cfg = _cfg(days["day2"], tmp_path, models="arima,naive", features=str(paths[features]))
        return run_forecast(cfg, items=items, use_ray=False, full_refit=full_refit)

    def moved_items(summary) -> list[str]:
        ((reason, listed),) = summary.cold_items.items()
        assert reason.startswith("external factors' history changed since the fit (usd_brl moved ")
        return listed["items"]

    assert moved_items(some("moved", ["CAB-0001"])) == ["CAB-0001"]
    whole = run("day2", "moved")
    assert whole.warm_items == 1 and moved_items(whole) == sorted(set(ITEMS) - {"CAB-0001"})
    # --full-refit over some items keeps the store's scale: the others stay warm on it
    subset = some("moved", ["CAB-0002"], full_refit=True)
    assert subset.exog["scale"] == "model store" and subset.exog["mean"] == whole.exog["mean"]
    assert run("day2", "moved").warm_items == len(ITEMS)


def test_a_store_without_its_backtests_is_fitted_cold(days, tmp_path: Path) -> None:
    """A backtests.parquet deleted, not copied with the store, or set aside as unreadable: every
    item was warm, published without backtests, metrics or learned weights (equal ones), night
    after night with no word, since warm runs store nothing."""
    from nova_ray.io.model_store import COLD_NO_BACKTESTS

    cfg = _cfg(days["day1"], tmp_path, models="ets,naive")
    run_forecast(cfg, use_ray=False)
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    for damage in ("delete", "truncate"):
        bt = store / "backtests.parquet"
        if damage == "delete":
            bt.unlink()
        else:
            bt.write_bytes(bt.read_bytes()[:50])
        again = run_forecast(_cfg(days["day2"], tmp_path, models="ets,naive"), use_ray=False)
        assert again.cold_items == {COLD_NO_BACKTESTS: {"count": len(ITEMS), "items": sorted(ITEMS)}}, damage
        weights = pl.read_parquet(tmp_path / "out" / "ensemble_weights" / f"run_date={again.run_date}")
        assert weights["windows"].min() > 0 and (tmp_path / "out" / "metrics").exists()
        assert bt.exists()  # stored again: the next night is warm
        third = run_forecast(_cfg(days["day2"], tmp_path, models="ets,naive"), use_ray=False)
        assert third.warm_items == len(ITEMS)


def test_a_store_from_before_the_factor_records_and_a_backfill(
    days, tmp_path: Path, small_demo: Path, killed_at_publish
) -> None:
    """A store written before the records (no `factors` column, factors.npz by fit day) crashed a
    whole backfill that trains the LSTM (a traceback on every retry) and its old record read as
    damage; a backfill replaced the store's LSTM and record; a resume after the record was lost
    stored the first attempt's fits as fits on a new scale."""
    import shutil
    from datetime import date

    from nova_ray.factor_history import COLD_FACTORS_UNKNOWN

    data = tmp_path / "data"
    data.mkdir()
    (data / "raw").symlink_to(small_demo / "raw")  # the demo's factor files: regressors attached
    for day in ("day1", "day2"):
        shutil.copy(days[day], data / f"{day}.parquet")

    def cfg(day: str):
        return _cfg(data / f"{day}.parquet", tmp_path, models="naive,arima,lstm", epochs=1)

    run_forecast(cfg("day1"), use_ray=False, run_date=date(2026, 11, 20))
    store = next(p for p in (tmp_path / "models").iterdir() if p.is_dir())
    pl.read_parquet(store / "items.parquet").drop("factors").write_parquet(store / "items.parquet")
    record = np.load(store / "factors.npz")
    np.savez(store / "factors.npz", names=record["names"], freq=record["freq"], mean=record["mean"],
             std=record["std"], days=np.array(["2026-11-20"], "M8[D]"), starts=record["starts"],
             rows0=record["rows0"])  # the layout by fit day
    before = {name: (store / name).read_bytes() for name in ("lstm.npz", "factors.npz", "items.parquet")}
    back = run_forecast(cfg("day1"), use_ray=False, run_date=date(2026, 11, 18))
    assert back.lstm == "cold" and not [w for w in back.warnings if "unreadable" in w]
    assert {name: (store / name).read_bytes() for name in before} == before  # left as it was
    # the next night: the old store's fits are unknown once (not "damaged")
    killed_at_publish(cfg("day2"), run_date=date(2026, 11, 21))
    # ... killed as it published, and the store's record lost before the resume: the fits were
    # made on the old record's scale, the resume's is its own: fitted again, not resumed
    (store / "factors.npz").unlink()
    again = run_forecast(cfg("day2"), use_ray=False, run_date=date(2026, 11, 21), resume=True)
    assert again.resumed_items == 0 and [w for w in again.warnings if w.startswith("--resume: no interrupt")]
    assert again.cold_items == {COLD_FACTORS_UNKNOWN: {"count": len(ITEMS), "items": sorted(ITEMS)}}
    assert run_forecast(cfg("day2"), use_ray=False, run_date=date(2026, 11, 22)).warm_items == len(ITEMS)
