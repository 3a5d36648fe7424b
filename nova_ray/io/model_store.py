"""The model store under MODELS_DIR: per-item fitted choices and backtests for incremental runs.

Layout: `<models_dir>/<model_version>/` with `items.parquet` (item_id, start, n_obs, fingerprint,
params, cpu_seconds, demand_class, fitted_on), `backtests.parquet` (the model backtest rows of the
last cold fit), `lstm.npz` (the global LSTM's weights, shapes, per-step spread and the date of
its last cold training) and `model_versions.json`. The model version includes the config hash, so a config
change starts a fresh store; an item whose history changed (not just grew) misses its entry.
"""

from __future__ import annotations

import hashlib
import os
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ..models.lstm import LstmState
from .results import write_json_atomic

ITEMS_FILE = "items.parquet"
BACKTESTS_FILE = "backtests.parquet"
LSTM_FILE = "lstm.npz"
LSTM_FIELDS = ("lookback", "horizon", "season_length", "units", "n_windows", "n_exog")


def fingerprint(start: np.datetime64, values: np.ndarray) -> str:
    """Hash of a series' start and values."""
    h = hashlib.sha256(str(np.datetime64(start, "D")).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:24]


class ModelStore:
    """Cached per-item model choices for one model version (nova-ray version + config hash)."""

    def __init__(self, models_dir: str | Path, model_version: str):
        self.dir = Path(models_dir) / model_version.replace("+", "_")
        self.model_version = model_version

    def load(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """(items, backtests) as stored, empty frames when there is no store yet."""
        items_path, bt_path = self.dir / ITEMS_FILE, self.dir / BACKTESTS_FILE
        if not items_path.exists():
            return pl.DataFrame(), pl.DataFrame()
        items = pl.read_parquet(items_path)
        return items, pl.read_parquet(bt_path) if bt_path.exists() else pl.DataFrame()

    def warm_items(
        self, ids: list[str], starts: np.ndarray, values: list[np.ndarray], today: date, max_age_days: int
    ) -> tuple[dict[str, dict], pl.DataFrame]:
        """Items whose stored history is a prefix of today's, fitted at most `max_age_days` ago:
        {item_id: params} and their stored backtest rows."""
        items, bt = self.load()
        if items.height == 0:
            return {}, pl.DataFrame()
        table = {r["item_id"]: r for r in items.iter_rows(named=True)}
        warm: dict[str, dict] = {}
        import json

        for item, start, y in zip(ids, starts, values, strict=True):
            entry = table.get(item)
            if entry is None or (today - entry["fitted_on"]).days > max_age_days:
                continue
            n = int(entry["n_obs"])
            if np.datetime64(entry["start"], "D") != np.datetime64(start, "D") or len(y) < n:
                continue
            if fingerprint(start, y[:n]) == entry["fingerprint"]:
                warm[item] = json.loads(entry["params"] or "{}")
        rows = bt.filter(pl.col("item_id").is_in(list(warm))) if bt.height and warm else pl.DataFrame()
        return warm, rows

    def save(self, items: pl.DataFrame, backtests: pl.DataFrame, versions: dict[str, Any]) -> None:
        """Replace the entries of `items` (and their backtests), keep the others; atomic per file."""
        old_items, old_bt = self.load()
        ids = items["item_id"].to_list()
        if old_items.height:
            keep = old_items.filter(~pl.col("item_id").is_in(ids))
            items = pl.concat([keep, items], how="vertical_relaxed")
        refit = backtests["item_id"].unique().to_list() if backtests.height else []
        if old_bt.height:
            keep = old_bt.filter(~pl.col("item_id").is_in(refit))
            backtests = pl.concat([keep, backtests], how="vertical_relaxed") if backtests.height else keep
        self.dir.mkdir(parents=True, exist_ok=True)
        for name, frame in ((ITEMS_FILE, items), (BACKTESTS_FILE, backtests)):
            tmp = self.dir / f".{name}.tmp-{os.getpid()}"
            frame.write_parquet(tmp)
            os.replace(tmp, self.dir / name)
        write_json_atomic(self.dir / "model_versions.json", versions)

    def save_lstm(self, state: LstmState, cold_fitted_on: date) -> None:
        """Store the LSTM (atomically); `cold_fitted_on` is the date of its last cold training."""
        arrays = {f"w{i}": w for i, w in enumerate(state.weights)}
        meta = np.array([getattr(state, f) for f in LSTM_FIELDS], dtype=np.int64)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{LSTM_FILE}.tmp-{os.getpid()}.npz"
        np.savez(
            tmp,
            meta=meta,
            step_sigma=np.asarray(state.step_sigma, dtype=np.float64),
            final_loss=np.float64(state.final_loss),
            fitted_on=np.datetime64(cold_fitted_on, "D"),
            **arrays,
        )
        os.replace(tmp, self.dir / LSTM_FILE)

    def load_lstm(self, today: date, max_age_days: int) -> tuple[LstmState, date] | None:
        """(state, date of its cold training) when stored and not older than `max_age_days`."""
        path = self.dir / LSTM_FILE
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            fitted_on = z["fitted_on"].astype("datetime64[D]").item()
            if (today - fitted_on).days > max_age_days:
                return None
            n = sum(1 for k in z.files if k.startswith("w"))
            state = LstmState(**{f: int(v) for f, v in zip(LSTM_FIELDS, z["meta"], strict=True)})
            state.weights = [z[f"w{i}"] for i in range(n)]
            state.step_sigma = z["step_sigma"]
            state.final_loss = float(z["final_loss"])
        return state, fitted_on
