"""Nightly runs in steady state: a cold run, then one run a night, each with one more day of data.

    python benchmarks/nightly.py [--items 150] [--days 1095] [--nights 8] [--cpus 2]

The demo data (default models, external factors, stock) cut so that the cold run's history ends
`--nights` days before the data's end; night k's ends k days later and runs on the next day's
date. Stored fits fall due for their periodic refit from the fourth night on (each item's limit
lies between half `cache_max_age_days` and all of it, default 7), a few items a night, and the
global LSTM's own age limit comes on night 8. Per run: wall (the run, Ray's start included,
imports excluded), items reused, items fitted cold and why, whether the LSTM trained cold or
was reused, and the cold run's wall over the night's (the baseline is the cold run, measured in
the same invocation).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).parent))

import scale  # noqa: E402  (the demo data and the run's config, as the scale benchmark makes them)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=150)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--nights", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=30)
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from nova_ray.pipeline import run_forecast

    root = Path(tempfile.mkdtemp(prefix="nova-ray-nightly-"))
    try:
        d = root / "demo"
        scale.demo(d, args.items, args.days)
        full = pd.read_parquet(d / "demand.parquet")
        full["date"] = pd.to_datetime(full["date"])
        end = full["date"].max()
        table = Table(title=f"nightly: {args.items} demo items x {args.days} days, horizon {args.horizon}, "
                            f"{args.cpus} CPUs, default models, a cold run then {args.nights} nights")
        for c in ("run", "run date", "wall s", "reused", "fitted cold", "LSTM", "cold / this"):
            table.add_column(c)
        cold_wall = float("nan")
        for k in range(args.nights + 1):
            last = end - pd.Timedelta(days=args.nights - k)
            full[full["date"] <= last].to_parquet(d / "demand.parquet")
            cfg = scale._cfg(d / "demand.parquet", root, args.cpus, horizon=args.horizon)
            run_date = last.date() + timedelta(days=1)
            t0 = time.perf_counter()
            s = run_forecast(cfg, use_ray=True, run_date=run_date)
            wall = time.perf_counter() - t0
            cold_wall = wall if k == 0 else cold_wall
            why = "; ".join(f"{c['count']} {reason.split(' (')[0]}" for reason, c in s.cold_items.items())
            table.add_row("cold" if k == 0 else f"night {k}", str(run_date), f"{wall:.1f}", str(s.warm_items),
                          why or "0", {"warm": "reused", "cold": "trained cold"}.get(s.lstm, "-"),
                          f"{cold_wall / wall:.2f}x")
            print(f"{'cold' if k == 0 else f'night {k}'}: {wall:.1f} s, LSTM {s.lstm}", flush=True)
        Console(width=140).print(table)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
