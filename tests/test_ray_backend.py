"""A local Ray session started by RayBackend: stopped in the background after a clean exit, at once
after an error, and always before the next session or the end of a run."""

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import ray

from nova_ray import distributed, tmpdirs
from nova_ray.distributed import backend, lstm_run, session, worker


def _one() -> int:
    """One trivial task (a lambda: shipped by value, the test module is not importable in workers)."""
    return ray.get(ray.remote(num_cpus=1)(lambda: 1).remote())


@contextmanager
def _callers_session(num_cpus: int, num_gpus: int | None = None, thread_env: bool = False) -> Iterator[None]:
    """A local Ray session of the caller's own (as a library caller starts it; `thread_env`: with
    the workers' thread settings, as on a cluster), in a temp dir removed after it."""
    tmp = tmpdirs.owned_tmpdir("ray", "/tmp")
    more = {"runtime_env": {"env_vars": distributed.THREAD_ENV}} if thread_env else {}
    more |= {"num_gpus": num_gpus} if num_gpus is not None else {}  # declared: TensorFlow may see none
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp, log_to_driver=False,
             **more)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _thread_env() -> dict[str, str | None]:
    """The thread settings (`THREAD_ENV`'s variables) that a task's worker process runs with."""
    keys = list(distributed.THREAD_ENV)
    return ray.get(ray.remote(num_cpus=1)(lambda: {k: os.environ.get(k) for k in keys}).remote())


