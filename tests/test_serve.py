"""Tests for the read-only API: the real server in a subprocess, queried over HTTP on loopback.

The module's tests run in order against one server: 503 before any run, run A, bad parameters,
a swap to run B under load, then B's recommendations and a broken third run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import uvicorn
from typer.testing import CliRunner

import nova_ray.cli.serve  # noqa: F401  (registers the command)
from nova_ray.cli import app as cli_app
from nova_ray.io.publish import sync_run
from nova_ray.io.results import ResultWriter
from nova_ray.schemas import TABLES
from nova_ray.serve.app import MAX_LIMIT, create_app

ITEMS = ["A-1", "B-2", "C-3", "D 4"]
MODELS = ["ensemble", "naive", "theta"]
DAYS = 5
A, B = "20250301-aaaa", "20250302-bbbb"
VALUE = {A: 1.0, B: 2.0}
DAY = {A: date(2025, 3, 1), B: date(2025, 3, 2)}
RECOMMENDATIONS = pa.schema([("item_id", pa.string()), ("site", pa.string()), ("order_qty", pa.float64()),
                             ("urgency", pa.string())])
HEAVY = ["ray", "tensorflow", "prophet", "pmdarima", "statsforecast", "nova_ray.models", "nova_ray.schemas"]


def write_run(root: Path, run_id: str, run_date: date, value: float, recommendations: bool = False) -> None:
    """A small complete run via the real ResultWriter; every forecast of the run equals `value`."""
    rows = [(i, m, run_date + timedelta(days=d + 1)) for i in ITEMS for m in MODELS for d in range(DAYS)]
    v = [value] * len(rows)
    fc = pa.table({"item_id": [r[0] for r in rows], "model": [r[1] for r in rows],
                   "date": [r[2] for r in rows], "forecast": v, "lo_80": v, "hi_80": v, "lo_95": v,
                   "hi_95": v})
    k = len(ITEMS) * 2
    f = [1.0] * k
    metrics = pa.table({"item_id": [i for i in ITEMS for _ in range(2)],
                        "model": ["naive", "theta"] * len(ITEMS), "window": [0] * k, "mae": f, "rmse": f,
                        "smape": [float("nan")] * k, "mape": f, "mase": f, "bias": f, "wape": f,
                        "coverage_80": f, "coverage_95": f, "n": [DAYS] * k})
    m = len(ITEMS)
    items = pa.table({"item_id": ITEMS, "demand_class": ["smooth", "lumpy", "smooth", "erratic"],
                      "adi": [1.0] * m, "cv2": [0.1] * m, "n_obs": [100] * m, "zero_share": [0.0] * m,
                      "models": ["naive"] * m, "failed_models": [""] * m, "fallback": [False] * m,
                      "notes": [""] * m, "params": ["{}"] * m, "cpu_seconds": [0.1] * m})
    meta = {"run_id": run_id, "model_version": "test", "generated_at": f"{run_date}T06:00:00+00:00",
            "dataset_id": "tiny"}
    with pytest.MonkeyPatch.context() as mp:
        if recommendations:
            mp.setitem(TABLES, "recommendations", (RECOMMENDATIONS, None))
        w = ResultWriter(root, run_id, run_date, meta)
        w.write("forecasts", fc)
        w.write("metrics", metrics)
        w.write("items", items)
        if recommendations:
            w.write("recommendations", pa.table({  # most urgent first, as `nova-ray recommend` writes
                "item_id": ["C-3", "A-1", "A-1", "B-2"], "site": ["REC", "SSA", "REC", "SSA"],
                "order_qty": [5.0, 10.0, 3.0, 0.0], "urgency": ["critical", "high", "low", "ok"]}))
        w.commit({"run_id": run_id}, {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("serve")
    for rid in (A, B):
        write_run(base / rid, rid, DAY[rid], VALUE[rid], recommendations=rid == B)
    served = base / "served"
    served.mkdir()
    port = free_port()
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "nova_ray.serve.app", "--results", str(served), "--port",
                             str(port), "--poll-seconds", "0.1", "--no-access-log"], stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.get("/health")
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "server.log").read_text()) from None
            time.sleep(0.05)
    yield {"base": base, "served": served, "client": client, "url": f"http://127.0.0.1:{port}"}
    client.close()
    proc.terminate()
    proc.wait(timeout=10)
    log.close()


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = client.get("/health")
        except httpx.TransportError:  # not listening yet
            r = None
        if r is not None and r.status_code == 200 and r.json()["run_id"] == run_id:
            return r.json()
        time.sleep(0.05)
    raise AssertionError(f"server never loaded {run_id}: {client.get('/health').text}")


BLOCKER = """
import sys
for name in BLOCKED:
    sys.modules[name] = None  # what Python does for a module that is not installed: import fails
