"""Scale benchmark: nova-ray end to end at growing item counts, against StatsForecast on the same items.

    python benchmarks/scale.py [--sizes 100,500,1000,2000] [--days 1095] [--cpus 2] [--skip-nodes]
                               [--compare-max N] [--repeat N] [--skip-warm]

Per size: wall time, items/s, parallel efficiency (sum of task CPU / cores / wall; also over the
fit stage's wall alone, without reading, Ray's start and the output), peak RSS of the driver
(each size's run in a fresh child process, as are the demo data and StatsForecast) and of the
Ray workers with Ray's per-node agents (sampled every 0.5 s; a worker's forked child, e.g.
cmdstanpy starting Stan, is not counted again), and the statistical stage (ARIMA, ETS, Theta,
seasonal naive; no backtest, no external factors) against StatsForecast with the same models
and n_jobs=cores, twice: nova-ray's fit stage (its
tasks, from Ray up to the last result; worker imports included) against StatsForecast's forecast
call, and the whole nova-ray run (reading, Ray's start and stop, output) against StatsForecast's
whole process (Python's start, imports, reading, forecast). With `--repeat N` that pair runs N
times, alternating, and the fastest of each counts (timings on a shared machine vary by +-15%).
Then the cold vs warm (one more day of data) rerun ratio at the smallest size, and two nodes of 1
CPU against one node of 2 CPUs at the smallest size (`--skip-warm` skips both).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore")


class PeakWorkers:
    """Sample the summed RSS of the ray:: processes (workers and Ray's per-node agents) in a
    thread; keep the peak (MiB). A ray:: process whose parent is one too is left out: a worker
    forking a subprocess (cmdstanpy starting Stan) shows a child under the worker's name and with
    its RSS (shared copy-on-write pages) until the child execs, and counted it doubled the worker."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            procs: dict[str, tuple[str, int]] = {}  # pid -> (parent pid, RSS KiB)
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    if (d / "cmdline").read_bytes().startswith(b"ray::"):
                        lines = (d / "status").read_text().splitlines()
                        fields = dict(line.split(":", 1) for line in lines if ":" in line)
                        procs[d.name] = (fields["PPid"].strip(), int(fields.get("VmRSS", "0 kB").split()[0]))
                except (OSError, KeyError, ValueError):
                    pass
            total = sum(rss for parent, rss in procs.values() if parent not in procs)
            self.peak = max(self.peak, total / 1024)
            self._stop.wait(0.5)

    def __enter__(self) -> PeakWorkers:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def demo(out: Path, items: int, days: int) -> None:
    """Demo data written by a child process: its memory does not count as the driver's peak."""
    code = (
        "from nova_ray.demo import generate_demo; "
        f"generate_demo({str(out)!r}, items={items}, days={days}, seed=7)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _in_child(call: str) -> Any:
    """`call` (an expression on this module's functions) evaluated in a child process, whose
    memory is not the benchmark's; its JSON result."""
    code = (
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import Path; "
        f"import scale; print(json.dumps(scale.{call}))"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def nova_ray_run(d: Path, cpus: int, horizon: int) -> dict[str, Any]:
    """nova-ray's run on the demo in `d`: `wall` seconds of the run (imports excluded), task `cpu`
    seconds, `stages` seconds and the process's peak RSS `driver` (MiB). Run by `_in_child`, each
    size in a fresh driver: what the allocators kept from a smaller run would count in a larger one."""
    from nova_ray.pipeline import run_forecast

    t0 = time.perf_counter()
    s = run_forecast(_cfg(d / "demand.parquet", d, cpus, horizon=horizon))
    return {
        "wall": time.perf_counter() - t0,
        "cpu": s.cpu_seconds,
        "stages": s.stage_seconds,
        "driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def statsforecast_child(data: Path, horizon: int, cpus: int) -> tuple[float, float]:
    """`statsforecast_time` in a child process (its memory is not the driver's): seconds of its
    forecast call, and of the whole process (Python's start, imports, reading the data)."""
    t0 = time.perf_counter()
    forecast = _in_child(f"statsforecast_time(Path({str(data)!r}), {horizon}, {cpus})")
    return float(forecast), time.perf_counter() - t0


def _cfg(data: Path, out: Path, cpus: int, **kw):
    from nova_ray.config import load_config

    return load_config(
        None,
        {
            "data": str(data),
            "output": str(out / "results"),
            "models_dir": str(out / "models"),
            "num_cpus": cpus,
            **kw,
        },
        env={},
        dotenv=None,
    )


def statsforecast_time(data: Path, horizon: int, cpus: int) -> float:
    """StatsForecast on the series nova-ray fits (summed over sites, gaps as zeros)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, DynamicOptimizedTheta, SeasonalNaive

    from nova_ray.pipeline import load_series

    series, _ = load_series(_cfg(data, data.parent / "sf", cpus, exog=False), None)
    df = pd.concat(
        pd.DataFrame(
            {"unique_id": str(series.item_ids[i]), "ds": series.dates_of(i), "y": series.values_of(i)}
        )
        for i in range(len(series))
    )
    df["ds"] = pd.to_datetime(df["ds"])
    models = [
        AutoARIMA(season_length=7, approximation=True, max_p=3, max_q=3, max_P=1, max_Q=1),
        AutoETS(season_length=7),
        DynamicOptimizedTheta(season_length=7),
        SeasonalNaive(season_length=7),
    ]
    t0 = time.perf_counter()
    StatsForecast(models=models, freq="D", n_jobs=cpus).forecast(df=df, h=horizon, level=[80, 95])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,500,1000,2000")
    ap.add_argument("--days", type=int, default=1095)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=30)
    ap.add_argument("--skip-nodes", action="store_true")
    ap.add_argument("--skip-statsforecast", action="store_true")
    ap.add_argument(
        "--compare-max",
        type=int,
        default=0,
        help="run the StatsForecast comparison only for sizes up to this (0: every size)",
    )
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of the StatsForecast comparison (the fastest counts)"
    )
    ap.add_argument("--skip-warm", action="store_true", help="no cold vs warm rerun (nor two nodes)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from nova_ray.pipeline import run_forecast

    console = Console(width=160)
    sizes = [int(s) for s in args.sizes.split(",")]
    table = Table(
        title=f"scale: demo items x {args.days} days, horizon {args.horizon}, {args.cpus} CPUs, "
        "default models (auto), 3 backtest windows"
    )
    for c in (
        "items",
        "wall s",
        "items/s",
        "efficiency",
        "fit-stage eff.",
        "driver peak MiB",
        "workers peak MiB",
        "stat fit s",
        "SF forecast s",
        "fit/SF",
        "stat run s",
        "SF process s",
        "run/SF",
    ):
        table.add_column(c)
    root = Path(tempfile.mkdtemp(prefix="nova-ray-scale-"))
    atexit.register(shutil.rmtree, root, True)  # demo data and outputs: 83 MB at 2000 items
    for n in sizes:
        d = root / f"demo{n}"
        demo(d, n, args.days)
        with PeakWorkers() as peak:
            r = _in_child(f"nova_ray_run(Path({str(d)!r}), {args.cpus}, {args.horizon})")
        wall, cpu, driver = r["wall"], r["cpu"], r["driver"]
        fit = sf = run = sfp = float("nan")
        if not args.skip_statsforecast and (not args.compare_max or n <= args.compare_max):
            fits, runs, sfs, sfps = [], [], [], []
            for k in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                st = run_forecast(
                    _cfg(
                        d / "demand.parquet",
                        d / f"stat{k}",
                        args.cpus,
                        horizon=args.horizon,
                        models="arima,ets,theta,naive",
                        backtest_windows=0,
                        exog=False,  # StatsForecast fits the series alone too
                    )
                )
                runs.append(time.perf_counter() - t0)
                fits.append(st.stage_seconds["fit and backtest"])
                f, p = statsforecast_child(d / "demand.parquet", args.horizon, args.cpus)
                sfs.append(f)
                sfps.append(p)
            fit, sf, run, sfp = min(fits), min(sfs), min(runs), min(sfps)
            if len(runs) > 1:
                console.print(
                    f"{n} items: stat fit stage {[round(x) for x in fits]} s, whole runs "
                    f"{[round(x) for x in runs]} s; StatsForecast forecast calls "
                    f"{[round(x) for x in sfs]} s, processes {[round(x) for x in sfps]} s"
                )
        table.add_row(
            str(n),
            f"{wall:.0f}",
            f"{n / wall:.2f}",
            f"{cpu / args.cpus / wall:.2f}",
            f"{cpu / args.cpus / r['stages']['fit and backtest']:.2f}",
            f"{driver:.0f}",
            f"{peak.peak:.0f}",
            f"{fit:.0f}",
            f"{sf:.0f}",
            f"{fit / sf:.2f}",
            f"{run:.0f}",
            f"{sfp:.0f}",
            f"{run / sfp:.2f}",
        )
        console.print(f"{n} items: stages {r['stages']}")
        console.print(table)
    if args.skip_warm:
        return
    # cold vs warm: one more day of data at the smallest size
    n = sizes[0]
    d = root / f"warm{n}"
    demo(d, n, args.days + 1)
    full = pd.read_parquet(d / "demand.parquet")
    full[full["date"] < full["date"].max()].to_parquet(d / "day1.parquet")
    t0 = time.perf_counter()
    run_forecast(_cfg(d / "day1.parquet", d, args.cpus, horizon=args.horizon))
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    w = run_forecast(_cfg(d / "demand.parquet", d, args.cpus, horizon=args.horizon))
    warm = time.perf_counter() - t0
    t2 = Table(title="incremental and multi-node")
    for c in ("comparison", "baseline s", "s", "ratio"):
        t2.add_column(c)
    t2.add_row(
        f"warm rerun (+1 day, {w.warm_items}/{n} items warm) vs cold",
        f"{cold:.0f}",
        f"{warm:.0f}",
        f"{cold / warm:.1f}x faster",
    )
    if not args.skip_nodes:
        import ray
        from ray.cluster_utils import Cluster

        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        t0 = time.perf_counter()
        run_forecast(
            _cfg(d / "day1.parquet", d / "two", 1, horizon=args.horizon, address=c.address), full_refit=True
        )
        two = time.perf_counter() - t0
        ray.shutdown()
        c.shutdown()
        t0 = time.perf_counter()
        run_forecast(_cfg(d / "day1.parquet", d / "one", args.cpus, horizon=args.horizon), full_refit=True)
        one = time.perf_counter() - t0
        t2.add_row(
            f"two nodes x 1 CPU vs one node x {args.cpus} CPUs ({n} items)",
            f"{one:.0f}",
            f"{two:.0f}",
            f"{one / two:.2f}x",
        )
    console.print(t2)


if __name__ == "__main__":
    main()
