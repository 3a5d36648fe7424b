"""A real two-node Ray cluster on this machine: `forecast --address` spreads tasks over both nodes
and gives the same results as the local path."""

import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from nova_ray import tmpdirs
from nova_ray.assemble import assemble
from nova_ray.cli import app
from nova_ray.config import load_config
from nova_ray.fit_stage import run_engine
from nova_ray.pipeline import engine_spec, load_series

pytestmark = pytest.mark.slow
ITEMS = "CAB-0002,ELE-0001,FIX-0001,FIX-0002,SAF-0001,STL-0002,CAB-0001,ELE-0002"


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # a temp dir of the test's own (Ray's default /tmp/ray kept every session's folder); the nodes
    # that join take the head's
    tmp = tmpdirs.owned_tmpdir("ray", "/tmp")
    head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": tmp}
    c = Cluster(initialize_head=True, head_node_args=head)
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    import ray

    ray.shutdown()
    c.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


def test_forecast_on_two_nodes_matches_local(cluster, small_demo: Path, tmp_path: Path) -> None:
    import ray

    args = ["--models", "naive,theta,ets", "--horizon", "7", "--backtest-windows", "1", "--items", ITEMS]
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "forecast",
            "--data",
            str(small_demo / "demand.parquet"),
            "--output",
            str(out),
            "--address",
            cluster.address,
            "--quiet",
            *args,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "2 node(s)" in res.output
    assert not ray.is_initialized()  # the driver disconnected; the cluster itself is still up
    import json

    record = json.loads(next((out / "metadata" / "runs").glob("*.json")).read_text())
    nodes = {w.split("/")[1].split(":")[0] for w in record["summary"]["workers"]}
    assert len(nodes) == 2, record["summary"]["workers"]

    cfg = load_config(
        None,
        {
            "data": str(small_demo / "demand.parquet"),
            "models": "naive,theta,ets",
            "horizon": 7,
            "backtest_windows": 1,
        },
        env={},
        dotenv=None,
    )
    series, _ = load_series(cfg, ITEMS.split(","))
    local, _, _ = run_engine(series, engine_spec(cfg), cfg, _Quiet(), use_ray=False)
    expected = assemble(local)[0].sort("item_id", "model", "date")
    got = pl.read_parquet(out / "forecasts", hive_partitioning=True).drop("run_date")
    got = got.select(expected.columns).sort("item_id", "model", "date")
    assert_frame_equal(got, expected, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def test_ray_address_joins_and_every_node_runs_one_thread_per_task(cluster, small_demo: Path, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """Without --address a run joins the cluster that RAY_ADDRESS names (as inside `ray job
    submit`), and the workers of every node get the thread settings through the runtime env: the
    nodes here were started without TensorFlow's."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from nova_ray.distributed import THREAD_ENV, RayBackend

    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    res = CliRunner().invoke(app, ["forecast", "--data", str(small_demo / "demand.parquet"), "--output",
                                   str(tmp_path / "out"), "--items", "CAB-0001", "--models", "naive",
                                   "--horizon", "7", "--backtest-windows", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert f"ray {cluster.address} (2 node(s)" in res.output, res.output
    keys = list(THREAD_ENV)
    with RayBackend() as backend:
        assert backend.info.address == cluster.address and not backend.info.started_local
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        env = ray.remote(num_cpus=1)(lambda: {k: os.environ.get(k) for k in keys})
        on = [NodeAffinitySchedulingStrategy(n, soft=False) for n in nodes]
        seen = ray.get([env.options(scheduling_strategy=node).remote() for node in on])
    assert len(nodes) == 2 and seen == [THREAD_ENV, THREAD_ENV], seen


class _Quiet:
    def stage(self, name: str, total: int | None = None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


def test_cpus_that_join_mid_run_get_tasks(cluster, small_demo: Path, monkeypatch, caplog) -> None:
    """The CPU count was read once at connect: a job submitted right after `ray up`, before the
    workers had joined, kept 2 tasks per head CPU in flight for the whole run."""
    import logging

    from nova_ray import distributed

    monkeypatch.setattr(distributed.backend, "CPU_REFRESH_S", 0.2)
    over = {"data": str(small_demo / "demand.parquet"), "models": "naive,theta,ets", "horizon": 7,
            "backtest_windows": 2, "address": cluster.address}
    cfg = load_config(None, over, env={}, dotenv=None)
    series, _ = load_series(cfg, None)
    joined: list = []

    class Grow(_Quiet):
        def advance(self, n: int = 1) -> None:  # the first batch is back: a node joins
            if not joined:
                import time

                import ray

                joined.append(cluster.add_node(num_cpus=1))
                deadline = time.monotonic() + 30  # until the cluster's resources show it
                while ray.cluster_resources().get("CPU", 0) < 3 and time.monotonic() < deadline:
                    time.sleep(0.1)

    try:
        with caplog.at_level(logging.INFO, logger="nova_ray"):
            out, desc, info = run_engine(series, engine_spec(cfg), cfg, Grow(), use_ray=True)
        assert "the cluster grew to 3 CPUs: up to 6 tasks in flight" in caplog.text
        assert info["nodes"] == 3 and "(3 node(s), 3 CPU" in desc  # the record names the node that joined
        assert len(assemble(out)[0]["item_id"].unique()) == len(series)
    finally:
        import ray

        ray.shutdown()
        for node in joined:
            cluster.remove_node(node)


HEAD = """
import sys
from ray._raylet import AuthenticationMode, get_authentication_mode
from ray.cluster_utils import Cluster
head = {"num_cpus": 1, "include_dashboard": False, "temp_dir": sys.argv[1]}
c = Cluster(initialize_head=True, head_node_args=head)
print(c.address, get_authentication_mode() == AuthenticationMode.TOKEN, flush=True)
sys.stdin.read()
c.shutdown()
"""


def test_a_driver_with_the_token_joins_a_token_cluster_by_address(small_demo: Path, tmp_path: Path) -> None:
    """A head started as cluster.yaml starts it (RAY_AUTH_MODE=token) and a driver in another
    process with the token and the mode, as the README says: `forecast --address` joins and the
    global LSTM's actor runs there (a driver in token mode on a cluster without it could not run
    actors, which is why nova-ray does not turn the mode on by itself)."""
    import os
    import subprocess
    import sys
    import uuid

    token = uuid.uuid4().hex + uuid.uuid4().hex
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"HOME": str(tmp_path)}
    tmp = tmpdirs.owned_tmpdir("ray", "/tmp")  # the head's sessions: not in Ray's /tmp/ray
    head = subprocess.Popen([sys.executable, "-c", HEAD, tmp], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env=base | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
    try:
        assert head.stdout is not None
        address, token_mode = head.stdout.readline().split()
        assert token_mode == "True"
        args = ["forecast", "--address", address, "--data", str(small_demo / "demand.parquet"),
                "--items", "CAB-0001", "--models", "naive,lstm", "--horizon", "7", "--backtest-windows", "1",
                "--output", str(tmp_path / "out"), "--quiet"]
        cli = [sys.executable, "-c", "from nova_ray.cli import main; main()", *args]
        env = base | {"RAY_AUTH_TOKEN": token, "RAY_AUTH_MODE": "token", "NOVA_RAY_EPOCHS": "1"}
        res = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        import polars as pl

        forecasts = pl.read_parquet(tmp_path / "out" / "forecasts")
        assert set(forecasts["model"].cast(pl.String)) >= {"naive", "lstm"}
        # the mode without the token (the README's set-up but the token): one line, not Ray's
        # 55-line AuthenticationError traceback
        home = tmp_path / "no-token"
        home.mkdir()
        env = base | {"HOME": str(home), "RAY_AUTH_MODE": "token", "NOVA_RAY_EPOCHS": "1"}
        res = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
        assert res.returncode == 1, res.stderr[-2000:]
        err = res.stderr
        assert "Traceback" not in err and "error: cannot reach Ray at" in err, err[-2000:]
    finally:
        assert head.stdin is not None
        head.stdin.close()  # the head shuts its cluster down
        head.wait(timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def test_doctor_probes_every_node_of_the_cluster(cluster) -> None:
    """The doctor's probe ran one task, which usually lands on the driver's node: a worker node
    whose nova-ray lacked its models (cluster.yaml's rsync excludes did that) passed. Now each
    alive node imports nova-ray's statistical models in a task pinned to it."""
    from nova_ray.cli.doctor import node_problem
    from nova_ray.distributed import probe_ray

    info = probe_ray(cluster.address)
    nodes = info["node_checks"]
    assert len(nodes) == info["nodes"] == 2 and len({n["node"] for n in nodes}) == 2
    assert all(not n.get("error") and n["python"] and n["nova_ray"] for n in nodes), nodes
    assert node_problem(nodes) is None
    missing = "ModuleNotFoundError: No module named 'nova_ray.models'"
    broken = [nodes[0], {"node": "10.0.0.9/abc", "error": missing}]
    assert node_problem(broken) == f"1 of 2 node(s) cannot run nova-ray's tasks: 10.0.0.9/abc: {missing}"
    older = [nodes[0], {**nodes[1], "nova_ray": "0.0.9"}]
    assert "has nova-ray 0.0.9" in (node_problem(older) or "")


def test_a_gpu_node_lost_mid_lstm_leaves_the_lstm_on_cpu(cluster, small_demo: Path, tmp_path: Path,
                                                          monkeypatch, caplog) -> None:
    """The LSTM trains on a GPU node (declared here, with an actor that takes its GPU for usable),
    and the node is lost mid-training. Ray's own actor restart waited with no end for a GPU; the
    LSTM now waits for Ray to declare the node dead, runs again on CPU and the run completes, each
    forecast once."""
    import json
    import logging
    import threading
    import time

    import ray

    from nova_ray import distributed
    from nova_ray.pipeline import run_forecast

    started = str(tmp_path / "lstm-started")

    class TakesItsGpu(distributed.worker._LstmActor):  # defined here: shipped by value
        def has_gpu(self) -> bool:
            return True

        def run(self, *args, **kwargs):
            for part in super().run(*args, **kwargs):
                yield part
                if not os.path.exists(started):  # the first run's first part is out: lose its node
                    open(started, "a").close()
                    time.sleep(20)

    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    lost: list = []

    def lose_the_gpu_node() -> None:
        deadline = time.monotonic() + 120
        while not os.path.exists(started) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1)  # the driver takes the part in
        cluster.remove_node(gpu_node, allow_graceful=False)
        lost.append(time.monotonic())

    monkeypatch.setattr(distributed.backend, "_LstmActor", TakesItsGpu)
    monkeypatch.setattr(distributed.lstm_run, "GPU_WAIT_S", 20.0)
    over = {"data": str(small_demo / "demand.parquet"), "output": str(tmp_path / "out"),
            "models_dir": str(tmp_path / "models"), "models": "naive,lstm", "horizon": 7,
            "backtest_windows": 1, "epochs": 3, "address": cluster.address}
    items = ITEMS.split(",")
    killer = threading.Thread(target=lose_the_gpu_node, daemon=True)
    try:
        with caplog.at_level(logging.DEBUG, logger="nova_ray"):
            killer.start()
            summary = run_forecast(load_config(None, over, env={}, dotenv=None), items)
    finally:
        killer.join(timeout=130)
        ray.shutdown()
        if not lost:
            cluster.remove_node(gpu_node)
    assert lost and summary.items == len(items)
    # once Ray declared the node dead: straight to CPU, no GPU check on the lost node, one run again
    assert "it runs again (run 2 of 3)" in caplog.text and "the LSTM runs again on CPU" in caplog.text
    assert "run 3 of 3" not in caplog.text and "no GPU was free" not in caplog.text, caplog.text
    out = tmp_path / "out"
    record = json.loads((out / "metadata" / "runs" / f"{summary.run_id}.json").read_text())
    # the lost node's part was taken in, produced again, and its worker is not listed
    assert caplog.text.count("LSTM part lstm-bt-0000 checkpointed") == 2, caplog.text
    # (a statistical batch that ran on that node before it was lost lists its worker rightly)
    batch_workers = set(re.findall(r"batch b-\S+: \d+ items, .* on (\S+)", caplog.text))
    lost_workers = [w for w in record["summary"]["workers"] if gpu_node.node_id[:12] in w]
    assert set(lost_workers) <= batch_workers, (lost_workers, batch_workers)
    versions = json.loads((out / "metadata" / "model_versions.json").read_text())
    assert versions["backend"]["lstm_device"] == "CPU"
    got = pl.read_parquet(out / "forecasts", hive_partitioning=True)
    lstm = got.filter(pl.col("model") == "lstm")
    assert sorted(lstm["item_id"].unique()) == sorted(items)
    assert got.group_by("item_id", "model", "date").len()["len"].max() == 1