"""


def test_serving_side_runs_without_heavy_libraries(tmp_path: Path) -> None:
    """A serving box: ray and the model libraries cannot be imported, yet sync, load and the CLI work."""
    write_run(tmp_path / "results", A, DAY[A], 1.0)
    blocked = HEAVY + ["statsmodels", "sklearn", "holidays", "keras", "torch"]
    code = BLOCKER.replace("BLOCKED", repr(sorted(blocked))) + f"""
import json
import os
import nova_ray.serve.app, nova_ray.serve.store, nova_ray.io.publish
light = sorted(m for m, v in sys.modules.items() if v is not None)
from nova_ray.io.publish import sync_run
from nova_ray.serve.store import RunStore
os.makedirs({str(tmp_path / "served")!r})
sync_run({str(tmp_path / "results")!r}, {str(tmp_path / "served")!r})
store = RunStore({str(tmp_path / "served")!r})
assert store.refresh(), store.last_error
nova_ray.serve.app.create_app(store, watch=False)
from nova_ray.cli import app
import nova_ray.cli.serve, nova_ray.cli.sync
print(json.dumps([light, store.current.run_id]))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    mods, run_id = json.loads(proc.stdout)
    assert run_id == A
    assert [m for m in HEAVY if m in mods] == []


def test_503_before_a_run_exists(srv: dict[str, Any]) -> None:
    c = srv["client"]
    r = c.get("/health")
    assert r.status_code == 503
    body = r.json()
    assert body["run_id"] is None and "no published run" in body["last_error"]
    srv["waiting_keys"] = set(body)  # the 200 body has the same keys (it had six more)
    r = c.get("/api/v1/forecasts")
    assert r.status_code == 503 and "no run loaded yet" in r.json()["detail"]


