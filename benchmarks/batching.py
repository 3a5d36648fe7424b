"""The end of the fit stage: batches with their last ones shrinking (`make_batches`' taper) against
the same batches without it, on simulated workers.

    python benchmarks/batching.py [--sizes 100,500,1000,2000] [--cpus 2] [--repeat 300]
                                  [--scale 0.33] [--noise 0.34] [--overhead 0.02] [--batch-seconds 10]

Each item's cost is the estimate `make_batches` plans with (`estimate_cost`) for an item drawn
from 200 demo items (3 years daily, default models, 3 backtest windows); its actual CPU seconds
are that estimate times `--scale` times a log-normal error of log-sd `--noise` (over the 500
items of a cold demo run on 2026-12-08, measured / estimated had a median of 0.33 and
log(measured / estimated) a standard deviation of 0.34). The batches run in order
on `--cpus` simulated workers, each task going to the first worker free (as Ray hands them out),
each paying `--overhead` seconds (its dispatch, its checkpoint). Per size, the mean over
`--repeat` draws: the tasks, the tail (how long one worker waits for the last task of the
other, mean and 90th percentile) and the fit stage's length (the last worker's finish), with
the ratio taper / none. The LSTM's actor, which shares the cores, and Ray's start are left out:
what changes is only how the work is cut.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from nova_ray.config import load_config
from nova_ray.demo import generate_demo
from nova_ray.distributed import estimate_cost, make_batches
from nova_ray.distributed.batching import TAPER
from nova_ray.engine import EngineSpec
from nova_ray.pipeline import load_series
from nova_ray.run_inputs import engine_spec
from nova_ray.series import SeriesSet, build_series


def demo_estimates(items: int = 200) -> np.ndarray:
    """The planning estimate of each of `items` demo items (3 years daily, default settings)."""
    with tempfile.TemporaryDirectory(prefix="nova-ray-bench-") as d:
        generate_demo(d, items=items, days=1095, seed=7)
        cfg = load_config(None, {"data": str(Path(d) / "demand.parquet"), "output": str(Path(d) / "out"),
                                 "models_dir": str(Path(d) / "models")}, env={}, dotenv=None)
        series, _ = load_series(cfg, None)
        spec = engine_spec(cfg)
        return np.array([estimate_cost(series.values_of(i), spec, spec.backtest_windows)
                         for i in range(len(series))])


def placeholder_series(n: int) -> SeriesSet:
    """`n` items of three days: `make_batches` reads only their ids when every cost is given."""
    ids = [f"I{k:05d}" for k in range(n)]
    days = np.tile(pd.date_range("2024-01-01", periods=3), n)
    return build_series(pd.DataFrame({"item_id": np.repeat(ids, 3), "date": days, "quantity": 1.0}), "D")


def run(batches: list[list[int]], actual: np.ndarray, cpus: int, overhead: float) -> tuple[float, float]:
    """(tail, makespan): the batches in order on `cpus` workers, each to the first one free."""
    free = np.zeros(cpus)
    for b in batches:
        k = int(np.argmin(free))
        free[k] += float(actual[b].sum()) + overhead
    return float(free.max() - free.min()), float(free.max())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,500,1000,2000")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=300)
    ap.add_argument("--scale", type=float, default=0.33)
    ap.add_argument("--noise", type=float, default=0.34)
    ap.add_argument("--overhead", type=float, default=0.02)
    ap.add_argument("--batch-seconds", type=float, default=10.0)
    args = ap.parse_args(argv)
    pool = demo_estimates()
    rng = np.random.default_rng(0)
    title = (f"last batches shrinking (taper {TAPER:g}) vs not, {args.cpus} simulated workers, CPU s = "
             f"estimate x {args.scale:g} x error of log sd {args.noise:g}, {args.repeat} draws")
    table = Table(title=title)
    for col in ("items", "tasks none", "tasks taper", "tail none s", "tail taper s", "tail p90 none s",
                "tail p90 taper s", "fit none s", "fit taper s", "fit taper/none"):
        table.add_column(col, justify="right")
    spec = EngineSpec(horizon=30)
    for n in (int(s) for s in args.sizes.split(",")):
        series = placeholder_series(n)
        ids = [str(i) for i in series.item_ids]
        got: dict[float, list[tuple[int, float, float]]] = {0.0: [], TAPER: []}
        for _ in range(args.repeat):
            est = rng.choice(pool, n)
            actual = est * args.scale * rng.lognormal(0.0, args.noise, n)
            costs = dict(zip(ids, est.tolist(), strict=True))
            for taper in got:
                b = make_batches(series, spec, args.cpus, args.batch_seconds, costs, taper=taper)
                got[taper].append((len(b), *run(b, actual, args.cpus, args.overhead)))
        none, tap = (np.array(got[t]) for t in (0.0, TAPER))
        table.add_row(
            str(n), f"{none[:, 0].mean():.0f}", f"{tap[:, 0].mean():.0f}",
            f"{none[:, 1].mean():.2f}", f"{tap[:, 1].mean():.2f}",
            f"{np.percentile(none[:, 1], 90):.2f}", f"{np.percentile(tap[:, 1], 90):.2f}",
            f"{none[:, 2].mean():.1f}", f"{tap[:, 2].mean():.1f}",
            f"{tap[:, 2].mean() / none[:, 2].mean():.4f}",
        )
    Console(width=200).print(table)


if __name__ == "__main__":
    sys.exit(main())
