"""The model store under MODELS_DIR: per-item fitted choices and backtests for incremental runs.

Layout: `<models_dir>/<model_version>/` with `items.parquet` (item_id, start, n_obs, fingerprint,
blocks, params, cpu_seconds, demand_class, fitted_on, factors), `backtests.parquet` (the model
backtest rows of the last cold fit), `lstm.npz` (the global LSTM's weights, shapes, per-step
spread and the date of its last cold training), `factors.npz` (the regressors' scale and the
unscaled histories the fits saw, by the key each entry records: `nova_ray.factor_history`) and
`model_versions.json`. The model version includes the config hash, so a config change starts a
fresh store; an item whose history changed (not just grew, or lost its oldest periods to a
rolling export window), or whose regressors' history moved, misses its entry. A run holds
`<models_dir>/.nova-ray.lock` (`io.lock.job_lock`) while it reads and updates the store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import zlib
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from ..factor_history import FactorRecord
from ..models.lstm import LstmState
from ..series import period_index
from .errors import first_line
from .results import fsync_file, write_json_atomic

ITEMS_FILE = "items.parquet"
BACKTESTS_FILE = "backtests.parquet"
LSTM_FILE = "lstm.npz"
LSTM_BACKTEST_FILE = "lstm-backtest.npz"  # the network the LSTM's last cold training backtested
FACTORS_FILE = "factors.npz"
LSTM_FIELDS = ("lookback", "horizon", "season_length", "units", "n_windows", "n_exog", "calendar")
# why an item is fitted cold (searched and backtested again) instead of from its stored choices
COLD_NO_STORE = "no stored models (first run, or another nova-ray version or configuration)"
COLD_NEW = "new item"
COLD_OLD = "stored fit due for its periodic refit (at most {days} days old)"
COLD_CHANGED = "history changed (not just grown)"
COLD_CLASS = "demand class changed"
COLD_LATER = "stored fit made after the run date (a backfill, or a store that a later date's run wrote)"
COLD_FORCED = "--full-refit"
COLD_FAILED = "a stored model choice failed to forecast (last run)"
COLD_NO_BACKTESTS = "the store's backtests are missing (its metrics and ensemble weights)"
COLD_LSTM_NOW = "long enough for the LSTM now (its stored fit has no LSTM backtests)"
STALE_STORE_DAYS = 30  # a sibling store (another version) unwritten this long is removed, see prune_stale
VERSIONS_FILE = "model_versions.json"
PRUNING = ".pruning"  # the suffix of a store folder being removed (`.<name>.pruning`)
STORE_FILES = (ITEMS_FILE, BACKTESTS_FILE, LSTM_FILE, FACTORS_FILE, VERSIONS_FILE)
FAILED_ON = date(1970, 1, 1)  # `fitted_on` of an entry whose stored choice failed: cold next run
LOG = logging.getLogger("nova_ray")
# Periods per block fingerprint, what a history that lost its oldest periods (a rolling window) is
# checked by: about four weeks at D and W (a block that lost its first periods goes unchecked: at
# most 27 days of a multi-year history), and one period at M, Q and Y, whose few periods a block
# of 28 left unchecked for years (a correction in a 3-year monthly history's first 27 months was
# reused), or, with 28 periods or fewer, made every item cold whenever the start moved.
BLOCK = 28
BLOCKS = {"D": BLOCK, "W": 4}


def block_periods(freq: str) -> int:
    """Periods per block fingerprint at `freq` (`BLOCKS`; one for M, Q and Y)."""
    return BLOCKS.get(freq, 1)


def fingerprint(start: np.datetime64, values: np.ndarray) -> str:
    """Hash of a series' start and values."""
    h = hashlib.sha256(str(np.datetime64(start, "D")).encode())
    h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()[:24]


