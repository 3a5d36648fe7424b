"""Fan-out benchmark: the local sequential path against the Ray path on the same demo items.

    python benchmarks/fanout.py [--items 200] [--days 1095] [--cpus 2] [--models auto] [--skip-local]

Prints wall time of both paths, the sum of per-task CPU, and parallel efficiency
= (sum of task CPU / cores) / wall for the Ray path.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--models", default="auto")
    ap.add_argument(
        "--skip-local", action="store_true", help="only the Ray path (local takes cores x longer)"
    )
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from nova_ray.config import load_config
    from nova_ray.demo import generate_demo
    from nova_ray.fit_stage import Silent, run_engine
    from nova_ray.pipeline import engine_spec, load_series

    tmp = Path(tempfile.mkdtemp(prefix="nova-ray-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    generate_demo(tmp, items=args.items, days=args.days, seed=7)
    cfg = load_config(
        None,
        {
            "data": str(tmp / "demand.parquet"),
            "horizon": args.horizon,
            "models": args.models,
            "num_cpus": args.cpus,
        },
        env={},
        dotenv=None,
    )
    series, _ = load_series(cfg, None)
    spec = engine_spec(cfg)
    rows = []
    if not args.skip_local:
        t0 = time.perf_counter()
        local, _, _ = run_engine(series, spec, cfg, Silent(), use_ray=False)
        wall = time.perf_counter() - t0
        cpu = sum(r.cpu_seconds for r in local)
        rows.append(("local sequential", wall, cpu, 1, cpu / wall, None))
    t0 = time.perf_counter()
    remote, backend, info = run_engine(series, spec, cfg, Silent(), use_ray=True)
    wall = time.perf_counter() - t0
    cpu = sum(r.cpu_seconds for r in remote)
    rows.append(
        (f"ray ({info['batches']} tasks + LSTM actor)", wall, cpu, args.cpus, cpu / args.cpus / wall, None)
    )
    base = rows[0][1]
    table = Table(
        title=f"fan-out: {args.items} items x {args.days} days, horizon {args.horizon}, "
        f"models {args.models}, {args.cpus} CPUs"
    )
    for col in ("path", "wall s", "sum task CPU s", "cores", "parallel efficiency", "speed-up vs first row"):
        table.add_column(col)
    for name, w, c, cores, eff, _ in rows:
        table.add_row(name, f"{w:.1f}", f"{c:.1f}", str(cores), f"{eff:.2f}", f"{base / w:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
