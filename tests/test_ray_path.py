"""The Ray path runs exactly the local engine: same numbers; batching covers every item once."""

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from nova_ray import global_lstm
from nova_ray.assemble import assemble
from nova_ray.config import load_config
from nova_ray.distributed import make_batches
from nova_ray.fit_stage import run_engine
from nova_ray.pipeline import engine_spec, load_series


class _Count:
    def __init__(self) -> None:
        self.n = 0

    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.n += n


@pytest.fixture(scope="module")
def setup(small_demo: Path):
    cfg = load_config(
        None,
        {"data": str(small_demo / "demand.parquet"), "horizon": 7, "backtest_windows": 2, "epochs": 2},
        env={},
        dotenv=None,
    )
    items = ["CAB-0001", "CAB-0002", "ELE-0001", "FIX-0001", "FIX-0002", "SAF-0001", "STL-0002"]
    series, _ = load_series(cfg, items)
    return cfg, series


def _frames(results):
    fc, bt, weights, items, _ = assemble(results)
    key = ["item_id", "model", "date"]
    return (
        fc.sort(key),
        bt.sort(["item_id", "model", "window", "date"]),
        weights.sort("item_id", "model"),
        items.drop("cpu_seconds").sort("item_id"),
    )


def test_local_and_ray_give_the_same_numbers(setup, ray_session) -> None:
    cfg, series = setup
    spec = engine_spec(cfg)
    local, _, _ = run_engine(series, spec, cfg, _Count(), use_ray=False)
    progress = _Count()
    remote, backend, info = run_engine(series, spec, cfg, progress, use_ray=True)
    assert backend.startswith("ray") and info["batches"] >= 2
    for a, b in zip(_frames(local), _frames(remote), strict=True):
        assert_frame_equal(a, b, check_exact=False, rel_tol=1e-6, abs_tol=1e-6)
    lstm = _frames(remote)[0].filter(pl.col("model") == "lstm")
    assert lstm.height > 0
    assert progress.n == len(series) + lstm["item_id"].n_unique()


def test_lstm_result_comes_in_parts_of_items(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """The global LSTM hands its rows on in parts of PART_ITEMS items (backtests before the final
    training, then forecasts), then the state: together exactly the rows of one whole result."""
    cfg, series = setup
    spec = engine_spec(cfg)
    idx = global_lstm.lstm_items(series, spec)
    assert len(idx) >= 3
    whole = global_lstm.forecast_lstm(series, idx, spec)
    monkeypatch.setattr(global_lstm, "PART_ITEMS", 2)
    from nova_ray.models import lstm

    predicted, predict = [], lstm.predict

    def counted(state, series, *args, **kw):
        predicted.append(len(series))
        return predict(state, series, *args, **kw)

    monkeypatch.setattr(lstm, "predict", counted)
    parts = list(global_lstm.lstm_parts(series, idx, spec))
    # each part's items are predicted (and their rows built) on their own: the actor never holds
    # the rows of every item (~19 KB per item at 3 windows of 30 days)
    assert predicted and max(predicted) <= 2
    chunks = -(-len(idx) // 2)
    names = [p.name for p in parts]
    assert names == [f"lstm-bt-{k:04d}" for k in range(chunks)] + [
        f"lstm-fc-{k:04d}" for k in range(chunks)
    ] + [global_lstm.FINAL_PART]
    ids = [str(series.item_ids[i]) for i in idx]
    for k in range(chunks):  # part k holds the rows of items 2k and 2k + 1, and nothing else
        assert set(parts[k].backtests["item_id"].to_pylist()) == set(ids[2 * k : 2 * k + 2])
        assert set(parts[chunks + k].forecasts["item_id"].to_pylist()) == set(ids[2 * k : 2 * k + 2])
    final = parts[-1]
    assert final.state is not None and final.state.weights and final.cpu_seconds > 0
    assert final.parts == tuple(names[:-1])  # what the driver keeps of earlier attempts' parts
    assert final.forecasts.num_rows == final.backtests.num_rows == 0
    for kind, key in (("forecasts", ["item_id", "date"]), ("backtests", ["item_id", "window", "date"])):
        got = pl.from_arrow(pa.concat_tables([getattr(p, kind) for p in parts])).sort(key)
        assert_frame_equal(got, pl.from_arrow(getattr(whole, kind)).sort(key), check_exact=True)


def test_batches_cover_each_item_once(setup) -> None:
    cfg, series = setup
    batches = make_batches(series, engine_spec(cfg), workers=2, batch_seconds=0.5)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(series)))
    assert len(batches) >= 2