def block_fingerprints(values: np.ndarray, block: int = BLOCK) -> list[str]:
    """Hashes of a series' values in blocks of `block` periods from its start (the last one partial):
    a later history that dropped the oldest periods (a rolling export window) is checked against
    the blocks it still holds whole."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    return [_block_hash(v[i : i + block]) for i in range(0, len(v), block)]


def _block_hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()[:16]


def block_fingerprint_column(series_values: Iterable[np.ndarray], block: int = BLOCK) -> pa.LargeListArray:
    """`block_fingerprints` of each series, as one Arrow list<string> column built from buffers.
    Polars building the column from Python lists of strings (40 per 3-year daily item) left ~15
    MiB of fragmented allocator memory in the driver at 2000 items (~3 with this)."""
    data, counts = bytearray(), [0]
    for values in series_values:
        blocks = block_fingerprints(values, block)
        data += "".join(blocks).encode("ascii")  # 16 hex characters each
        counts.append(counts[-1] + len(blocks))
    n = counts[-1]  # 64-bit offsets: 32-bit ones wrap past 2**31 bytes (~3 M items of 3 years)
    flat = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(np.arange(0, 16 * (n + 1), 16, dtype=np.int64)), pa.py_buffer(bytes(data))
    )
    return pa.LargeListArray.from_arrays(pa.array(counts, pa.int64()), flat)


def age_limit(item: str, max_age_days: int) -> int:
    """Days an item's stored fit is reused: from half of `max_age_days` to all of it, fixed per item
    (a hash of its code), so that the refits of a catalogue fitted cold on one night spread over
    the nights that follow instead of all falling due together."""
    return max_age_days - zlib.crc32(item.encode()) % (max_age_days // 2 + 1)


def dropped_periods(entry: dict[str, Any], start: np.datetime64, freq: str) -> int:
    """Periods that today's history lost at its start since the entry's fit (a rolling window)."""
    old_start = np.datetime64(entry["start"], "D")
    return max(int(period_index(old_start, np.datetime64(start, "D"), freq)), 0)


def same_history(entry: dict[str, Any], start: np.datetime64, y: np.ndarray, freq: str) -> bool:
    """Whether today's history (`y` from `start`) is the stored entry's grown at its end, and
    perhaps without its oldest periods (a rolling window: the export's first date moves every
    night). Every stored value still in today's history is compared, except those of a block that
    lost its first periods (at most `block_periods(freq)` - 1 of the oldest); a history that starts
    earlier than the stored one, or whose values changed, is not the same. Blocks stored at
    another length (before the length depended on `freq`) match nothing: fitted cold once."""
    n_old, old_start = int(entry["n_obs"]), np.datetime64(entry["start"], "D")
    start = np.datetime64(start, "D")
    if start == old_start:
        return len(y) >= n_old and fingerprint(start, y[:n_old]) == entry["fingerprint"]
    blocks = entry.get("blocks")
    if start < old_start or not blocks:  # history added before the old start; a store without blocks
        return False
    dropped, block = int(period_index(old_start, start, freq)), block_periods(freq)
    first = -(-dropped // block)  # the first stored block that today's history holds whole
    if first >= len(blocks) or len(y) < n_old - dropped or len(blocks) != -(-n_old // block):
        return False
    return all(
        _block_hash(y[j * block - dropped : min((j + 1) * block, n_old) - dropped]) == blocks[j]
        for j in range(first, len(blocks))
    )


class ModelStore:
    """Cached per-item model choices for one model version (nova-ray version + config hash)."""

    def __init__(self, models_dir: str | Path, model_version: str):
        self.dir = Path(models_dir) / model_version.replace("+", "_")
        self.model_version = model_version

    def quarantine(self) -> list[str]:
        """Set aside store files that cannot be read (a truncated write, a full disk), as
        `<name>.unreadable`, and say so: the store is a cache, its items are fitted cold and it is
        written again. A broken file otherwise stopped every later run with a traceback."""
        notes = []
        checks = ((ITEMS_FILE, _parquet_footer), (BACKTESTS_FILE, _parquet_footer), (LSTM_FILE, read_lstm),
                  (LSTM_BACKTEST_FILE, read_lstm), (FACTORS_FILE, read_factors))
        for name, read in checks:
            path = self.dir / name
            if not path.exists():
                continue
            problem = _problem(read, path)
            if problem is None:
                continue
            os.replace(path, path.with_name(f"{name}.unreadable"))
            if name == ITEMS_FILE and (self.dir / BACKTESTS_FILE).exists():  # stored with the items
                os.replace(self.dir / BACKTESTS_FILE, self.dir / f"{BACKTESTS_FILE}.unreadable")
            notes.append(f"{path}: unreadable ({problem}); set aside as {name}.unreadable, its models are "
                         "fitted cold and stored again")
        return notes

    def items(self, columns: list[str] | None = None) -> pl.DataFrame:
        """The stored item entries (only `columns` when given); empty when there is no store."""
        path = self.dir / ITEMS_FILE
        return pl.read_parquet(path, columns=columns) if path.exists() else pl.DataFrame()

    def shorter_than(self, item_ids: list[str], periods: int) -> set[str]:
        """Those of `item_ids` whose stored fit saw fewer than `periods` periods."""
        stored = self.items(["item_id", "n_obs"])
        if not stored.height:
            return set()
        short = stored.filter(pl.col("item_id").is_in(item_ids) & (pl.col("n_obs") < periods))
        return set(short["item_id"].to_list())

    def newest_fit(self) -> date | None:
        """The day of the store's newest fit, None without entries."""
        days = self.items(["fitted_on"])
        return days["fitted_on"].max() if days.height else None  # type: ignore[return-value]

    def costs(self) -> dict[str, float] | None:
        """Measured CPU seconds per stored item (for batch sizing), None without a store."""
        items = self.items(["item_id", "cpu_seconds"])
        return dict(zip(items["item_id"], items["cpu_seconds"], strict=True)) if items.height else None

    def backtests(self, item_ids: list[str]) -> pl.LazyFrame | None:
        """The stored backtest rows of `item_ids`, lazily (read while written elsewhere, never held
        whole); None when there are none."""
        path = self.dir / BACKTESTS_FILE
        if not item_ids or not path.exists():
            return None
        return pl.scan_parquet(path).filter(pl.col("item_id").is_in(item_ids))

    def lookup(
        self,
        ids: list[str],
        starts: np.ndarray,
        values: list[np.ndarray],
        today: date,
        max_age_days: int,
        freq: str = "D",
        classes: list[str] | None = None,
        factors: Callable[[str | None], str | None] | None = None,
    ) -> tuple[dict[str, dict], dict[str, str]]:
        """({item_id: params} of the items whose stored history today's holds unchanged
        (`same_history`), fitted at most their `age_limit` ago (their stored backtests:
        `backtests`), {item_id: reason} of the others, fitted cold: `COLD_NO_STORE`, `COLD_NEW`,
        `COLD_LATER` (a backfill's run date before the fit), `COLD_OLD` (with the age limit),
        `COLD_CHANGED` or, with today's demand `classes`, `COLD_CLASS` (another class picks
        other models, which would have no stored backtests to weight them by) or, with `factors`
        (why a fit is stale for its external factors, by the key of their history it recorded:
        `factor_history.FactorCheck.why_cold`), that reason.

        A warm item's params carry ``fitted_on`` (the day of the fit whose choices and backtests it
        reuses) and ``dropped``, the periods its history lost at the start since the fit (a
        rolling window), when there are any: states tied to a period move by that."""
        import json

        items = self.items()
        if items.height == 0:
            return {}, dict.fromkeys(ids, COLD_NO_STORE)
        if not (self.dir / BACKTESTS_FILE).exists():  # deleted, set aside, not copied with the store:
            # warm items would be published without backtests, metrics or learned weights
            return {}, dict.fromkeys(ids, COLD_NO_BACKTESTS)
        table = {r["item_id"]: r for r in items.iter_rows(named=True)}
        warm: dict[str, dict] = {}
        cold: dict[str, str] = {}
        for k, (item, start, y) in enumerate(zip(ids, starts, values, strict=True)):
            entry = table.get(item)
            if entry is None:
                cold[item] = COLD_NEW
            elif entry["fitted_on"] == FAILED_ON:
                cold[item] = COLD_FAILED
            elif entry["fitted_on"] > today:
                cold[item] = COLD_LATER
            elif (today - entry["fitted_on"]).days > age_limit(item, max_age_days):
                cold[item] = COLD_OLD.format(days=max_age_days)
            elif not same_history(entry, start, y, freq):
                cold[item] = COLD_CHANGED
            elif classes is not None and entry.get("demand_class") and entry["demand_class"] != classes[k]:
                cold[item] = COLD_CLASS
            elif factors is not None and (why := factors(entry.get("factors"))):
                cold[item] = why
            else:
                warm[item] = json.loads(entry["params"] or "{}") | {"fitted_on": str(entry["fitted_on"])}
                if dropped := dropped_periods(entry, start, freq):
                    warm[item]["dropped"] = dropped
        return warm, cold

    def save(
        self,
        items: pl.DataFrame,
        backtests: pl.LazyFrame | None,
        versions: dict[str, Any],
        drop_before: date | None = None,
    ) -> None:
        """Replace the entries of `items` (and their backtests), keep the others fitted on or after
        `drop_before` (older ones can never be reused: items that left the export); atomic per file.

        The backtests (one row per item, model, window and day: the store's bulk) are streamed from
        `backtests` and the old file into the new one, never held in memory whole."""
        old_items = self.items()
        ids = items["item_id"].to_list()
        kept: list[str] = []
        if old_items.height:
            keep = old_items.filter(~pl.col("item_id").is_in(ids))
            if drop_before is not None:  # a failed choice's entry stays until its item is refitted
                keep = keep.filter((pl.col("fitted_on") >= drop_before) | (pl.col("fitted_on") == FAILED_ON))
            kept = keep["item_id"].to_list()
            items = pl.concat([keep, items], how="diagonal_relaxed")  # a store from before `blocks`
        self.dir.mkdir(parents=True, exist_ok=True)
        bt_path = self.dir / BACKTESTS_FILE
        parts = [] if backtests is None else [backtests]
        if bt_path.exists():  # the old rows of the items kept: a refitted item's rows are replaced,
            # also by none (a refit that backtested no window: too short, or failed)
            parts.insert(0, pl.scan_parquet(bt_path).filter(pl.col("item_id").is_in(kept)))
        if parts:
            tmp = self.dir / f".{BACKTESTS_FILE}.tmp-{os.getpid()}"
            # row groups of 16k rows: the writer's buffers stay small whatever the item count
            pl.concat(parts, how="vertical_relaxed").sink_parquet(tmp, row_group_size=16_384)
            os.replace(tmp, bt_path)
        self._write_items(items)
        write_json_atomic(self.dir / VERSIONS_FILE, versions)

    def _write_items(self, items: pl.DataFrame) -> None:
        tmp = self.dir / f".{ITEMS_FILE}.tmp-{os.getpid()}"
        items.write_parquet(tmp)
        os.replace(tmp, self.dir / ITEMS_FILE)

    def mark_failed(self, ids: list[str]) -> None:
        """Entries whose stored choice failed to forecast (a multiplicative ETS state on a history
        that now has a zero, a state another library version cannot read): the next run fits
        them cold instead of failing on them again until their age runs out."""
        items = self.items()
        if not ids or items.height == 0:
            return
        failed = pl.col("item_id").is_in(ids)
        self._write_items(items.with_columns(fitted_on=pl.when(failed).then(pl.lit(FAILED_ON)).otherwise("fitted_on")))

    def prune_stale(self, max_age_days: int) -> list[str]:
        """Remove the other model versions' stores (a config change, an upgrade) that no run has
        written for `STALE_STORE_DAYS` days, nor for their own `cache_max_age_days` (kept in their
        model_versions.json; a job with a longer one keeps its store) nor this run's: no entry in
        them can be reused any more, yet each held its backtests on disk for ever. Only folders
        holding an items file or a model_versions.json and store files alone are touched; a
        folder that cannot be read is skipped. Logs and returns their names. Call it under the
        models dir's lock."""
        import time

        now, days = time.time(), max(STALE_STORE_DAYS, max_age_days)
        removed: list[str] = []
        try:
            folders = sorted(self.dir.parent.iterdir())
        except OSError:
            return removed
        for left in (f for f in folders if f.name.startswith(".") and f.name.endswith(PRUNING)):
            shutil.rmtree(left, ignore_errors=True)  # a removal that stopped half-way
        for folder in folders:
            try:
                if folder == self.dir or not _stale_store(folder, now, days):
                    continue
            except OSError:  # not ours to read (lost+found on a volume's root): not a store of ours
                continue
            try:  # renamed first: a removal stopped half-way is still found (and finished) later
                doomed = folder.with_name(f".{folder.name}{PRUNING}")
                os.replace(folder, doomed)
                removed.append(folder.name)
                shutil.rmtree(doomed)
            except OSError as exc:  # housekeeping: never a reason to fail a run
                LOG.warning("model store %s not pruned: %s", folder, first_line(exc))
        if removed:
            LOG.info("removed %d model store(s) of other versions unused for %d+ days: %s", len(removed),
                     days, ", ".join(removed))
        return removed

    def save_lstm(self, state: LstmState, cold_fitted_on: date, run_date: date | None = None,
                  backtest: tuple[LstmState, date] | None = None, cold: bool = True) -> None:
        """Store the LSTM (atomically); `cold_fitted_on` is the date of its last cold training,
        `run_date` that of the run storing it (its data's: a fine-tuning saw later data). A `cold`
        training's `backtest` (its backtest's network and the last day that saw) replaces the
        stored one, or removes it (none); a network grown from the stored one keeps it."""
        bt_path = self.dir / LSTM_BACKTEST_FILE
        if cold and backtest is not None:
            write_lstm(bt_path, backtest[0], cold_fitted_on, through=backtest[1])
        elif cold:
            bt_path.unlink(missing_ok=True)
        write_lstm(self.dir / LSTM_FILE, state, cold_fitted_on, through=run_date)

    def load_lstm_backtest(self, cold_fitted_on: date) -> tuple[LstmState, date] | None:
        """(the backtest's network, the last day it saw) of the stored LSTM's cold training of
        `cold_fitted_on`, or None (none stored, unreadable, or another training's)."""
        path = self.dir / LSTM_BACKTEST_FILE
        try:
            state, fitted_on, _ = read_lstm(path)
            return (state, lstm_through(path)) if fitted_on == cold_fitted_on else None
        except (OSError, ValueError, KeyError):
            return None

    def save_factors(self, record: FactorRecord) -> None:
        """Store the regressors' scale and the histories the fits saw (atomically)."""
        write_factors(self.dir / FACTORS_FILE, record)

    def load_factors(self) -> FactorRecord | None:
        """The stored `FactorRecord`, None when there is none."""
        path = self.dir / FACTORS_FILE
        return read_factors(path) if path.exists() else None

    def load_lstm(self, today: date, max_age_days: int) -> tuple[LstmState, date] | None:
        """(state, date of its cold training) when stored, not older than `max_age_days`, and stored
        by a run of `today` or before: a backfill forecasting with a network that a later night
        trained (or fine-tuned) would see the days after its own history, as its items' fits may
        not (`COLD_LATER`)."""
        path = self.dir / LSTM_FILE
        if not path.exists():
            return None
        state, fitted_on, _ = read_lstm(path)
        if (today - fitted_on).days > max_age_days or lstm_through(path) > today:
            return None
        return state, fitted_on

    def lstm_through(self) -> date | None:
        """The run date of the data the stored LSTM last saw (None: none stored, or unreadable)."""
        path = self.dir / LSTM_FILE
        try:
            return lstm_through(path) if path.exists() else None
        except (OSError, ValueError, KeyError):
            return None


