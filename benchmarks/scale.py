"""Scale benchmark: nova-ray end to end at growing item counts, against StatsForecast on the same items.

    python benchmarks/scale.py [--sizes 100,500,1000,2000] [--days 1095] [--cpus 2] [--skip-nodes]
                               [--compare-max N] [--repeat N] [--skip-warm]

Per size: wall time, items/s, parallel efficiency (sum of task CPU / cores / wall; also over the
fit stage's wall alone, without reading, Ray's start and the output), the share of the cores' time
that the hypervisor gave to other guests during the run (`steal` in /proc/stat: on a shared VM
the wall grows and the efficiency drops by about that share; the efficiency over the time left is
printed beside the table), peak RSS of the driver
(each size's run in a fresh child process, as are the demo data and StatsForecast) and of the
Ray workers with Ray's per-node agents (RSS sampled every 0.5 s, PSS every 5 s and at each new
RSS peak; a worker's forked child, e.g. cmdstanpy starting Stan, is not counted again), as the sum
of their RSS (each process's shared library pages counted once per process) and of their PSS with
Ray's raylet and GCS (shared pages split among the processes that map them; the sampler's own CPU
is printed), and the statistical stage (ARIMA, ETS, Theta,
seasonal naive; no backtest, no external factors) against StatsForecast with the same models
and n_jobs=cores (one BLAS thread per process on both sides): nova-ray's Ray start and fit stage
(its tasks up to the last result; worker imports included; StatsForecast's call starts its
process pool) against StatsForecast's forecast call on the whole series and on their last
730 days (nova-ray searches orders and forms on its 730-day `search_window` and re-filters the
whole series with the model found), and the whole nova-ray process (Python's start, imports,
reading, Ray's start and stop, output) against StatsForecast's whole process (Python's start,
imports, reading, forecast). With `--repeat N` that comparison runs N times, alternating, and
the fastest of each counts (timings on a shared machine vary by +-15%). Then the cold vs warm
(one more day of data) rerun ratio at the smallest size, each run a process timed from the
outside (with `--repeat N`, N pairs and their median ratio), and two raylets of 1 CPU on this
host against one node of 2 CPUs at the smallest size, fit stage and whole runs (`--skip-warm`
skips both).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import resource
import shutil
import statistics
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


T0: float | None = None  # set by `_in_child`: when the child process began, before its imports

_RAY_DAEMONS = re.compile(rb"(^|/)(raylet|gcs_server)$")


class PeakWorkers:
    """Sample the summed RSS of the ray:: processes (workers and Ray's per-node agents) in a
    thread; keep the peak (MiB). A ray:: process whose parent is one too is left out: a worker
    forking a subprocess (cmdstanpy starting Stan) shows a child under the worker's name and with
    its RSS (shared copy-on-write pages) until the child execs, and counted it doubled the worker.

    RSS comes from /proc/PID/statm every 0.5 s (cheap). PSS needs smaps_rollup, for which the
    kernel walks every mapping of the process: ~45 ms a scan of a run's workers, which at every
    sample took 5% of a core from the run it measured (its efficiency 2-3 points lower). It is
    read every `PSS_EVERY_S` and whenever the RSS sum passes its peak by 1% (at most once a second).
    `cpu`: the sampler's own CPU seconds."""

    PSS_EVERY_S = 5.0

    def __init__(self) -> None:
        self.peak = 0.0
        self.peak_pss = 0.0  # proportional set size: shared pages split among their processes
        self.cpu = 0.0
        self._page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
        self._other: set[str] = set()  # pids of processes that are not Ray's, not read again
        self._ours: dict[str, bool] = {}  # pid -> whether it descends from this benchmark
        self._me = str(os.getpid())
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _descends(self, pid: str) -> bool:
        """Whether `pid` descends from this benchmark's process: another Ray session on the host
        (a test suite, another benchmark) is not this run's."""
        seen = []
        while pid not in self._ours and pid not in ("0", "1", self._me):
            seen.append(pid)
            try:
                pid = (Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[1]
            except (OSError, IndexError):
                pid = "0"
        ours = self._ours.get(pid, pid == self._me)
        for p in seen:
            self._ours[p] = ours
        return ours

    def _scan(self) -> tuple[float, list[Path]]:
        """The RSS sum of the ray:: processes (MiB), and those processes with the raylet and GCS."""
        procs: dict[str, tuple[str, int]] = {}  # pid -> (parent pid, RSS KiB)
        daemons: list[Path] = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit() or d.name in self._other:
                continue
            try:
                cmd = (d / "cmdline").read_bytes()
                # a Ray worker's command line is its script's path until it sets its title; another
                # session's processes are not this run's (the set is emptied every 30 s: pids are
                # reused, 32k of them, and a run starts a Stan process per fit)
                if b"ray" not in cmd or not self._descends(d.name):
                    self._other.add(d.name)
                    continue
                if cmd.startswith(b"ray::"):
                    parent = (d / "stat").read_text().rsplit(")", 1)[1].split()[1]
                    rss = int((d / "statm").read_text().split()[1]) * self._page_kib
                    procs[d.name] = (parent, rss)
                elif _RAY_DAEMONS.search(cmd.split(b"\0", 1)[0]):
                    daemons.append(d)
            except (OSError, IndexError, ValueError):
                pass
        total = sum(rss for parent, rss in procs.values() if parent not in procs) / 1024
        return total, [Path("/proc") / pid for pid in procs] + daemons

    @staticmethod
    def _pss(paths: list[Path]) -> float:
        """The PSS sum of these processes (MiB)."""
        pss = 0  # KiB
        for d in paths:
            try:
                for line in (d / "smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
                        break
            except (OSError, ValueError):
                pass
        return pss / 1024

    def _run(self) -> None:
        last_pss, rss_then = float("-inf"), 0.0  # when PSS was read last, and the RSS peak then
        forgot = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now - forgot >= 30:
                self._other.clear()
                self._ours.clear()
                forgot = now
            rss, paths = self._scan()
            self.peak = max(self.peak, rss)
            if now - last_pss >= self.PSS_EVERY_S or (rss > rss_then * 1.01 and now - last_pss >= 1.0):
                self.peak_pss = max(self.peak_pss, self._pss(paths))
                last_pss, rss_then = now, self.peak  # read again once a sample passes it by 1%
            self._stop.wait(0.5)
        self.cpu = time.thread_time()

    def __enter__(self) -> PeakWorkers:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


class Stolen:
    """The share of `cpus`' time that the hypervisor gave to other guests while the block ran
    (`steal` in /proc/stat; nan where there is none): a run on a shared VM takes longer in wall
    time for the same task CPU, and its efficiency drops by about that share."""

    def __init__(self, cpus: list[int]) -> None:
        self.cpus, self.share = {f"cpu{c}" for c in cpus}, float("nan")

    def _ticks(self) -> tuple[int, int]:
        steal = total = 0
        try:
            lines = Path("/proc/stat").read_text().splitlines()
        except OSError:
            return 0, 0
        for line in lines:
            name, *fields = line.split()
            if name in self.cpus:
                v = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                steal, total = steal + v[7], total + sum(v)
        return steal, total

    def __enter__(self) -> Stolen:
        self._start = self._ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        (s0, t0), (s1, t1) = self._start, self._ticks()
        self.share = (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")


def demo(out: Path, items: int, days: int) -> None:
    """Demo data written by a child process: its memory does not count as the driver's peak."""
    code = (
        "from nova_ray.demo import generate_demo; "
        f"generate_demo({str(out)!r}, items={items}, days={days}, seed=7)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _in_child(call: str, env: dict[str, str] | None = None) -> Any:
    """`call` (an expression on this module's functions) evaluated in a child process, whose
    memory is not the benchmark's (`env`: more environment for it); its JSON result. The child's
    `T0` is taken before its imports."""
    code = (
        "import time; t0 = time.perf_counter(); "
        f"import sys, json; sys.path.insert(0, {str(Path(__file__).parent)!r}); from pathlib import Path; "
        f"import scale; scale.T0 = t0; print(json.dumps(scale.{call}))"
    )
    env = {**os.environ, **(env or {})}
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


def nova_ray_run(
    d: Path, cpus: int, horizon: int, data: str = "demand.parquet", out: str = "", full_refit: bool = False,
    **kw: Any,
) -> dict[str, Any]:
    """nova-ray's run on `d / data` (output under `d / out`): `wall` seconds of the run (from the
    child's start, its imports included, as a user's `nova-ray forecast` pays them), task `cpu`
    seconds, `stages` seconds, warm items and the process's peak RSS `driver` (MiB). Run by
    `_in_child`, each in a fresh driver: what the allocators kept from a smaller run would count
    in a larger one, and a rerun pays Python's start and imports as a user's does."""
    t0 = T0 if T0 is not None else time.perf_counter()
    from nova_ray.pipeline import run_forecast

    s = run_forecast(_cfg(d / data, d / out, cpus, horizon=horizon, **kw), full_refit=full_refit)
    return {
        "wall": time.perf_counter() - t0,
        "cpu": s.cpu_seconds,
        "stages": s.stage_seconds,
        "warm": s.warm_items,
        "driver": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def timed_child(call: str) -> tuple[dict[str, Any], float]:
    """`_in_child(call)` and the seconds of the whole child process (start and imports included)."""
    t0 = time.perf_counter()
    r = _in_child(call)
    return r, time.perf_counter() - t0


def statsforecast_child(data: Path, horizon: int, cpus: int, tail: int = 0) -> tuple[float, float]:
    """`statsforecast_time` in a child process (its memory is not the driver's): seconds of its
    forecast call, and of the whole process (Python's start, imports, reading the data)."""
    from nova_ray.distributed import THREAD_ENV

    t0 = time.perf_counter()  # one BLAS/OpenMP thread per process, as nova-ray's workers have
    forecast = _in_child(f"statsforecast_time(Path({str(data)!r}), {horizon}, {cpus}, {tail})", THREAD_ENV)
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


def statsforecast_time(data: Path, horizon: int, cpus: int, tail: int = 0) -> float:
    """StatsForecast on the series nova-ray fits (summed over sites, gaps as zeros); `tail`: on
    each series' last `tail` periods only (nova-ray searches the orders and forms on its
    `search_window`, 730 days, and re-filters the whole series with the model found)."""
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
    if tail:
        df = df.groupby("unique_id", sort=False).tail(tail)
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
        "--repeat",
        type=int,
        default=1,
        help="runs of the StatsForecast comparison (the fastest counts) and cold/warm pairs (median ratio)",
    )
    ap.add_argument("--skip-warm", action="store_true", help="no cold vs warm rerun (nor two nodes)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from nova_ray.pipeline import run_forecast

    console = Console(width=160)
    have = sorted(os.sched_getaffinity(0))
    if len(have) < args.cpus:
        sys.exit(f"--cpus {args.cpus}: this process may use only {len(have)} CPUs")
    if len(have) > args.cpus:  # the runs, Ray's processes and StatsForecast inherit it: the
        os.sched_setaffinity(0, have[: args.cpus])  # LSTM actor (0 CPUs reserved) gets no spare core
        console.print(f"pinned to CPUs {have[: args.cpus]} of the {len(have)} this process may use")
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
        "stolen",
        "driver peak MiB",
        "workers peak MiB",
        "workers PSS MiB",
        "stat fit s",
        "SF forecast s",
        "fit/SF",
        "SF 730 d s",
        "fit/SF 730",
        "stat process s",
        "SF process s",
        "run/SF",
    ):
        table.add_column(c)
    root = Path(tempfile.mkdtemp(prefix="nova-ray-scale-"))
    atexit.register(shutil.rmtree, root, True)  # demo data and outputs: 83 MB at 2000 items
    for n in sizes:
        d = root / f"demo{n}"
        demo(d, n, args.days)
        with PeakWorkers() as peak, Stolen(sorted(os.sched_getaffinity(0))) as stolen:
            r = _in_child(f"nova_ray_run(Path({str(d)!r}), {args.cpus}, {args.horizon})")
        wall, cpu, driver = r["wall"], r["cpu"], r["driver"]
        fit = sf = sf730 = run = sfp = float("nan")
        if not args.skip_statsforecast and (not args.compare_max or n <= args.compare_max):
            fits, runs, sfs, sf730s, sfps = [], [], [], [], []
            for k in range(max(1, args.repeat)):
                # a process each, as StatsForecast's: Python's start and the imports on both sides
                st, whole = timed_child(
                    f"nova_ray_run(Path({str(d)!r}), {args.cpus}, {args.horizon}, out='stat{k}', "
                    "models='arima,ets,theta,naive', backtest_windows=0, exog=False)"
                )  # no factors: StatsForecast fits the series alone too
                runs.append(whole)
                fits.append(st["stages"]["start Ray"] + st["stages"]["fit and backtest"])
                f, p = statsforecast_child(d / "demand.parquet", args.horizon, args.cpus)
                sfs.append(f)
                sfps.append(p)
                sf730s.append(statsforecast_child(d / "demand.parquet", args.horizon, args.cpus, 730)[0])
            fit, sf, sf730, run, sfp = min(fits), min(sfs), min(sf730s), min(runs), min(sfps)
            if len(runs) > 1:
                console.print(
                    f"{n} items: stat fit stage {[round(x) for x in fits]} s, whole processes "
                    f"{[round(x) for x in runs]} s; StatsForecast forecast calls "
                    f"{[round(x) for x in sfs]} s (730 days: {[round(x) for x in sf730s]} s), "
                    f"processes {[round(x) for x in sfps]} s"
                )
        table.add_row(
            str(n),
            f"{wall:.0f}",
            f"{n / wall:.2f}",
            f"{cpu / args.cpus / wall:.2f}",
            f"{cpu / args.cpus / r['stages']['fit and backtest']:.2f}",
            f"{stolen.share:.1%}",
            f"{driver:.0f}",
            f"{peak.peak:.0f}",
            f"{peak.peak_pss:.0f}",
            f"{fit:.0f}",
            f"{sf:.0f}",
            f"{fit / sf:.2f}",
            f"{sf730:.0f}",
            f"{fit / sf730:.2f}",
            f"{run:.0f}",
            f"{sfp:.0f}",
            f"{run / sfp:.2f}",
        )
        console.print(
            f"{n} items: stages {r['stages']}; the memory sampler took {peak.cpu:.1f} CPU s "
            f"({peak.cpu / args.cpus / wall:.1%} of the cores' time); the hypervisor took "
            f"{stolen.share:.1%} of the cores' time (efficiency over the time left: "
            f"{cpu / args.cpus / wall / (1 - stolen.share):.2f})"
        )
        console.print(table)
    if args.skip_warm:
        return
    # cold vs warm: one more day of data at the smallest size
    n = sizes[0]
    d = root / f"warm{n}"
    demo(d, n, args.days + 1)
    full = pd.read_parquet(d / "demand.parquet")
    full[full["date"] < full["date"].max()].to_parquet(d / "day1.parquet")
    # each run a process of its own, timed from the outside, as a nightly `nova-ray forecast` is;
    # with --repeat, pairs of a cold run and its warm rerun (each pair its own results and model
    # store), the median ratio counts
    colds, warms, ratios = [], [], []
    run = f"nova_ray_run(Path({str(d)!r}), {args.cpus}, {args.horizon}"
    for k in range(max(1, args.repeat)):
        _, cold = timed_child(f"{run}, 'day1.parquet', out='pair{k}')")
        w, warm = timed_child(f"{run}, out='pair{k}')")
        colds.append(cold)
        warms.append(warm)
        ratios.append(cold / warm)
    if len(ratios) > 1:
        console.print(
            f"cold vs warm pairs: cold {[round(x, 1) for x in colds]} s, "
            f"warm {[round(x, 1) for x in warms]} s, ratios {[round(x, 1) for x in ratios]}"
        )
    t2 = Table(title="incremental and multi-node")
    for c in ("comparison", "baseline s", "s", "ratio"):
        t2.add_column(c)
    t2.add_row(
        f"warm rerun (+1 day, {w['warm']}/{n} items warm) vs cold, whole processes"
        + (f" (median of {len(ratios)} pairs)" if len(ratios) > 1 else ""),
        f"{statistics.median(colds):.0f}",
        f"{statistics.median(warms):.0f}",
        f"{statistics.median(ratios):.1f}x faster",
    )
    if not args.skip_nodes:
        import ray
        from ray.cluster_utils import Cluster

        c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
        c.add_node(num_cpus=1)
        c.wait_for_nodes()
        two = run_forecast(
            _cfg(d / "day1.parquet", d / "two", 1, horizon=args.horizon, address=c.address), full_refit=True
        )
        ray.shutdown()
        c.shutdown()
        one = run_forecast(
            _cfg(d / "day1.parquet", d / "one", args.cpus, horizon=args.horizon), full_refit=True
        )
        # the fit stage: the one-node run starts and stops its own Ray, the two raylets run
        # already (and its workers set up a runtime env); both raylets share this host's cores
        fit = "fit and backtest"
        t2.add_row(
            f"2 raylets x 1 CPU (one host) vs one node x {args.cpus} CPUs ({n} items), fit stage",
            f"{one.stage_seconds[fit]:.0f}",
            f"{two.stage_seconds[fit]:.0f}",
            f"{one.stage_seconds[fit] / two.stage_seconds[fit]:.2f}x",
        )
        # whole runs without Ray's start (a local start in one, a connection in the other)
        one_s, two_s = (r.wall_seconds - r.stage_seconds["start Ray"] for r in (one, two))
        t2.add_row(
            "the same, whole runs less Ray's start (its stop in the one-node run only)",
            f"{one_s:.0f}",
            f"{two_s:.0f}",
            f"{one_s / two_s:.2f}x",
        )
    console.print(t2)


if __name__ == "__main__":
    main()