@pytest.mark.parametrize(("items", "batches"), [(2000, 120), (100, 54)])
def test_batches_hold_batch_seconds_of_work_but_at_least_40_per_worker(items: int, batches: int) -> None:
    """2,000 items of 0.5 s: 10-s batches (~120 checkpoint files, not 2,000); 100 items: smaller
    batches, ~40 per worker where the items allow (two items of 0.5 s reach the 0.625-s target);
    both end in batches that shrink to one item (the taper)."""
    import numpy as np
    import pandas as pd

    from nova_ray.engine import EngineSpec
    from nova_ray.series import build_series

    ids = [f"I{k:04d}" for k in range(items)]
    days = np.tile(pd.date_range("2024-01-01", periods=3), items)
    demand = pd.DataFrame({"item_id": np.repeat(ids, 3), "date": days, "quantity": 1.0})
    series = build_series(demand, "D")
    costs = dict.fromkeys(ids, 0.5)
    out = make_batches(series, EngineSpec(horizon=7), workers=2, batch_seconds=10.0, costs=costs)
    assert len(out) == batches and sorted(i for b in out for i in b) == list(range(items))
    full = 20 if items == 2000 else 2
    assert all(len(b) == full for b in out[: batches // 2]) and len(out[-1]) == 1


def test_the_last_batches_shrink_so_the_cores_finish_together() -> None:
    """Towards the end each batch holds at most 1/(TAPER x workers) of the work left, so the
    last tasks are single items and no core waits a whole batch for the other at the end: items
    of 1 s in 2-s batches end in batches of 1 item, sizes never growing on the way."""
    import numpy as np
    import pandas as pd

    from nova_ray.distributed.batching import TAPER
    from nova_ray.engine import EngineSpec
    from nova_ray.series import build_series

    ids = [f"I{k:03d}" for k in range(400)]
    days = np.tile(pd.date_range("2024-01-01", periods=3), len(ids))
    series = build_series(pd.DataFrame({"item_id": np.repeat(ids, 3), "date": days, "quantity": 1.0}), "D")
    costs = dict.fromkeys(ids, 1.0)
    out = make_batches(series, EngineSpec(horizon=7), workers=2, batch_seconds=2.0, costs=costs)
    sizes = [len(b) for b in out]
    assert sizes[0] == 2 and sizes[-TAPER:] == [1] * TAPER
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) == len(ids)
    left = len(ids)
    for n in sizes:  # each batch within the taper's share of the work left before it (or one item)
        assert n == 1 or n <= max(2, left / (TAPER * 2)) + 1
        left -= n
    untapered = make_batches(series, EngineSpec(horizon=7), 2, batch_seconds=2.0, costs=costs, taper=0)
    assert [len(b) for b in untapered] == [2] * 200  # benchmarks/batching.py's baseline


def test_batches_of_some_indices_match_batches_of_their_subset(setup) -> None:
    """Batching a group of items by index gives the batches of that group's subset, mapped back."""
    cfg, series = setup
    spec = engine_spec(cfg)
    group = list(range(1, len(series), 2))
    by_index = make_batches(series, spec, workers=2, batch_seconds=0.5, indices=group)
    of_subset = make_batches(series.subset(group), spec, workers=2, batch_seconds=0.5)
    assert by_index == [[group[j] for j in b] for b in of_subset]
    assert sorted(i for b in by_index for i in b) == group


def test_warm_items_are_batched_without_the_search_they_skip() -> None:
    """Warm items (stored model choices, no backtest) cost their fits alone: counting the order
    and form search they skip made their batches 2-4x smaller than batch_seconds (2000 warm
    3-year items: ~2.9x the tasks and checkpoint files)."""
    from dataclasses import replace

    import numpy as np
    import pandas as pd

    from nova_ray.distributed import SEARCH_COST, estimate_cost
    from nova_ray.engine import EngineSpec
    from nova_ray.series import build_series

    rng = np.random.default_rng(0)
    ids = [f"I{k:04d}" for k in range(2000)]
    days = np.tile(pd.date_range("2023-01-01", periods=1095), len(ids))
    demand = pd.DataFrame({"item_id": np.repeat(ids, 1095), "date": days,
                           "quantity": rng.poisson(20, len(days)).astype(float)})
    series = build_series(demand, "D")
    warm = replace(EngineSpec(horizon=30), backtest_windows=0)
    y = series.values_of(0)
    assert any(SEARCH_COST.values())
    fits_only = estimate_cost(y, warm, 0, search=False)
    assert 0 < fits_only < estimate_cost(y, warm, 0) / 2
    searched = make_batches(series, warm, workers=2, batch_seconds=10.0)
    stored = make_batches(series, warm, workers=2, batch_seconds=10.0, search=False)
    assert len(stored) < len(searched) / 2 and sorted(i for b in stored for i in b) == list(range(2000))