def _stale_store(folder: Path, now: float, min_days: int) -> bool:
    """Whether `folder` is a model store (store files only, an items file or model_versions.json
    among them) unwritten for `min_days` days and for its own `cache_max_age_days`."""
    import json

    if folder.name[0] == "." or folder.is_symlink() or not folder.is_dir():
        return False
    files = list(folder.iterdir())
    names = {f.name.removesuffix(".unreadable") for f in files if not f.name.startswith(".")}
    if not names & {ITEMS_FILE, VERSIONS_FILE} or not names <= set(STORE_FILES):
        return False  # not a store: not ours to remove
    if any(f.is_dir() for f in files):
        return False
    days = min_days
    if (folder / VERSIONS_FILE).is_file():
        try:
            own = int(json.loads((folder / VERSIONS_FILE).read_text())["cache_max_age_days"])
            days = max(days, min(own, 36_500))
        except (ValueError, KeyError, TypeError, OverflowError):
            pass
    return max(f.lstat().st_mtime for f in files) < now - 86400 * days


def _problem(read: Callable[[Path], object], path: Path) -> str | None:
    """None when `read(path)` reads the file, else why not."""
    try:
        read(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read means the cache entry is lost
        return first_line(exc)
    return None


def _parquet_footer(path: Path) -> object:
    """A Parquet file's footer and schema (what a truncated write loses)."""
    import pyarrow.parquet as pq

    return pq.read_metadata(path)


def lstm_readable(path: Path) -> bool:
    """Whether `path` holds a readable LSTM state."""
    return _problem(read_lstm, path) is None


def write_factors(path: Path, record: FactorRecord) -> None:
    """A `FactorRecord` in one .npz file, written atomically."""
    keys = sorted(record.fits)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(
        tmp,
        names=np.array(record.names, dtype=str),
        freq=np.array(record.freq),
        mean=np.asarray(record.mean, dtype=np.float64),
        std=np.asarray(record.std, dtype=np.float64),
        keys=np.array(keys, dtype=str),
        starts=np.array([record.fits[k][0] for k in keys], dtype="datetime64[D]"),
        lstm=np.array(record.lstm or ""),
        **{f"rows{i}": np.asarray(record.fits[k][1], dtype=np.float64) for i, k in enumerate(keys)},
    )
    fsync_file(tmp)
    os.replace(tmp, path)


def read_factors(path: Path) -> FactorRecord:
    """`write_factors`'s record. One of the layout before keys (histories by fit day) keeps its
    scale and no history: its fits are cold once, as unknown."""
    with np.load(path, allow_pickle=False) as z:
        if "keys" not in z.files and "days" in z.files:
            return FactorRecord(tuple(str(n) for n in z["names"]), str(z["freq"]), z["mean"], z["std"])
        keys = [str(k) for k in z["keys"]]
        starts = z["starts"].astype("datetime64[D]")
        fits = {k: (starts[i], z[f"rows{i}"]) for i, k in enumerate(keys)}
        record = FactorRecord(tuple(str(n) for n in z["names"]), str(z["freq"]), z["mean"], z["std"], fits,
                              str(z["lstm"]) or None)
    k = len(record.names)
    if record.mean.shape != (k,) or record.std.shape != (k,) or any(
            r.ndim != 2 or r.shape[1] != k for _, r in fits.values()):
        raise ValueError("factor record shapes do not match its names")
    return record


def write_lstm(
    path: Path, state: LstmState, cold_fitted_on: date, warm: bool = False, through: date | None = None
) -> None:
    """An LSTM state in one .npz file, written atomically: its weights, shapes, per-step spread,
    the date of its last cold training, whether this run grew it from a stored network, and the
    run date of the data it last saw (`through`; default its cold training's)."""
    arrays = {f"w{i}": w for i, w in enumerate(state.weights)}
    meta = np.array([getattr(state, f) for f in LSTM_FIELDS], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.npz")
    np.savez(
        tmp,
        meta=meta,
        step_sigma=np.asarray(state.step_sigma, dtype=np.float64),
        final_loss=np.float64(state.final_loss),
        fitted_on=np.datetime64(cold_fitted_on, "D"),
        through=np.datetime64(through or cold_fitted_on, "D"),
        warm=np.bool_(warm),
        **arrays,
    )
    fsync_file(tmp)  # a resumed run reads it: a power cut left it empty, every retry a traceback
    os.replace(tmp, path)


def lstm_through(path: Path) -> date:
    """The run date of the data a stored LSTM last saw (a file from before the field: its cold
    training's)."""
    with np.load(path, allow_pickle=False) as z:
        return z["through" if "through" in z.files else "fitted_on"].astype("datetime64[D]").item()


def read_lstm(path: Path) -> tuple[LstmState, date, bool]:
    """`write_lstm`'s (state, date of its cold training, warm)."""
    with np.load(path, allow_pickle=False) as z:
        fitted_on = z["fitted_on"].astype("datetime64[D]").item()
        n = sum(1 for k in z.files if k.startswith("w") and k[1:].isdigit())
        # a file from before a field existed has fewer: the state's default (calendar 0: a network
        # from before calendar phases, which a run then trains afresh)
        state = LstmState(**{f: int(v) for f, v in zip(LSTM_FIELDS, z["meta"], strict=False)})
        state.weights = [z[f"w{i}"] for i in range(n)]
        state.step_sigma = z["step_sigma"]
        state.final_loss = float(z["final_loss"])
        warm = bool(z["warm"]) if "warm" in z.files else False
    return state, fitted_on, warm