def test_clean_exit_stops_ray_in_the_background_and_the_next_session_waits(monkeypatch) -> None:
    from ray._private import node, parameter, services

    patched = (services.get_node, parameter.RayParams.__init__, node.Node.start_api_server)
    for var in distributed.THREAD_ENV:  # (the suite's conftest sets some of them for itself)
        monkeypatch.delenv(var, raising=False)
    with distributed.RayBackend(None, 1) as backend:
        tmp = backend._tmp
        assert backend.info.started_local and tmp and os.path.isdir(tmp)
        # the workers run one BLAS/OpenMP/TensorFlow thread each, from the raylet's environment,
        # which the driver's does not keep
        assert _thread_env() == distributed.THREAD_ENV
        assert not set(distributed.THREAD_ENV) & set(os.environ)
        # the prompt raylet wait and the lean head patched ray.init only
        assert (services.get_node, parameter.RayParams.__init__, node.Node.start_api_server) == patched
        assert _one() == 1
        folder = _worker_folder()
        assert os.path.basename(folder).startswith("nova-ray-worker-") and os.path.isdir(folder)
    assert session._SHUTDOWN is not None  # the caller goes on while Ray stops
    with distributed.RayBackend(None, 1) as again:  # joins the previous stop before starting
        assert not os.path.exists(tmp)
        assert _one() == 1
        # Ray ended the last session's workers by signal (no atexit): a new worker removes their
        # folders once their process is gone (ray.shutdown does not wait for its workers' exit)
        old_worker = int(os.path.basename(folder).split("-")[3])
        deadline = time.monotonic() + 30
        while tmpdirs._alive(old_worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _worker_folder() != folder and not os.path.exists(folder)
        pids = _session_pids()
        assert {"gcs_server", "raylet"} <= set(pids)
        # a private one-node session runs without the autoscaler, log monitor and API server
        assert not {"monitor", "log_monitor", "dashboard"} & set(pids), pids
    distributed.wait_for_shutdown()
    assert session._SHUTDOWN is None and not ray.is_initialized()
    assert not os.path.exists(again._tmp)
    alive = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not alive, f"processes of the stopped session still run: {alive}"


def _worker_folder() -> str:
    """The private temp folder of the worker that runs a task."""

    def folder() -> str:
        with worker._private_tmp():
            return os.environ["TMPDIR"]

    return ray.get(ray.remote(num_cpus=1)(folder).remote())


def _session_pids() -> dict[str, int]:
    """The processes Ray started for this session (GCS, raylet, monitor, ...), by type."""
    from ray._private import worker

    return {name: infos[0].process.pid for name, infos in worker._global_node.all_processes.items() if infos}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_error_stops_ray_before_it_propagates() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with distributed.RayBackend(None, 1) as backend:
            tmp = backend._tmp
            raise RuntimeError("boom")
    assert session._SHUTDOWN is None and not ray.is_initialized() and not os.path.exists(tmp)


def test_a_failed_start_leaves_no_session_nor_temp_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ray.init` failing (or a SIGTERM during it), or Ray failing right after it started: `__exit__`
    never runs for a failed `__enter__`, and the session's temp dir with its logs stayed behind
    (and the session, until the interpreter's exit). Both are gone before the error propagates."""
    import glob

    def ours() -> set[str]:
        return set(glob.glob(f"/tmp/nova-ray-ray-{os.getpid()}-*"))

    before = ours()

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot start")

    with monkeypatch.context() as mp:
        mp.setattr(ray, "init", refuse)
        with pytest.raises(RuntimeError, match="cannot start"):
            distributed.RayBackend(None, 1).__enter__()
    assert ours() == before and not ray.is_initialized()

    def lost() -> dict:
        raise ConnectionError("GCS gone")

    with monkeypatch.context() as mp:
        mp.setattr(ray, "cluster_resources", lost)
        with pytest.raises(ConnectionError, match="GCS gone"):
            distributed.RayBackend(None, 1).__enter__()  # Ray started, then failed
    assert ours() == before and not ray.is_initialized()

    def refused(*args: object, **kwargs: object) -> None:
        raise RuntimeError("driver not connected")

    import subprocess

    from ray._private import worker

    with monkeypatch.context() as mp:  # the head's processes up, the driver not connected yet
        mp.setattr(worker, "connect", refused)
        with pytest.raises(RuntimeError, match="driver not connected"):
            distributed.RayBackend(None, 1).__enter__()
    left = subprocess.run(["pgrep", "-f", f"nova-ray-ray-{os.getpid()}-"], capture_output=True, text=True)
    assert ours() == before and not left.stdout.split(), left.stdout  # its GCS and raylet stopped too


def test_a_cluster_without_cpus_is_said(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    """A head started with --num-cpus 0 whose worker nodes have not joined: the tasks wait, and the
    run said nothing while they did (here the session reports no CPU)."""
    import logging

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"memory": 1.0})
    with caplog.at_level(logging.WARNING, logger="nova_ray"):
        with distributed.RayBackend(None, 1) as backend:
            assert backend.info.cpus == 0
    distributed.wait_for_shutdown()
    assert "the Ray cluster at local has no CPU yet: the tasks wait until a node with CPUs" in caplog.text


def test_a_session_of_the_caller_is_used_and_named(caplog) -> None:
    """A library caller's own Ray session wins over an address given to the backend: that was
    dropped without a word, and the run's record named the address it never used."""
    import logging

    with _callers_session(1):
        here = ray.get_runtime_context().gcs_address
        with caplog.at_level(logging.WARNING, logger="nova_ray"):
            with distributed.RayBackend("10.9.9.9:6379") as backend:
                assert backend.info.address == here and not backend.info.started_local
        assert f"Ray is already connected to {here} in this process: the run uses that session, not " \
               "10.9.9.9:6379" in caplog.text
        assert ray.is_initialized()  # the caller's: left as it is


def test_a_gpu_that_tensorflow_cannot_use_leaves_the_lstm_on_cpu(small_demo, tmp_path, caplog) -> None:
    """A cluster with a GPU (declared here; tensorflow-cpu sees none): the LSTM actor no longer
    holds the GPU while training on one CPU thread, nor would it wait forever for a GPU held
    elsewhere: it checks, and trains on CPU with a warning saying why. The run completes."""
    import json
    import logging

    from nova_ray.config import load_config
    from nova_ray.pipeline import run_forecast

    with _callers_session(2, num_gpus=1, thread_env=True):
        over = {"data": str(small_demo / "demand.parquet"), "output": str(tmp_path / "out"),
                "models_dir": str(tmp_path / "models"), "models": "naive,lstm", "horizon": 7,
                "backtest_windows": 1, "epochs": 1}
        with caplog.at_level(logging.WARNING, logger="nova_ray"):
            summary = run_forecast(load_config(None, over, env={}, dotenv=None),
                                   ["CAB-0001", "ELE-0001", "SAF-0001"])
    assert summary.items == 3
    versions = json.loads((tmp_path / "out" / "metadata" / "model_versions.json").read_text())
    assert versions["backend"]["gpus"] == 1 and versions["backend"]["lstm_device"] == "CPU"
    assert "the LSTM trains on CPU: TensorFlow on its node sees no GPU" in caplog.text


def test_a_local_run_uses_the_cpus_it_may_use_not_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local Ray was started with os.cpu_count(): a 4-CPU container on a 64-core host got 64
    workers (each importing the model libraries) and batches sized for 64."""
    import ray._private.utils as ray_utils

    from nova_ray.distributed import local_cpus

    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(64)))
    monkeypatch.setattr(ray_utils, "get_num_cpus", lambda *a, **k: 4.0)  # the container's quota
    assert local_cpus() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1})  # taskset -c 0,1
    assert local_cpus() == 2


def test_the_gpu_check_runs_beside_the_statistical_tasks(small_demo, tmp_path, monkeypatch) -> None:
    """The LSTM's GPU check held every statistical task back until it ended (up to GPU_WAIT_S,
    2 minutes). Here the check (an actor that takes its declared GPU for usable) answers only once
    the first statistical batch is back: it did so, and the LSTM kept the GPU."""
    import pyarrow.compute as pc

    from nova_ray.config import load_config
    from nova_ray.fit_stage import run_engine
    from nova_ray.pipeline import engine_spec, load_series

    flag = str(tmp_path / "first-batch-back")

    class CheckAfterFirstBatch(worker._LstmActor):  # defined here: shipped by value
        def has_gpu(self) -> bool:
            deadline = time.monotonic() + 60
            while not os.path.exists(flag) and time.monotonic() < deadline:
                time.sleep(0.05)
            return os.path.exists(flag)

    class Progress:
        def stage(self, name: str, total: int | None = None) -> None:
            pass

        def advance(self, n: int = 1) -> None:
            if n and not os.path.exists(flag):
                open(flag, "w").close()

    monkeypatch.setattr(backend, "_LstmActor", CheckAfterFirstBatch)
    monkeypatch.setattr(lstm_run, "GPU_WAIT_S", 45.0)
    over = {"data": str(small_demo / "demand.parquet"), "models": "naive,lstm", "horizon": 7,
            "backtest_windows": 1, "epochs": 1}
    cfg = load_config(None, over, env={}, dotenv=None)
    series, _ = load_series(cfg, ["CAB-0001", "ELE-0001", "SAF-0001", "FIX-0001"])
    with _callers_session(2, num_gpus=1, thread_env=True):
        results, _, info = run_engine(series, engine_spec(cfg), cfg, Progress(), use_ray=True)
    assert info["lstm_device"] == "GPU"
    lstm = {i for r in results for i in r.forecasts.filter(pc.equal(r.forecasts["model"], "lstm"))
            .column("item_id").to_pylist()}
    assert lstm == set(series.item_ids.tolist())


def test_a_stored_lstm_that_only_forecasts_runs_as_a_task_not_an_actor(
    small_demo, tmp_path, monkeypatch, caplog
) -> None:
    """A warm run whose stored network forecasts as it is (numpy, `warm_epochs` 0) needs no actor
    process: the LSTM is a task on a pooled worker. Here every actor fails as it starts, and the
    cluster declares a GPU (an actor would check it first): the run needs neither, and its LSTM
    forecasts are the in-process ones, also when the task's worker dies once (it runs again).
    A network of another shape, or fine-tuning, needs the actor."""
    from dataclasses import replace

    import numpy as np
    import pyarrow.compute as pc

    from nova_ray.config import load_config
    from nova_ray.fit_stage import Silent, run_engine
    from nova_ray.global_lstm import FINAL_PART, predicts_only
    from nova_ray.pipeline import engine_spec, load_series

    class NoActor(worker._LstmActor):  # defined here: shipped by value
        def __init__(self, threads: int = 1):
            raise RuntimeError("no actor in a run whose LSTM only forecasts")

    over = {"data": str(small_demo / "demand.parquet"), "models": "naive,lstm", "horizon": 7,
            "backtest_windows": 1, "epochs": 1}
    cfg = load_config(None, over, env={}, dotenv=None)
    series, _ = load_series(cfg, ["CAB-0001", "ELE-0001", "SAF-0001", "FIX-0001"])
    spec = engine_spec(cfg)
    cold, _, _ = run_engine(series, spec, cfg, Silent(), use_ray=False)
    state = next(r.state for r in cold if r.name == FINAL_PART)
    items = list(range(len(series)))
    assert predicts_only(series, items, spec, state)
    assert not predicts_only(series, items, replace(spec, lstm=replace(spec.lstm, warm_epochs=1)), state)
    assert not predicts_only(series, items, replace(spec, horizon=14), state)  # another shape: trains cold

    def lstm_rows(results) -> dict[str, list[float]]:
        rows = {}
        for r in results:
            fc = r.forecasts.filter(pc.equal(r.forecasts["model"], "lstm"))
            for item in set(fc.column("item_id").to_pylist()):
                rows[item] = fc.filter(pc.equal(fc["item_id"], item)).column("forecast").to_pylist()
        return rows

    here, _, _ = run_engine(series, spec, cfg, Silent(), use_ray=False, lstm_init=state)
    monkeypatch.setattr(backend, "_LstmActor", NoActor)
    with _callers_session(2, num_gpus=1, thread_env=True):
        results, _, info = run_engine(series, spec, cfg, Silent(), use_ray=True, lstm_init=state)
        flag, real = str(tmp_path / "killed-once"), backend._lstm_here

        def dies_once(*args, **kw):  # defined here: shipped by value
            if not os.path.exists(flag):
                open(flag, "w").close()
                os._exit(1)
            yield from real(*args, **kw)

        monkeypatch.setattr(backend, "_lstm_here", dies_once)
        again, _, _ = run_engine(series, spec, cfg, Silent(), use_ray=True, lstm_init=state)
    assert info["lstm_device"] == "CPU"
    final = next(r for r in results if r.name == FINAL_PART)
    assert all(np.array_equal(a, b) for a, b in zip(final.state.weights, state.weights, strict=True))
    assert final.worker and not final.worker.endswith(f":{os.getpid()}")  # a Ray worker's, not the driver's
    got, rerun, want = lstm_rows(results), lstm_rows(again), lstm_rows(here)
    assert set(got) == set(rerun) == set(series.item_ids.tolist()) == set(want)
    for item, yhat in want.items():
        np.testing.assert_allclose(got[item], yhat, rtol=1e-9)
        np.testing.assert_allclose(rerun[item], yhat, rtol=1e-9)
    assert os.path.exists(flag) and "the LSTM's task was lost (WorkerCrashedError" in caplog.text
    # a stored network's task runs on CPU, also again on a cluster with a GPU (it said "on a GPU")
    assert "the LSTM runs again on CPU" in caplog.text and "runs again on a GPU" not in caplog.text


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the kernel's SigCgt mask")
def test_rays_start_never_takes_sigterm_from_the_python_handler(tmp_path) -> None:
    """The driver's core worker installed Ray's failure handler for SIGTERM at the C level while
    `ray.init` connected, over the CLI's: a SIGTERM in the last second of a start dumped a C++
    stack and aborted (exit 134, 3 of 12 SIGTERMs sent during starts). When the connection is
    made, SIGTERM's C-level action is now still Python's own (read, not delivered), and Ray's
    workers keep their handler (no switch in their environment). In a fresh process: this one
    imported Ray long ago."""
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text("""
import ctypes, os, signal, sys
from nova_ray import distributed
libc = ctypes.CDLL(None)
def action():
    buf = ctypes.create_string_buffer(152)  # struct sigaction: its handler's address first
    assert libc.sigaction(signal.SIGTERM, None, buf) == 0
    return buf.raw[:8]
signal.signal(signal.SIGTERM, lambda *_: None)
python_s = action()
ray = distributed.session._import_ray()  # as a run's first import of Ray
from ray._private import worker
connect, seen = worker.connect, []
def spy(*args, **kwargs):
    out = connect(*args, **kwargs)
    seen.append(action() == python_s)
    return out
worker.connect = spy
with distributed.RayBackend(None, 1):
    env = ray.get(ray.remote(lambda: os.environ.get(distributed.session.NO_CRASH_HANDLER)).remote())
distributed.wait_for_shutdown()
print(seen, env, os.environ.get(distributed.session.NO_CRASH_HANDLER))
""")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split("\n")[-2] == "[True] None None", out.stdout


def test_the_sigterm_handler_outlives_rays_shutdown() -> None:
    """`ray.shutdown` (in the background, while the results are written) reset SIGTERM to the
    default action, while Python still listed the CLI's handler: a SIGTERM while a run published
    (a service manager stopping it) killed it without its one line. The action is put back."""
    import signal

    def caught() -> bool:
        mask = next(ln for ln in open("/proc/self/status") if ln.startswith("SigCgt:")).split()[1]
        return bool(int(mask, 16) & (1 << (signal.SIGTERM - 1)))

    got: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _: got.append(signum))
    try:
        assert caught()
        with distributed.RayBackend(None, 1):
            assert _one() == 1
        distributed.wait_for_shutdown()
        assert caught()
        os.kill(os.getpid(), signal.SIGTERM)  # the Python handler's, not Ray's (a C++ stack, exit 134)
        time.sleep(0.1)
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, before)
