"""Items grouped into tasks of about equal work, from measured or estimated CPU cost per item."""

from __future__ import annotations

import numpy as np

from ..classify import classify
from ..engine import EngineSpec
from ..series import SeriesSet

# Rough CPU seconds per fit of a 3-year daily series, and per order/form search; scaled by length.
FIT_COST = {
    "naive": 0.001,
    "croston": 0.01,
    "tsb": 0.01,
    "theta": 0.15,
    "ets": 0.1,
    "arima": 0.3,
    "prophet": 0.35,
}
SEARCH_COST = {"ets": 0.5, "arima": 2.0}


def estimate_cost(y: np.ndarray, spec: EngineSpec, windows: int, search: bool = True) -> float:
    """Estimated CPU seconds to backtest and fit one series with its models (`search=False`: with
    stored model choices, as a warm item of an incremental run, no order or form search)."""
    from ..engine import models_for
    from ..models import MODELS

    names, _ = models_for(classify(y), spec)
    scale = max(len(y), 50) / 1095
    search_scale = min(len(y), spec.search_window or len(y)) / 1095

    def fits(name: str) -> float:  # a re-filtered window costs about a third of a fit
        once = windows and spec.backtest_refit == "first" and MODELS[name].backtest
        return 2 + (windows - 1) / 3 if once else windows + 1

    return (
        sum(FIT_COST.get(n, 0.0) * fits(n) * scale + search * SEARCH_COST.get(n, 0.0) * search_scale
            for n in names)
        + 0.002
    )


# Tasks per worker below which batches get smaller than `batch_seconds`: the last tasks then hold
# ~1/40 of a worker's work, so the cores finish together. Large runs get `batch_seconds` batches:
# each is a checkpoint file that the driver writes and the ensemble reads back, and ~1,350 files
# of 2-s batches at 2,000 items cost the driver ~20 MiB more than ~270 files (polars' per-file
# buffers) and their writes' CPU.
MIN_TASKS_PER_WORKER = 40
# The last tasks shrink (guided self-scheduling): a batch holds at most 1/(TAPER x workers) of the
# work not yet batched, so the final ones are single cheap items and the cores finish close
# together instead of up to a whole batch apart (100 demo items: last batches of ~1 s, one core
# idle for 0.4-1.2 s at the end; now ~5 tasks more, the last eight 0.2-0.6 s).
TAPER = 4


def make_batches(
    series: SeriesSet,
    spec: EngineSpec,
    workers: int,
    batch_seconds: float,
    costs: dict[str, float] | None = None,
    indices: list[int] | None = None,
    search: bool = True,
    taper: float = TAPER,
) -> list[list[int]]:
    """Group `indices` (default all items) into tasks of about `batch_seconds` of work (measured
    costs where known, else estimated), most expensive first, smaller when that makes fewer than
    MIN_TASKS_PER_WORKER tasks per worker (load balance), and smaller again towards the end
    (`taper`; 0: none); `search=False` for warm items (stored model choices). Returns lists of
    series indices (no copy of the series is made)."""
    idx = np.arange(len(series)) if indices is None else np.asarray(indices, dtype=np.int64)
    est = np.array(
        [
            (costs or {}).get(str(series.item_ids[i]))
            or estimate_cost(series.values_of(i), spec, spec.backtest_windows, search)
            for i in idx
        ]
    )
    order = np.argsort(-est, kind="stable")
    total = float(est.sum())
    target = max(min(batch_seconds, total / max(MIN_TASKS_PER_WORKER * workers, 1)), 1e-9)
    share = 1.0 / (taper * max(workers, 1)) if taper > 0 else 0.0
    batches: list[list[int]] = []
    cur: list[int] = []
    acc, left = 0.0, total  # left: the work not yet in a closed batch
    for j in order:
        cur.append(int(idx[j]))
        acc += est[j]
        if acc >= (min(target, left * share) if share else target):
            batches.append(cur)
            left -= acc
            cur, acc = [], 0.0
    if cur:
        batches.append(cur)
    return batches