def test_endpoints_filters_and_paging(srv: dict[str, Any]) -> None:
    c = srv["client"]
    sync_run(srv["base"] / A, srv["served"])
    health = wait_for_run(c, A)
    assert health["status"] == "ok" and health["last_error"] is None and health["loaded_at"]
    assert health["generated_at"] == "2025-03-01T06:00:00+00:00" and health["layout"] == "sync"
    assert set(health) == srv["waiting_keys"]

    def get(path: str, **params: Any) -> dict[str, Any]:
        r = c.get(path, params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["run_id"] == A and body["count"] == len(body["data"])
        return body

    full = get("/api/v1/forecasts")
    assert full["total"] == len(ITEMS) * len(MODELS) * DAYS and full["limit"] == 500
    assert set(full["data"][0]) >= {"item_id", "model", "date", "forecast", "lo_80", "hi_95"}
    one = get("/api/v1/forecasts", item_id="B-2")
    assert one["total"] == len(MODELS) * DAYS and {d["item_id"] for d in one["data"]} == {"B-2"}
    assert get("/api/v1/forecasts", item_id="D 4")["total"] == len(MODELS) * DAYS
    two = get("/api/v1/forecasts", item_id=["C-3", "A-1"], model="naive")
    assert two["total"] == 2 * DAYS and {(d["item_id"], d["model"]) for d in two["data"]} == {
        ("A-1", "naive"), ("C-3", "naive")}
    rng = get("/api/v1/forecasts", item_id="A-1", model="theta", date_from="2025-03-02", date_to="2025-03-03")
    assert [d["date"] for d in rng["data"]] == ["2025-03-02", "2025-03-03"]
    assert get("/api/v1/forecasts", date_from="2025-03-05")["total"] == len(ITEMS) * len(MODELS) * 2
    assert get("/api/v1/forecasts", item_id="nope")["total"] == 0
    assert get("/api/v1/forecasts", model="lstm")["total"] == 0
    pages = [get("/api/v1/forecasts", limit=7, offset=o) for o in range(0, full["total"], 7)]
    assert [d for p in pages for d in p["data"]] == full["data"]
    pointer = (srv["served"] / "last_updated.json").read_bytes()  # a page's version: its publish
    assert {p["version"] for p in pages} == {health["version"]} == {hashlib.sha256(pointer).hexdigest()[:16]}
    assert pages[-1]["count"] == (full["total"] % 7 or 7)
    beyond = get("/api/v1/forecasts", offset=10_000)
    assert beyond["count"] == 0 and beyond["total"] == full["total"]
    # no site information in run A: a site filter is a 400 that says so
    r = c.get("/api/v1/forecasts", params={"site": "SSA"})
    assert r.status_code == 400 and "no site information" in r.json()["detail"] and r.json()["run_id"] == A
    r = c.get("/api/v1/recommendations")
    assert r.status_code == 404 and "has no recommendations" in r.json()["detail"]
    met = get("/api/v1/metrics", model="theta")
    assert met["total"] == len(ITEMS) and all(d["smape"] is None for d in met["data"])
    assert get("/api/v1/metrics", item_id="A-1")["total"] == 2
    items = get("/api/v1/items", demand_class="smooth")
    assert [d["item_id"] for d in items["data"]] == ["A-1", "C-3"]
    assert get("/api/v1/items", limit=1, offset=3)["data"][0]["item_id"] == "D 4"


@pytest.mark.parametrize(("query", "message"), [
    ("limit=0", "'limit'"),
    (f"limit={MAX_LIMIT + 1}", f"less than or equal to {MAX_LIMIT}"),
    ("offset=-1", "'offset'"),
    ("limit=ten", "'limit'"),
    ("date_from=2025-02-30", "'date_from'"),
    ("date_to=yesterday", "'date_to'"),
    ("date_from=0", "'date_from': expected a date YYYY-MM-DD"),  # was 1970-01-01
    ("date_to=1735689600", "expected a date YYYY-MM-DD"),  # was Unix seconds
    ("date_from=2025-01-01T00:00:00%2B05:00", "expected a date YYYY-MM-DD"),
    ("date_from=2025-03-05&date_to=2025-03-01", "after date_to"),
    ("model=../../etc", "not allowed"),
    ("model=" + "m" * 65, "'model'"),
    ("item=A-1", "unknown query parameter 'item'"),
    ("item_id=%01bad", "'item_id'"),
    ("item_id=" + "x" * 129, "'item_id'"),
    ("&".join(f"item_id=i{n}" for n in range(201)), "at most 200"),
    ("site=", "'site'"),
])
def test_bad_parameters_are_400_with_a_message(srv: dict[str, Any], query: str, message: str) -> None:
    r = srv["client"].get(f"/api/v1/forecasts?{query}")
    assert r.status_code == 400, r.text
    assert message in r.json()["detail"]


def test_bad_parameters_on_other_endpoints(srv: dict[str, Any]) -> None:
    c = srv["client"]
    for path in ("/api/v1/metrics?window=1", "/api/v1/items?demand_class=a%20b", "/api/v1/metrics?limit=-5",
                 "/api/v1/recommendations?urgency=<script>"):
        r = c.get(path)
        assert r.status_code == 400 and r.json()["detail"], (path, r.text)
    # values outside a column's vocabulary, and a single-valued parameter given twice, are 400s
    # naming what is accepted (they used to answer an empty list, or the last value)
    for path, message in (
        ("/api/v1/recommendations?urgency=bogus", "'critical', 'high', 'medium' or 'ok'"),
        ("/api/v1/recommendations?urgency=CRITICAL", "'critical', 'high', 'medium' or 'ok'"),
        ("/api/v1/items?demand_class=Smooth", "'smooth', 'erratic', 'intermittent', 'lumpy' or 'zero'"),
        ("/api/v1/forecasts?model=ensemble&model=theta", "'model' given more than once"),
        ("/api/v1/forecasts?limit=1&limit=2", "'limit' given more than once"),
    ):
        r = c.get(path)
        assert r.status_code == 400 and message in r.json()["detail"], (path, r.text)
    theta = c.get("/api/v1/forecasts", params={"model": "theta", "item_id": ["A-1", "B-2"]})
    assert theta.json()["total"] == 2 * DAYS
    # /health ignores a monitor's cache-busting parameter; no /docs page (it loads scripts from the web)
    assert c.get("/health?x=1").status_code == c.get("/health").status_code == 200
    assert c.get("/docs").status_code == 404 and c.get("/openapi.json").json()["paths"]
    api = c.get("/openapi.json").json()  # the errors the API answers, not FastAPI's 422
    for path in ("/api/v1/forecasts", "/api/v1/recommendations", "/api/v1/metrics", "/api/v1/items"):
        assert set(api["paths"][path]["get"]["responses"]) == {"200", "400", "404", "503"}, path
    assert "HTTPValidationError" not in json.dumps(api)
    ids = [op["operationId"] for ops in api["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) and set(api["paths"]["/health"]) == {"get", "head"}  # for generators
    # a method the API does not take: 405 with the Allow header; HEAD /health for load balancers
    r = c.post("/api/v1/forecasts")
    assert r.status_code == 405 and r.headers["allow"] == "GET" and r.json()["detail"]
    assert c.head("/health").status_code == c.get("/health").status_code
    r = c.post("/health")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_new_run_swaps_in_under_load(srv: dict[str, Any]) -> None:
    c = srv["client"]
    stop = threading.Event()
    failures: list[str] = []
    seen: dict[str, int] = {A: 0, B: 0}
    lock = threading.Lock()

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=srv["url"], timeout=10) as client:
            while not stop.is_set():
                try:
                    r = client.get("/api/v1/forecasts", params={"item_id": rng.choice(ITEMS)})
                    body = r.json()
                    rid = body.get("run_id")
                    ok = (r.status_code == 200 and rid in VALUE and body["total"] == len(MODELS) * DAYS
                          and all(d["forecast"] == VALUE[rid] and d["date"] > str(DAY[rid])
                                  for d in body["data"]))
                    if not ok:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                    else:
                        with lock:
                            seen[rid] += 1
                except Exception as exc:  # any transport error is a failed request
                    failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        sync_run(srv["base"] / B, srv["served"], keep=1)
        wait_for_run(c, B)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen[A] > 0 and seen[B] > 0
    assert not (srv["served"] / "runs" / A).exists()  # --keep 1 after the pointer moved


def test_recommendations_and_site_filters(srv: dict[str, Any]) -> None:
    c = srv["client"]
    wait_for_run(c, B)

    def get(path: str, **params: Any) -> list[dict[str, Any]]:
        r = c.get(path, params=params)
        assert r.status_code == 200 and r.json()["run_id"] == B, r.text
        return r.json()["data"]

    assert [d["urgency"] for d in get("/api/v1/recommendations")] == ["critical", "high", "low", "ok"]
    assert [d["site"] for d in get("/api/v1/recommendations", item_id="A-1")] == ["SSA", "REC"]
    assert [d["urgency"] for d in get("/api/v1/recommendations", limit=2, offset=1)] == ["high", "low"]
    high = get("/api/v1/recommendations", urgency="high")
    assert [(d["item_id"], d["site"]) for d in high] == [("A-1", "SSA")]
    assert {d["item_id"] for d in get("/api/v1/recommendations", site="REC")} == {"A-1", "C-3"}
    assert get("/api/v1/recommendations", site="REC", item_id="C-3")[0]["urgency"] == "critical"
    fc = get("/api/v1/forecasts", site="SSA")
    assert {d["item_id"] for d in fc} == {"A-1", "B-2"} and len(fc) == 2 * len(MODELS) * DAYS
    assert {d["item_id"] for d in get("/api/v1/forecasts", site="SSA", item_id=["B-2", "C-3"])} == {"B-2"}
    assert get("/api/v1/forecasts", site="NOWHERE") == []
    assert [d["item_id"] for d in get("/api/v1/items", site="REC")] == ["A-1", "C-3"]


def test_a_run_whose_sites_are_all_blank_has_no_site_filter() -> None:
    """Recommendations from a stock file without sites have `site` '' on every row: no site
    information, so a site filter is the documented 400, not an empty list."""
    from nova_ray.serve.store import Kind, QueryError, Run, _site_items

    kinds = {"recommendations": Kind.build(pa.table({"item_id": ["A-1", "B-2"], "site": ["", ""],
                                                     "urgency": ["ok", "ok"]}), keep_order=True),
             "items": Kind.build(pa.table({"item_id": ["A-1", "B-2"]}))}
    run = Run(A, "2025-03-01", None, None, "now", "results", kinds, site_items=_site_items(kinds))
    assert run.site_items is None
    for kind in ("recommendations", "items"):
        with pytest.raises(QueryError, match="has no site information"):
            run.select(kind, site="Salvador")
    assert run.select("recommendations").num_rows == 2


def test_broken_new_run_keeps_the_old_one_serving(srv: dict[str, Any]) -> None:
    c, served = srv["client"], srv["served"]
    original = (served / "last_updated.json").read_bytes()
    pointer = json.loads(original)
    broken = pointer | {"run_id": "20250303-broken", "run_path": "runs/20250303-broken",
                        "manifest": "runs/20250303-broken/manifest.json"}
    tmp = served / ".ptr.tmp"
    tmp.write_text(json.dumps(broken))
    os.replace(tmp, served / "last_updated.json")
    deadline = time.monotonic() + 10
    while (h := c.get("/health").json())["last_error"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert h["run_id"] == B and "manifest missing" in h["last_error"]
    r = c.get("/api/v1/forecasts", params={"item_id": "A-1"})
    assert r.status_code == 200 and r.json()["run_id"] == B
    tmp.write_bytes(original)  # the served run's own pointer back, byte for byte: the error clears
    os.replace(tmp, served / "last_updated.json")
    deadline = time.monotonic() + 10
    while c.get("/health").json()["last_error"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_results_folder_layout_swaps_when_a_new_run_commits(tmp_path: Path) -> None:
    """Serving the writer's folder directly (pointer in metadata/), with uvicorn in a thread."""
    root = tmp_path / "ml_results"
    write_run(root, A, DAY[A], 1.0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(str(root), poll_seconds=0.05), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_for_run(client, A)
            assert client.get("/health").json()["layout"] == "results"
            write_run(root, "20250301-later", DAY[A], 3.0)  # same run date: partitions replaced in place
            wait_for_run(client, "20250301-later")
            body = client.get("/api/v1/forecasts", params={"item_id": "A-1", "limit": 2}).json()
            assert body["run_id"] == "20250301-later" and [d["forecast"] for d in body["data"]] == [3.0, 3.0]
            assert client.get("/health").json()["last_error"] is None
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_cors_lets_the_allowed_origins_pages_read_and_no_others(tmp_path: Path) -> None:
    """Over real HTTP: a page of an allowed origin gets Access-Control-Allow-Origin (and a
    preflight its GET); another origin, or a server without `cors`, gets none."""
    from nova_ray.serve.app import cors_origins

    root = tmp_path / "ml_results"
    write_run(root, A, DAY[A], 1.0)
    dash, other = "https://dash.example.com", "http://evil.example:8080"
    for cors in (cors_origins(f" {dash} ,"), ()):
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(str(root), poll_seconds=0.05, cors=cors),
                                               host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                wait_for_run(client, A)
                got = client.get("/api/v1/forecasts", params={"limit": 1}, headers={"Origin": dash})
                assert got.status_code == 200 and got.json()["run_id"] == A
                allowed = got.headers.get("access-control-allow-origin")
                assert allowed == (dash if cors else None)
                slash = client.get("/api/v1/forecasts/")  # a bare 307 redirect before
                assert slash.status_code == 404 and slash.json()["run_id"] == A
                got = client.get("/health", headers={"Origin": other})
                assert got.status_code == 200 and "access-control-allow-origin" not in got.headers
                pre = client.options("/api/v1/forecasts", headers={"Origin": dash,
                                                                   "Access-Control-Request-Method": "GET"})
                if cors:
                    assert pre.status_code == 200 and "GET" in pre.headers["access-control-allow-methods"]
                    assert "POST" not in pre.headers["access-control-allow-methods"]
                else:
                    assert "access-control-allow-origin" not in pre.headers
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    assert cors_origins("*") == ("*",) and cors_origins(None) == ()
    for bad in ("https://dash.example.com/", "dash.example.com", "https://dash.example.com/app"):
        with pytest.raises(ValueError, match="scheme://host"):
            cors_origins(bad)
    res = CliRunner().invoke(cli_app, ["serve", "--results", str(root), "--cors-origin", "https://d.example/"])
    assert res.exit_code == 2 and "--cors-origin" in res.output and "trailing" in res.output


def test_cli_serve_rejects_bad_options(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli_app, ["serve", "--results", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "no such folder" in res.output
    res = runner.invoke(cli_app, ["serve", "--results", "ftp://x/y"])
    assert res.exit_code == 2 and "unsupported location" in res.output
    res = runner.invoke(cli_app, ["serve", "--results", str(tmp_path), "--port", "0"])
    assert res.exit_code == 2
    # a poll interval of inf made /health a 500 (JSON has no Infinity) and killed the watcher
    res = runner.invoke(cli_app, ["serve", "--results", str(tmp_path), "--poll-seconds", "inf"])
    assert res.exit_code == 2 and "--poll-seconds" in res.output
    from nova_ray.serve.app import main
    from nova_ray.serve.store import RunStore

    with pytest.raises(ValueError, match="poll seconds must be finite"):
        RunStore(str(tmp_path), poll_seconds=float("inf"))
    for argv, message in ((["--poll-seconds", "nan"], "--poll-seconds must be > 0"),
                          (["--port", "70000"], "--port 70000 is not one"),
                          (["--results", "ftp://x/y"], "unsupported location")):
        with pytest.raises(SystemExit) as exc:  # `python -m nova_ray.serve.app`: one line, not a traceback
            main(["--results", str(tmp_path), *argv])
        assert exc.value.code == 2, message


def test_a_run_that_fails_to_load_is_retried_after_growing_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A published run with a missing file is not downloaded and verified again at every poll
    (steady CPU, and transfers on S3, for as long as nobody mends it): the pause before the next
    try doubles; a new pointer is tried at once."""
    from nova_ray.serve import store as store_mod

    root = tmp_path / "ml_results"
    write_run(root, A, DAY[A], 1.0)
    next((root / "forecasts").rglob("*.parquet")).unlink()
    loads = []
    real = store_mod.load_run
    monkeypatch.setattr(store_mod, "load_run", lambda loc: loads.append(1) or real(loc))
    s = store_mod.RunStore(str(root), poll_seconds=0.2)
    for _ in range(5):  # five polls within the first pause (0.4 s)
        assert s.refresh() is False
    assert len(loads) == 1 and s.current is None and s.last_error
    time.sleep(0.45)
    s.refresh()
    s.refresh()
    assert len(loads) == 2  # then 0.8 s
    write_run(root, B, DAY[B], 2.0)  # a new run: loaded at the next poll
    assert s.refresh() is True and s.current is not None and s.current.run_id == B and len(loads) == 3
    # the 1024th failure of one pointer (3.5 days of a broken publish): 2**1024 raised OverflowError
    # out of the watcher, which then served the old run for good
    raw = store_mod.read_pointer(s.location)[2]
    s._pointer, s._failed = b"another", (raw, 1023, 0.0)  # its 1023rd failure, its pause over

    def broken(loc):
        raise OSError("a file of the run is gone")

    monkeypatch.setattr(store_mod, "load_run", broken)
    assert s.refresh() is False and s._failed[1] == 1024 and "a file of the run is gone" in s.last_error
