"""Garbage collection in a run: the heap frozen on entry (`memory.frozen_heap`) against the same
code with `gc.freeze` made a no-op, alternating, each run a fresh process.

    python benchmarks/gc_freeze.py [--items 100] [--days 1095] [--repeat 3] [--lstm-items 60]

Two cases: a warm rerun on Ray (one more day of data, the stored models of a cold run; default
models), whose driver asks for a full collection after each stage; and a cold in-process run of
the global LSTM (`--models naive,lstm`, no Ray), as the LSTM's actor trains, whose collections
(ours after each training, Keras' as it clears its session) walk TensorFlow's objects. Per case:
the median wall of the run (imports excluded), the seconds its process spent collecting (all
generations, `gc.callbacks`), its full collections and the process's peak RSS, then the wall
ratio frozen / not frozen. Ray's workers are not timed: their batches ask for no collection;
the LSTM's trainings do, timed in the second case.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHILD = """
import gc, json, resource, sys, time
if sys.argv[1] == "off":
    gc.freeze = gc.unfreeze = lambda: None  # the baseline: the same code, nothing frozen
spent, full = [0.0], [0]
t = [0.0]
def timed(phase, info):
    if phase == "start":
        t[0] = time.perf_counter()
    else:
        spent[0] += time.perf_counter() - t[0]
        full[0] += info["generation"] == 2
gc.callbacks.append(timed)
sys.path.insert(0, sys.argv[2])
import scale
from pathlib import Path
from nova_ray.pipeline import run_forecast
d, data, out, models, use_ray = Path(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7] == "ray"
cfg = scale._cfg(d / data, d / out, 2, horizon=30, **({"models": models} if models else {}))
spent[0], full[0] = 0.0, 0  # the imports' own collections are not the run's
t0 = time.perf_counter()
s = run_forecast(cfg, use_ray=use_ray)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"wall": time.perf_counter() - t0, "gc": spent[0], "full": full[0], "warm": s.warm_items,
                  "peak": peak}))
"""


def child(mode: str, d: Path, data: str, out: str, models: str = "", ray: bool = True) -> dict:
    """One run in a fresh process; its wall, collection seconds, full collections and peak RSS."""
    args = [sys.executable, "-c", CHILD, mode, str(Path(__file__).parent), str(d), data, out, models,
            "ray" if ray else "local"]
    res = subprocess.run(args, check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


COLUMNS = {"wall s": ("wall", 2), "collecting s": ("gc", 2), "full": ("full", 0), "peak MiB": ("peak", 0)}


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _medians(runs: list[dict]) -> list[str]:
    """The table's cells for these runs: the median of each of `COLUMNS`."""
    return [f"{_median(runs, key):.{digits}f}" for key, digits in COLUMNS.values()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--lstm-items", type=int, default=60)
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    sys.path.insert(0, str(Path(__file__).parent))
    import scale

    root = Path(tempfile.mkdtemp(prefix="nova-ray-gc-"))
    try:
        d = root / "demo"
        scale.demo(d, args.items, args.days + 1)
        full = pd.read_parquet(d / "demand.parquet")
        full[full["date"] < full["date"].max()].to_parquet(d / "day1.parquet")
        keep = sorted(full["item_id"].unique())[: args.lstm_items]
        full[full["item_id"].isin(keep)].to_parquet(d / "lstm.parquet")
        child("on", d, "day1.parquet", "cold")  # the store that the warm reruns start from
        runs: dict[tuple[str, str], list[dict]] = {}
        for _ in range(args.repeat):
            for mode in ("off", "on"):
                out = root / "demo" / f"warm-{mode}"
                shutil.rmtree(out, True)
                shutil.copytree(d / "cold", out)
                warm = child(mode, d, "demand.parquet", out.name)
                runs.setdefault(("warm rerun on Ray", mode), []).append(warm)
                shutil.rmtree(d / "lstm-out", True)
                runs.setdefault(("cold LSTM in process", mode), []).append(
                    child(mode, d, "lstm.parquet", "lstm-out", "naive,lstm", ray=False)
                )
    finally:
        shutil.rmtree(root, True)
    table = Table(title=f"collections in a run, {args.items} demo items x {args.days} days (LSTM: "
                  f"{args.lstm_items} items), medians of {args.repeat} alternating runs, each a process")
    sides = [f"{side}: {col}" for side in ("not frozen", "frozen") for col in COLUMNS]
    for c in ("case", *sides, "wall ratio"):
        table.add_column(c)
    for case in ("warm rerun on Ray", "cold LSTM in process"):
        off, on = runs[(case, "off")], runs[(case, "on")]
        ratio = _median(on, "wall") / _median(off, "wall")
        table.add_row(case, *_medians(off), *_medians(on), f"{ratio:.2f}x")
    Console(width=160).print(table)
    for (case, mode), rs in runs.items():
        walls = [round(r["wall"], 1) for r in rs]
        print(f"{case}, {'frozen' if mode == 'on' else 'not frozen'}: walls {walls}, "
              f"collecting {[round(r['gc'], 2) for r in rs]} s, warm items {[r['warm'] for r in rs]}")


if __name__ == "__main__":
    main()
