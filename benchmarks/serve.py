"""Serving benchmark: requests/s and p50/p99 latency of /api/v1/forecasts?item_id=..., with and without a
concurrent publish (a second run synced into the served folder mid-benchmark, then swapped in live).

    python benchmarks/serve.py [--items 2000] [--days 30] [--duration 15] [--threads 4]

Builds two synthetic runs (items x days x 8 models + ensemble) with the real ResultWriter, syncs the
first to a folder, serves it with `python -m nova_ray.serve.app` in a subprocess and queries it over
HTTP on loopback from client threads (random item ids). Client and server share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from nova_ray.io.publish import sync_run
from nova_ray.io.results import ResultWriter

MODELS = ["naive", "arima", "ets", "theta", "croston", "tsb", "prophet", "lstm", "ensemble"]


def write_run(root: Path, run_id: str, run_date: date, items: int, days: int, seed: int) -> int:
    """A synthetic complete run; returns the number of forecast rows."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"IT-{n:05d}" for n in range(items)], dtype=object)
    n = items * len(MODELS) * days
    mean = rng.gamma(2.0, 5.0, n)
    dates = np.array([run_date + timedelta(days=d + 1) for d in range(days)], dtype="datetime64[D]")
    fc = pa.table({
        "item_id": np.repeat(ids, len(MODELS) * days),
        "model": np.tile(np.repeat(np.array(MODELS, dtype=object), days), items),
        "date": np.tile(dates, items * len(MODELS)),
        "forecast": mean, "lo_80": mean * 0.7, "hi_80": mean * 1.3, "lo_95": mean * 0.5, "hi_95": mean * 1.5,
    })
    k = items * (len(MODELS) - 1)
    err = rng.random(k)
    metrics = pa.table({
        "item_id": np.repeat(ids, len(MODELS) - 1),
        "model": np.tile(np.array(MODELS[:-1], dtype=object), items),
        "window": np.zeros(k, np.int32), "mae": err, "rmse": err, "smape": err, "mape": err, "mase": err,
        "bias": err, "wape": err, "coverage_80": err, "coverage_95": err, "n": np.full(k, days, np.int32),
    })
    weights = metrics.select(["item_id", "model"]).append_column("weight", pa.array(err)) \
        .append_column("backtest_mae", pa.array(err)).append_column("windows", pa.array(np.ones(k, np.int32)))
    classes = np.array(["smooth", "erratic", "intermittent", "lumpy"], dtype=object)
    items_t = pa.table({
        "item_id": ids, "demand_class": classes[np.arange(items) % 4], "adi": np.ones(items),
        "cv2": rng.random(items), "n_obs": np.full(items, 365, np.int32), "zero_share": rng.random(items),
        "models": [",".join(MODELS[:-1])] * items, "failed_models": [""] * items, "fallback": [False] * items,
        "notes": [""] * items, "params": ["{}"] * items, "cpu_seconds": rng.random(items),
    })
    meta = {"run_id": run_id, "model_version": "bench", "generated_at": f"{run_date}T06:00:00+00:00",
            "dataset_id": "synthetic"}
    w = ResultWriter(root, run_id, run_date, meta)
    tables = {"forecasts": fc, "metrics": metrics, "ensemble_weights": weights, "items": items_t}
    for kind, t in tables.items():
        w.write(kind, t)
    w.commit({"run_id": run_id, "models": MODELS}, {"items": items})
    return n


