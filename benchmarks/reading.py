"""Reading benchmark: nova-ray's validated demand reading against a plain, unvalidated pandas read.

    python benchmarks/reading.py [--items 2000] [--days 1095] [--repeat 2]

Demo demand (seed 7) written as CSV and as Parquet. Each reading runs in a fresh process (its
peak memory is its own): `nova-ray` is `read_demand` (every check of the input contract: ids,
dates, quantities, duplicates) then `build_series` (the per-item series the run fits);
`pandas` reads the same file with typed columns and sums it per item and day with a groupby, no
validation: the floor that a reader without checks pays. Prints wall seconds (best of
`--repeat`), peak RSS above the process's RSS after its imports (Linux), and the ratios nova-ray / pandas.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _rss(field: str = "VmRSS") -> float:
    """This process's resident memory (or its peak, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _one(mode: str, path: str) -> None:
    """Run one reading in this process; print its wall time and memory as JSON."""
    import pandas as pd

    from nova_ray.io.demand import read_demand
    from nova_ray.series import build_series

    base = _rss()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) from here: not the imports'
    t0 = time.perf_counter()
    if mode == "nova-ray":
        series = build_series(read_demand(path), "D")
        items = len(series)
    elif path.endswith(".csv"):
        df = pd.read_csv(path, dtype={"item_id": "category", "quantity": "float64"}, parse_dates=["date"])
        items = df.groupby(["item_id", "date"], observed=True)["quantity"].sum().index.levels[0].size
    else:
        df = pd.read_parquet(path, columns=["item_id", "date", "quantity"])
        items = df.groupby(["item_id", "date"], observed=True)["quantity"].sum().index.levels[0].size
    wall = time.perf_counter() - t0
    peak = _rss("VmHWM")
    print(json.dumps({"wall": wall, "peak": peak - base, "items": int(items)}))


def _measure(mode: str, path: Path, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--one", mode, str(path)], check=True, capture_output=True, text=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        "wall": min(r["wall"] for r in runs),
        "peak": min(r["peak"] for r in runs),
        "items": runs[0]["items"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2000)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--one", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        _one(*args.one)
        return

    import polars as pl
    from rich.console import Console
    from rich.table import Table

    from nova_ray.demo import generate_demo

    tmp = Path(tempfile.mkdtemp(prefix="nova-ray-bench-"))
    atexit.register(shutil.rmtree, tmp, True)
    generate_demo(tmp, items=args.items, days=args.days, seed=7)
    parquet = tmp / "demand.parquet"
    csv = tmp / "demand.csv"
    demand = pl.read_parquet(parquet)
    demand.write_csv(csv)
    table = Table(title=f"reading: {args.items} demo items x {args.days} days, {demand.height:,} rows")
    for col in (
        "file",
        "MiB",
        "nova-ray s",
        "pandas s",
        "time ratio",
        "nova-ray MiB",
        "pandas MiB",
        "memory ratio",
    ):
        table.add_column(col)
    for path in (csv, parquet):
        ours, plain = _measure("nova-ray", path, args.repeat), _measure("pandas", path, args.repeat)
        if ours["items"] != plain["items"]:
            raise SystemExit(f"{path.name}: nova-ray read {ours['items']} items, pandas {plain['items']}")
        table.add_row(
            path.suffix[1:],
            f"{path.stat().st_size / 2**20:.0f}",
            f"{ours['wall']:.2f}",
            f"{plain['wall']:.2f}",
            f"{ours['wall'] / plain['wall']:.2f}x",
            f"{ours['peak']:.0f}",
            f"{plain['peak']:.0f}",
            f"{ours['peak'] / plain['peak']:.2f}x",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