@dataclass
class Result:
    """Latencies and outcomes of one benchmark phase."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)

    def add(self, other: Result) -> None:
        self.seconds += other.seconds
        self.latencies += other.latencies
        self.errors += other.errors
        for k, v in other.runs.items():
            self.runs[k] = self.runs.get(k, 0) + v

    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def hammer(url: str, ids: list[str], rows_per_item: int, duration: float, threads: int,
           run_ids: set[str], during: threading.Thread | None = None) -> Result:
    """`threads` clients querying random items for `duration` seconds; `during` runs alongside."""
    res = Result("")
    lock = threading.Lock()
    stop = threading.Event()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        lat: list[float] = []
        errs: list[str] = []
        runs: dict[str, int] = {}
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = rng.choice(ids)
                    r = c.get("/api/v1/forecasts", params={"item_id": item})
                    dt = time.perf_counter() - t0
                    body = r.json()
                    ok = (r.status_code == 200 and body["run_id"] in run_ids
                          and body["data"][0]["item_id"] == item
                          and (body["total"], body["count"]) == (rows_per_item,) * 2)
                    if not ok:
                        errs.append(f"{r.status_code}: {r.text[:120]}")
                        continue
                    runs[body["run_id"]] = runs.get(body["run_id"], 0) + 1
                    lat.append(dt)
                except Exception as exc:  # every failure counts
                    errs.append(repr(exc))
        with lock:
            res.latencies += lat
            res.errors += errs
            for k, v in runs.items():
                res.runs[k] = res.runs.get(k, 0) + v

    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    if during is not None:
        during.start()
    time.sleep(duration)
    stop.set()
    for t in workers:
        t.join()
    res.seconds = time.perf_counter() - t0
    if during is not None:
        during.join()
    return res


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_run(url: str, run_id: str, timeout: float = 120) -> float:
    """Seconds until /health reports `run_id`."""
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=10) as c:
        while time.perf_counter() - t0 < timeout:
            try:
                r = c.get("/health")
                if r.status_code == 200 and r.json()["run_id"] == run_id:
                    return time.perf_counter() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"server did not load {run_id} within {timeout} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=2000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--duration", type=float, default=15.0, help="Seconds per phase (split into rounds).")
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2, help="Alternating baseline/publish windows per phase.")
    p.add_argument("--poll-seconds", type=float, default=1.0)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="nova-ray-bench-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        run_a, run_b = "20250601-benchaaa", "20250602-benchbbb"
        rows = write_run(base / "results-a", run_a, date(2025, 6, 1), a.items, a.days, 1)
        write_run(base / "results-b", run_b, date(2025, 6, 2), a.items, a.days, 2)
        served = base / "served"
        served.mkdir()  # sync never creates its target
        sync_run(base / "results-a", served)
        build_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in (served / "runs").rglob("*.parquet")) / 1e6
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(base / "server.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "nova_ray.serve.app", "--results", str(served),
                                   "--port", str(port), "--poll-seconds", str(a.poll_seconds),
                                   "--no-access-log"], stdout=log, stderr=log)
        try:
            startup = wait_run(url, run_a)
            ids = [f"IT-{n:05d}" for n in range(a.items)]
            per_item = len(MODELS) * a.days
            runs = {run_a, run_b}
            hammer(url, ids, per_item, 2.0, a.threads, runs)  # warm-up
            window = a.duration / a.rounds
            base_res, pub_res = Result("baseline (no publish)"), Result("with concurrent publish")
            syncs: list[float] = []
            swaps: list[float] = []
            for n in range(a.rounds):  # alternate, so background load hits both alike
                base_res.add(hammer(url, ids, per_item, window, a.threads, runs))
                root, rid = (base / "results-b", run_b) if n % 2 == 0 else (base / "results-a", run_a)

                def publish(root: Path = root, rid: str = rid) -> None:
                    time.sleep(window / 3)
                    t1 = time.perf_counter()
                    sync_run(root, served, keep=1)
                    syncs.append(time.perf_counter() - t1)
                    swaps.append(wait_run(url, rid))

                pub = threading.Thread(target=publish)
                pub_res.add(hammer(url, ids, per_item, window, a.threads, runs, pub))
            health = httpx.get(f"{url}/health").json()
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        print(f"\nnova-ray serve benchmark: {a.items} items x {a.days} days x {len(MODELS)} models = "
              f"{rows:,} forecast rows ({size_mb:.1f} MB Parquet), {per_item} rows per response")
        print(f"{os.cpu_count()} CPUs shared by server (1 uvicorn worker, access log off) and {a.threads} "
              f"client threads; {a.duration:.0f} s per phase in {a.rounds} alternating rounds; "
              f"build+first sync {build_s:.1f} s; "
              f"server start to first run loaded {startup:.1f} s")
        hdr = f"{'scenario':<26}{'requests':>9}{'errors':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}" \
              f"{'max ms':>8}{'req/s ratio':>12}{'p99 ratio':>10}  runs served"
        print(hdr)
        print("-" * len(hdr))
        for r in (base_res, pub_res):
            ratio = r.rps() / base_res.rps()
            p99r = r.pct(99) / base_res.pct(99)
            served_by = ", ".join(f"{k[-3:]}:{v}" for k, v in sorted(r.runs.items()))
            print(f"{r.name:<26}{len(r.latencies):>9}{len(r.errors):>7}{r.rps():>8.0f}{r.pct(50):>8.2f}"
                  f"{r.pct(99):>8.2f}{max(r.latencies) * 1000:>8.1f}{ratio:>12.2f}{p99r:>10.2f}  {served_by}")
        print(f"publishes: {len(syncs)} syncs of a {size_mb:.1f} MB run took "
              f"{', '.join(f'{x:.2f}' for x in syncs)} s; the server answered from the new run "
              f"{', '.join(f'{x:.2f}' for x in swaps)} s later "
              f"(poll {a.poll_seconds} s); health last_error: {health['last_error']}")
        errors = base_res.errors + pub_res.errors
        if errors:
            print(f"first errors: {errors[:3]}")
            sys.exit(1)


if __name__ == "__main__":
    main()
