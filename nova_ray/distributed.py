"""Everything Ray: connect (local or a cluster), batch items into tasks, the LSTM actor, retries.

Nothing else in nova-ray imports ray. The tasks call exactly the engine functions of the local path.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .classify import classify
from .config import ConfigError, address_problem
from .engine import FALLBACK, BatchResult, EngineSpec, failed_note, forecast_batch, why_failed
from .global_lstm import FINAL_PART, lstm_parts, predicts_only
from .memory import release_memory
from .series import SeriesSet
from .tmpdirs import owned_tmpdir

THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONWARNINGS": "ignore",
}

# Rough CPU seconds per fit of a 3-year daily series, and per order/form search; scaled by length.
FIT_COST = {
    "naive": 0.001,
    "croston": 0.01,
    "tsb": 0.01,
    "theta": 0.15,
    "ets": 0.1,
    "arima": 0.3,
    "prophet": 0.35,
}
SEARCH_COST = {"ets": 0.5, "arima": 2.0}


def _worker_name() -> str:
    """host/node-id:pid of the worker running this task."""
    import ray

    node = ray.get_runtime_context().get_node_id()[:12] if ray.is_initialized() else "local"
    return f"{socket.gethostname()}/{node}:{os.getpid()}"


_PRIVATE_TMP: str | None = None
_TMP_BASE = tempfile.gettempdir()  # the worker's own temp dir, before TMPDIR points into ours


@contextmanager
def _private_tmp() -> Iterator[None]:
    """Run with TMPDIR in this worker's own folder and empty it afterwards: cmdstanpy leaves files
    behind otherwise (its cached temp folder under ours is kept, emptied). Ray ends workers with a
    signal, so the folder outlives its worker: the next worker's first task removes it."""
    global _PRIVATE_TMP
    if _PRIVATE_TMP is None or not os.path.isdir(_PRIVATE_TMP):
        _PRIVATE_TMP = owned_tmpdir("worker", _TMP_BASE)
        atexit.register(shutil.rmtree, _PRIVATE_TMP, True)
    os.environ["TMPDIR"], tempfile.tempdir = _PRIVATE_TMP, _PRIVATE_TMP
    try:
        yield
    finally:
        _empty(_PRIVATE_TMP)


def _empty(folder: str) -> None:
    """Delete everything in `folder`, keeping sub-folders that live libraries still point at."""
    keep = {os.path.realpath(getattr(sys.modules.get("cmdstanpy"), "_TMPDIR", "") or "/nonexistent")}
    for entry in os.scandir(folder):
        path = os.path.realpath(entry.path)
        if path in keep:
            _empty(path)
        elif entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


TASKS_AHEAD = 2  # statistical tasks in flight per CPU: one running, one queued behind it
CPU_REFRESH_S = 5.0  # how often a run on a cluster re-reads its CPUs (nodes joining mid-run)

# Task workers run at this niceness (once per worker process; Ray's workers belong to one job):
# on CPU the LSTM actor shares the cores with them, and as the one piece of work that cannot be
# split it should keep a core to itself and finish before the tasks do, not after them with a
# core idle; the driver streaming results keeps priority too.
TASK_NICENESS = 5
_NICED = False


def _crashed(result: BatchResult, why: str) -> BatchResult:
    """The seasonal-naive result of an item whose own task failed (`why`), flagged a fallback."""
    import pyarrow as pa

    items = result.items
    said = [failed_note(n, why) for n in items.column("notes").to_pylist()]
    items = items.set_column(items.schema.get_field_index("notes"), "notes", pa.array(said, pa.string()))
    flag = pa.array([True] * items.num_rows, pa.bool_())
    result.items = items.set_column(items.schema.get_field_index("fallback"), "fallback", flag)
    return result


def _batch_task(series: SeriesSet, indices: list[int], spec: EngineSpec, cached: dict | None) -> BatchResult:
    global _NICED
    if not _NICED:
        _NICED = True
        try:
            os.nice(TASK_NICENESS)
        except OSError:
            pass
    with _private_tmp():
        result = forecast_batch(series, indices, spec, cached)
    result.worker = _worker_name()
    release_memory(collect=False)  # what the batch's fits freed, handed back (~15-20 MiB a worker)
    return result


def _lstm_here(
    series: SeriesSet, indices: list[int], spec: EngineSpec, init: Any = None, threads: int = 1
) -> Iterator[BatchResult]:
    """The LSTM's result in parts (`lstm_parts`) from this worker, streamed to the driver as they
    come: the actor's work, or, for a stored network that only forecasts, a task's."""
    with _private_tmp():
        for part in lstm_parts(series, indices, spec, threads, init):
            part.worker = _worker_name()
            yield part


class _LstmActor:
    """Trains the global LSTM (GPU when the cluster has one) and predicts every item."""

    def __init__(self, threads: int = 1):
        self.threads = threads  # TensorFlow is imported when training needs it (a stored network
        # predicts in numpy), inside lstm_parts: its CPU is counted there, as in-process

    def run(
        self, series: SeriesSet, indices: list[int], spec: EngineSpec, init: Any = None
    ) -> Iterator[BatchResult]:
        """The LSTM's result in parts, streamed to the driver as they come."""
        yield from _lstm_here(series, indices, spec, init, self.threads)

    def node(self) -> str:
        """The id of the node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def devices(self) -> list[str]:
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices()]

    def has_gpu(self) -> bool:
        """Whether TensorFlow here sees a GPU (a tensorflow-cpu install never does)."""
        from .models.lstm import configure_tensorflow

        configure_tensorflow(self.threads)
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))


def estimate_cost(y: np.ndarray, spec: EngineSpec, windows: int, search: bool = True) -> float:
    """Estimated CPU seconds to backtest and fit one series with its models (`search=False`: with
    stored model choices, as a warm item of an incremental run, no order or form search)."""
    from .engine import models_for
    from .models import MODELS

    names, _ = models_for(classify(y), spec)
    scale = max(len(y), 50) / 1095
    search_scale = min(len(y), spec.search_window or len(y)) / 1095

    def fits(name: str) -> float:  # a re-filtered window costs about a third of a fit
        once = windows and spec.backtest_refit == "first" and MODELS[name].backtest
        return 2 + (windows - 1) / 3 if once else windows + 1

    return (
        sum(FIT_COST.get(n, 0.0) * fits(n) * scale + search * SEARCH_COST.get(n, 0.0) * search_scale
            for n in names)
        + 0.002
    )


# Tasks per worker below which batches get smaller than `batch_seconds`: the last tasks then hold
# ~1/40 of a worker's work, so the cores finish together. Large runs get `batch_seconds` batches:
# each is a checkpoint file that the driver writes and the ensemble reads back, and ~1,350 files
# of 2-s batches at 2,000 items cost the driver ~20 MiB more than ~270 files (polars' per-file
# buffers) and their writes' CPU.
MIN_TASKS_PER_WORKER = 40


def make_batches(
    series: SeriesSet,
    spec: EngineSpec,
    workers: int,
    batch_seconds: float,
    costs: dict[str, float] | None = None,
    indices: list[int] | None = None,
    search: bool = True,
) -> list[list[int]]:
    """Group `indices` (default all items) into tasks of about `batch_seconds` of work (measured
    costs where known, else estimated), most expensive first, smaller when that makes fewer than
    MIN_TASKS_PER_WORKER tasks per worker (load balance); `search=False` for warm items (stored
    model choices). Returns lists of series indices (no copy of the series is made)."""
    idx = np.arange(len(series)) if indices is None else np.asarray(indices, dtype=np.int64)
    est = np.array(
        [
            (costs or {}).get(str(series.item_ids[i]))
            or estimate_cost(series.values_of(i), spec, spec.backtest_windows, search)
            for i in idx
        ]
    )
    order = np.argsort(-est, kind="stable")
    total = float(est.sum())
    target = max(min(batch_seconds, total / max(MIN_TASKS_PER_WORKER * workers, 1)), 1e-9)
    batches: list[list[int]] = []
    cur: list[int] = []
    acc = 0.0
    for j in order:
        cur.append(int(idx[j]))
        acc += est[j]
        if acc >= target:
            batches.append(cur)
            cur, acc = [], 0.0
    if cur:
        batches.append(cur)
    return batches


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (children started in it keep them)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def _patched(*swaps: tuple[Any, str, Any]) -> Iterator[None]:
    """Set (object, attribute, value) for the length of the block, then put the originals back."""
    originals = [(obj, name, getattr(obj, name)) for obj, name, _ in swaps]
    for obj, name, value in swaps:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for obj, name, value in originals:
            setattr(obj, name, value)


@contextmanager
def _sigterm_kept() -> Iterator[None]:
    """Keep a Python SIGTERM handler (the CLI's: SIGTERM ends a run as Ctrl-C does) across
    `ray.init`, whose core worker installs a failure handler for SIGTERM that dumps a C++ stack
    and aborts (exit 134, nothing said, the temp dir left behind). A library caller without a
    handler of its own keeps Ray's."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit as exc:  # SIGTERM while `ray.init` ran: Ray's own handler exits with code 15
        if exc.code == signal.SIGTERM and callable(before):
            before(signal.SIGTERM, None)  # the CLI's: the run ends as a SIGTERM does (143, one line)
        raise
    finally:
        if callable(before) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)


@contextmanager
def _sigterm_action_kept() -> Iterator[None]:
    """Put the process's SIGTERM action back after the block: `ray.shutdown` resets it to the
    default (its logger uninstalls its failure handlers) while Python still lists the CLI's
    handler, so a SIGTERM while the results were published killed the run without a word. The
    action is copied whole with libc's sigaction (any thread: the shutdown runs in one). Only a
    Python handler's: without one the action in place is Ray's crash handler, which its shutdown
    means to remove."""
    ok = False
    if callable(signal.getsignal(signal.SIGTERM)):
        try:
            libc = ctypes.CDLL(None)
            saved = ctypes.create_string_buffer(512)  # a struct sigaction, kept opaque (<= 152 bytes)
            ok = libc.sigaction(signal.SIGTERM, None, saved) == 0
        except (OSError, AttributeError):  # no libc sigaction: Ray's default stays
            ok = False
    try:
        yield
    finally:
        if ok:
            libc.sigaction(signal.SIGTERM, saved, None)


NO_CRASH_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def _import_ray() -> Any:
    """`ray`, imported the first time without its failure signal handler for this process (the
    driver): Ray reads the switch as it loads, and installs the handler at the C level while
    `ray.init` connects, over the CLI's SIGTERM handler, which `_sigterm_kept` puts back only once
    `ray.init` returns: a SIGTERM in that last second of a start dumped a C++ stack and aborted
    (exit 134, not 143; 3 of 12 SIGTERMs sent during starts). The switch is off again before any
    Ray process starts: they and the workers keep their handlers. Imported already (a library
    caller's, a test's), Ray is as it was."""
    if "ray" not in sys.modules:
        saved = os.environ.get(NO_CRASH_HANDLER)
        os.environ[NO_CRASH_HANDLER] = "1"
        try:
            import ray  # noqa: F401 - loaded here with the switch on
        finally:
            if saved is None:
                os.environ.pop(NO_CRASH_HANDLER, None)
            else:
                os.environ[NO_CRASH_HANDLER] = saved
    import ray

    return ray


CONNECT_TIMEOUT_S = 15.0  # a cluster's GCS port that does not answer: ray.init would wait for ever


class AddressError(ConfigError):
    """A Ray address that is not one (--address, [ray] address or RAY_ADDRESS)."""


class HeadUnreachable(ConnectionError):
    """A cluster's GCS port that accepts no TCP connection (so no token was ever asked for)."""


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S, named: str = "") -> None:
    """Fail fast on a cluster address that cannot work: an HTTP address (the dashboard's, which
    `ray job submit` takes) or a malformed one is an AddressError, a HOST:PORT that accepts no TCP
    connection within `timeout` a HeadUnreachable (a ConnectionError). `ray.init` retried an
    unreachable head without a time limit while the run held its job lock, so every later night's
    run was refused.
    "auto" and ray:// addresses are left to Ray. `named`: where the address came from, when the
    user did not give it (RAY_ADDRESS), for the message."""
    if address == "auto" or address.startswith("ray://"):
        return
    if (why := address_problem(address)) is not None:
        raise AddressError(f"{named + ': ' if named else ''}Ray address {address!r}: {why}")
    host, _, port = address.rpartition(":")
    try:  # an IPv6 host in brackets ([fd00::5]:6379, as Ray writes it): the socket takes it bare
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true"):
                return  # a TLS head answers a TLS handshake only: left to Ray
            answer = _http2_answer(conn, timeout)
    except OSError as exc:
        raise HeadUnreachable(f"cannot connect to {host}:{port} within {timeout:.0f} s: "
                              f"{exc.strerror or exc}") from None
    if answer is None:  # a port that takes connections and says nothing (or something else)
        raise HeadUnreachable(f"{host}:{port} accepts connections but is not a Ray head's GCS port (no "
                              f"gRPC answer within {timeout:.0f} s; a head listens on 6379 unless "
                              "`ray start --head --port` said otherwise)")


def reachable_cluster(address: str | None) -> None:
    """`check_address` for the cluster a `RayBackend(address)` would join (`address`, else
    RAY_ADDRESS), before a run writes anything; nothing for a local Ray or a session already up."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    ray = sys.modules.get("ray")
    if target is None or (ray is not None and ray.is_initialized()):
        return
    check_address(target, named="" if address else "environment variable RAY_ADDRESS")


HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + SETTINGS


def _http2_answer(conn: socket.socket, timeout: float) -> bytes | None:
    """The first frame header a gRPC server (Ray's GCS) sends back to an HTTP/2 connection
    preface: its SETTINGS frame. None when the port answers nothing within `timeout` or something
    else (an HTTP/1 server, a database): `ray.init` waited for ever on such a port, holding the
    run's job locks."""
    conn.settimeout(timeout)
    try:
        conn.sendall(HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return None
            head += chunk
    except OSError:
        return None
    return head if head[3] == 4 else None  # frame type 4: SETTINGS


@contextmanager
def _prompt_node_wait(poll_s: float = 0.05, patience_s: float = 10.0) -> Iterator[None]:
    """Make `ray.init` notice its new raylet within `poll_s` instead of up to a second.

    Starting a local head, `ray.init` waits for the raylet's registration by asking the GCS for the
    node, and the GCS client's lookup retries once a second; the raylet registers 0.5-1.5 s after
    the head processes start, so `ray.init` took 2.0 or 3.0 s. Polling the node table first, then
    doing Ray's own lookup (which then answers at once), makes it 1.5-2.4 s. Private Ray API: if
    it changed, Ray's lookup runs as it is.
    """
    try:
        from ray._private import services, state

        original = services.get_node
        options = services._get_gcs_client_options
    except (ImportError, AttributeError):
        yield
        return

    def get_node(gcs_address: str, node_id: str) -> Any:
        try:
            gs = state.GlobalState()
            gs._initialize_global_state(options(gcs_address))
            deadline = time.monotonic() + patience_s
            while time.monotonic() < deadline:
                if any(n.get("NodeID") == node_id for n in gs.node_table()):
                    break
                time.sleep(poll_s)
        except Exception:  # noqa: BLE001 - an optimisation only: Ray's lookup decides
            pass
        return original(gcs_address, node_id)

    with _patched((services, "get_node", get_node)):
        yield


@contextmanager
def _lean_local_head() -> Iterator[None]:
    """Start a local head without the three Python daemons that a private one-node session does
    not use: the autoscaler monitor (nothing to scale), the log monitor (it streams worker output to
    a driver; ours has `log_to_driver=False`) and the API server (job submission and state API,
    which nothing reaches in a temp dir we own). `ray start` has switches for the first two
    (`--no-monitor`, `--include-log-monitor`); `ray.init` has none, hence the patch. Measured:
    `ray.init` 1.6 -> 1.0 s, 1.1 CPU-seconds and three Python processes fewer. Private Ray API:
    if it changed, Ray starts its usual processes."""
    try:
        from ray._private import node, parameter

        params_init = parameter.RayParams.__init__
        node.Node.start_api_server  # noqa: B018 - AttributeError when this Ray has none
    except (ImportError, AttributeError):
        yield
        return

    def lean_params(self: Any, *args: Any, **kwargs: Any) -> None:
        params_init(self, *args, **kwargs)
        self.no_monitor = True
        self.include_log_monitor = False

    def no_api_server(self: Any, **_: Any) -> None:
        self._webui_url = None

    with _patched(
        (parameter.RayParams, "__init__", lean_params), (node.Node, "start_api_server", no_api_server)
    ):
        yield


_SHUTDOWN: threading.Thread | None = None


def wait_for_shutdown() -> None:
    """Block until the Ray session that a `RayBackend` stops in the background has stopped."""
    global _SHUTDOWN
    if _SHUTDOWN is not None:
        _SHUTDOWN.join()
        _SHUTDOWN = None


@dataclass
class ClusterInfo:
    address: str
    cpus: float
    gpus: float
    nodes: int
    started_local: bool


_AUTH_LOG = "ray._private.authentication.authentication_token_setup"


GPU_WAIT_S = 120.0  # how long the LSTM waits for a GPU actor to start before it trains on CPU


LSTM_ATTEMPTS = 3  # the LSTM's first run and its runs again after its actor died
NODE_LOSS_WAIT_S = 60.0  # how long a run again waits for Ray to declare an unreachable node dead


class _LstmRun:
    """The global LSTM on its actor, driven from the run's loop: `ref` is what to wait on (None
    while it waits for a node to be declared dead), `timeout` how long at most, and `poll` is
    called on every turn.

    With a GPU in the cluster the actor asks for one and first checks that TensorFlow there can
    use it (a tensorflow-cpu install never does; a GPU held elsewhere, or on a node gone, would
    keep it waiting): while it checks, the statistical tasks already run. Within `GPU_WAIT_S` it
    trains on the GPU, else on CPU with a warning that says why (and so does any run again).
    On CPU the actor shares the cores with the tasks (one TensorFlow thread): no core sits idle
    while TensorFlow imports.

    An actor lost (its process killed, its node lost, or a part lost with its node) before its
    last part is replaced and the LSTM runs again, up to `LSTM_ATTEMPTS` runs: on a GPU if a live
    node still has one, else on CPU. Ray's own actor restart would wait with no end for a GPU
    when the only GPU node is gone. A node that stops answering is still listed, with its GPU,
    until Ray declares it dead (15-30 s): the run again waits for that (at most
    `NODE_LOSS_WAIT_S`, the statistical tasks going on meanwhile), so that neither a GPU check nor
    the CPU actor lands on it. The parts of a run again replace those of the run before (each
    part's name holds the same items).

    With `task` (a stored network that only forecasts, in numpy: `predicts_only`) there is no
    actor and no GPU check: the LSTM is a task of one CPU, submitted before the statistical ones,
    on a worker process that then goes on with those (an actor is a process of its own, ~1.5
    CPU-seconds to start). A task lost runs again the same way."""

    def __init__(self, actor_cls: Any, args: tuple, n_items: int, gpus: float, task: Any = None):
        self.cls, self.args, self.n_items, self.gpus, self.task = actor_cls, args, n_items, gpus, task
        self.attempts = 0
        self.device = ""  # "GPU" or "CPU" once it trains; "" while it checks its GPU
        self.actor: Any = None
        self.node: Any = None  # the actor's node id, asked for when it starts
        self.ref: Any = None  # the GPU check while it runs, then the parts' generator
        self.deadline: float | None = None  # of the GPU check, or of the wait for a node's loss
        self.lost_node: str | None = None  # the node whose loss a run again waits for
        self.no_gpu = ""  # why a GPU check failed: the runs again train on CPU at once
        self.final = False  # its last part is in: an actor lost now changes nothing
        self._start()

    def _start(self) -> None:
        self.attempts += 1
        self.device = ""
        if self.task is not None:
            self.device, self.node = "CPU", None
            self.ref = self.task.options(_generator_backpressure_num_objects=2).remote(*self.args)
        elif self.gpus >= 1 and not self.no_gpu:
            self.actor = self.cls.options(num_gpus=1, num_cpus=1).remote(1)
            self.node = self.actor.node.remote()
            self.ref = self.actor.has_gpu.remote()
            self.deadline = time.monotonic() + GPU_WAIT_S
        else:
            self._train("CPU")

    def _train(self, device: str) -> None:
        if device == "CPU":
            self.kill()
            self.actor = self.cls.options(num_cpus=0).remote(1)
            self.node = self.actor.node.remote()
        self.device, self.deadline = device, None
        # its parts stream in, at most two ahead of the driver: the object store (and the pages
        # of it that the driver maps) never holds the whole result
        self.ref = self.actor.run.options(_generator_backpressure_num_objects=2).remote(*self.args)

    def _on_cpu(self, why: str) -> None:
        self.no_gpu = why
        logging.getLogger("nova_ray").warning(
            "the cluster has %g GPU(s) but the LSTM trains on CPU: %s", self.gpus, why
        )
        self._train("CPU")

    def timeout(self) -> float | None:
        """Seconds until `poll` has something to do (None: nothing until `ref` is ready)."""
        if self.deadline is None:
            return None
        left = max(0.0, self.deadline - time.monotonic())
        return min(left, 0.5) if self.lost_node else left

    def poll(self) -> None:
        """Give up a GPU check past its deadline (train on CPU); run again once the node lost is
        declared dead (or past the wait's deadline)."""
        import ray

        if self.deadline is None:
            return
        if self.lost_node is not None:
            alive = any(n["NodeID"] == self.lost_node and n["Alive"] for n in ray.nodes())
            if not alive or time.monotonic() >= self.deadline:
                self.lost_node = None
                self._again()
        elif time.monotonic() >= self.deadline:
            self._on_cpu(f"no GPU was free within {GPU_WAIT_S:.0f} s")

    def ready(self) -> BatchResult | None:
        """`ref` is ready: the next part (None: the GPU check ended or the actor was lost).
        Raises StopIteration when the LSTM is done; Ray's error when its last run failed."""
        import ray

        lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)  # the last two: a task's
        if self.deadline is not None:  # the GPU check
            try:
                if ray.get(self.ref):
                    self._train("GPU")
                    return None
                why = "TensorFlow on its node sees no GPU (tensorflow-cpu? see README, On a Ray cluster)"
            except lost as exc:  # its node lost: not the GPU's fault
                self._lost(exc)
                return None
            except ray.exceptions.RayError as exc:
                why = f"its actor failed: {type(exc).__name__}"
            self._on_cpu(why)
            return None
        try:
            part = ray.get(next(self.ref))
        except lost as exc:
            if self.final:  # lost after its last part (the state with it): nothing to run again
                raise StopIteration from None
            self._lost(exc)
            return None
        self.final = part.name == FINAL_PART
        return part

    def _lost(self, exc: Exception) -> None:
        """The actor or task (or a part on its node) is lost: run again, after its node is declared dead
        when it stopped answering. Raises `exc` when the runs are spent."""
        import ray

        if self.attempts >= LSTM_ATTEMPTS:
            raise exc
        logging.getLogger("nova_ray").warning(
            "the LSTM's %s was lost (%s, on %s): it runs again (run %d of %d)",
            "task" if self.task else "actor", type(exc).__name__, self.device or "its GPU check",
            self.attempts + 1, LSTM_ATTEMPTS,
        )
        self.kill()
        self.ref = None
        try:
            node = None if self.node is None else ray.get(self.node, timeout=1)
        except ray.exceptions.RayError:  # it died (or hung) before saying where it ran (a task never says)
            node = None
        if node is not None and not isinstance(exc, ray.exceptions.ActorDiedError):
            self.lost_node, self.deadline = node, time.monotonic() + NODE_LOSS_WAIT_S
            self.poll()
        else:
            self._again()

    def _again(self) -> None:
        """Run again: on a GPU if a live node has one (and no GPU check failed), else on CPU."""
        import ray

        self.gpus = sum(n["Resources"].get("GPU", 0) for n in ray.nodes() if n["Alive"])
        self.deadline = None
        on_gpu = self.task is None and self.gpus >= 1 and not self.no_gpu  # a stored network's task: CPU
        logging.getLogger("nova_ray").warning("the LSTM runs again on %s", "a GPU" if on_gpu else "CPU")
        self._start()

    def kill(self) -> None:
        """Free the actor's CPU (or GPU) at once."""
        import ray

        if self.actor is not None:
            ray.kill(self.actor)
            self.actor = None


def local_cpus() -> int:
    """CPUs this process may use: its affinity mask (taskset, a Slurm allocation) and a
    container's CPU quota (Ray's own count reads it), not the host's: `os.cpu_count()` is 64 in
    a 4-CPU container on a 64-core host, and 64 workers importing the model libraries run it
    out of memory."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        from ray._private.utils import get_num_cpus

        n = min(n, max(1, int(get_num_cpus())))
    except Exception:  # noqa: BLE001 - a Ray without it: the affinity mask alone
        pass
    return max(1, n)


class RayBackend:
    """A Ray session: local (started and stopped here) or an existing cluster (`address`)."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self._from_env = not address and self.address is not None
        self.num_cpus = num_cpus or None
        self.lstm_device = ""  # where the LSTM trained: "GPU" or "CPU" (none: "")
        self._tmp: str | None = None
        self.info: ClusterInfo | None = None

    def __enter__(self) -> RayBackend:
        """Connect (or start local Ray); a failure on the way (Ray's start, a SIGTERM during it)
        stops what was started and removes the temp dir before it propagates: `__exit__` never
        runs for it."""
        try:
            return self._connect()
        except BaseException:
            self._abandon()
            raise

    def _abandon(self) -> None:
        import ray

        if getattr(self, "_owns_connection", False):  # also when `ray.init` stopped after starting the
            # head but before connecting (not "initialized"): `shutdown` stops the processes it started
            with _sigterm_action_kept():
                ray.shutdown()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _connect(self) -> RayBackend:
        ray = _import_ray()
        wait_for_shutdown()
        self._owns_connection = not ray.is_initialized()
        if ray.is_initialized():  # the caller's session (a library caller, a test): used as it is
            started = False
            here = ray.get_runtime_context().gcs_address
            if self.address and self.address not in ("auto", here):
                logging.getLogger("nova_ray").warning(
                    "Ray is already connected to %s in this process: the run uses that session, not %s",
                    here, self.address,
                )
            self.address = here  # what the run's record names: the cluster it ran on
        elif self.address:  # workers started by `ray start` get the thread settings as a runtime env
            check_address(self.address, named="environment variable RAY_ADDRESS" if self._from_env else "")
            with _sigterm_kept():
                try:
                    ray.init(
                        address=self.address,
                        runtime_env={"env_vars": THREAD_ENV},
                        log_to_driver=False,
                        logging_level="WARNING",
                    )
                except ValueError as exc:  # an address Ray cannot parse
                    why = " ".join(str(exc).split())
                    if "runtime env" in why.lower():  # a job's env_vars clash with THREAD_ENV
                        raise ConfigError(f"Ray job: {why} (nova-ray sets {', '.join(THREAD_ENV)} "
                                          "itself: leave them out of the job's runtime env)") from None
                    raise AddressError(f"Ray address {self.address!r}: {why}") from None
                except RuntimeError as exc:  # Ray refuses a driver of another Python or Ray
                    if "version mismatch" not in str(exc).lower():
                        raise
                    why = " ".join(str(exc).split())[:400]
                    raise HeadUnreachable(f"the cluster runs another Python or Ray than this driver ({why}); "
                                          "install the same versions here") from None
                except Exception as exc:
                    if type(exc).__name__ != "AuthenticationError":
                        raise
                    raise ConnectionError(f"the cluster refused this driver's token: {exc}") from None
            started = False
        else:
            # a temp dir we own: a stale /tmp/ray/ray_current_cluster cannot hijack the session.
            # Token authentication stays on (Ray's default); only its opt-out notice is silenced.
            logging.getLogger(_AUTH_LOG).setLevel(logging.ERROR)
            self._tmp = owned_tmpdir("ray", "/tmp")  # a short path: Ray's socket names are limited
            # local workers inherit the thread settings from the raylet's environment: a runtime
            # env would do the same but costs ~2 s of agent set-up before the first task
            with _environ(THREAD_ENV), _prompt_node_wait(), _lean_local_head(), _sigterm_kept():
                ray.init(
                    address="local",
                    num_cpus=self.num_cpus or local_cpus(),
                    include_dashboard=False,
                    _temp_dir=self._tmp,
                    log_to_driver=False,
                    logging_level="WARNING",
                    configure_logging=True,
                )
            started = True
        res = ray.cluster_resources()
        self.info = ClusterInfo(
            address=self.address or "local",
            cpus=float(res.get("CPU", 0)),
            gpus=float(res.get("GPU", 0)),
            nodes=len([n for n in ray.nodes() if n.get("Alive")]),
            started_local=started,
        )
        self._started = started
        if not self.info.cpus:  # a head started with --num-cpus 0, its worker nodes not joined yet
            logging.getLogger("nova_ray").warning(
                "the Ray cluster at %s has no CPU yet: the tasks wait until a node with CPUs joins "
                "(see `ray status`)", self.info.address
            )
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Stop local Ray we started (only disconnect from a cluster). After a clean run that
        happens in a thread (stopping takes ~1.5 s, mostly waiting for processes to exit) while
        the caller goes on with the results: `wait_for_shutdown` joins it, as does the next
        `RayBackend` and the interpreter's exit. After an error it happens here and now."""
        global _SHUTDOWN
        import ray

        def stop() -> None:
            if self._owns_connection:
                with _sigterm_action_kept():
                    ray.shutdown()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

        if exc_type is None:
            _SHUTDOWN = threading.Thread(target=stop, name="nova-ray-shutdown")
            _SHUTDOWN.start()
        else:
            stop()

    def _more_cpus(self) -> int | None:
        """The cluster's CPUs when they grew since the last look (nodes that joined), else None."""
        import ray

        assert self.info is not None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus <= int(self.info.cpus):
            return None
        logging.getLogger("nova_ray").info("the cluster grew to %d CPUs: up to %d tasks in flight",
                                           cpus, TASKS_AHEAD * cpus)
        self.info.cpus = float(cpus)
        self.info.nodes = len([n for n in ray.nodes() if n.get("Alive")])  # the run's record names them
        return cpus

    def run(
        self,
        series: SeriesSet,
        jobs: list[tuple[EngineSpec, list[list[int]], dict[str, dict] | None]],
        lstm: tuple[EngineSpec, list[int], Any] | None = None,
        retries: int = 3,
        task_timeout: float = 0.0,
    ) -> Iterator[tuple[BatchResult, int]]:
        """Yield (result, n_items) as batches finish. `jobs` are (spec, batches, cached params by
        item); `lstm` is (spec, items, stored state or None): the LSTM actor trains alongside the
        tasks and is released as soon as it is done.

        Each task ships with its own items' series only, and at most `TASKS_AHEAD` per CPU are
        submitted at a time: the object store holds the series of the batches in flight, not the
        whole input, and the processes (the driver, each worker) map only those pages of it.

        A batch that still fails after its retries (a model that crashes its worker on one item,
        a bug), or that is cancelled `task_timeout` seconds after it was submitted (a model that
        never returns; 0: no limit), does not end the run: its items are fitted one by one, and an
        item that fails alone is fitted with seasonal naive only, flagged as a fallback with why
        (`_crashed`)."""
        import ray

        assert self.info is not None, "use RayBackend as a context manager"
        task = ray.remote(num_cpus=1, max_retries=retries)(_batch_task)
        alone = task.options(max_retries=min(retries, 1))  # a failed batch's item: the fault is likely its
        # (spec, batch, cached params, why the batch is a fallback or None)
        queue: list[tuple[EngineSpec, list[int], dict[str, dict] | None, str | None]] = [
            (spec, b, cached, None) for spec, batches, cached in jobs for b in batches][::-1]
        window = TASKS_AHEAD * max(1, int(self.info.cpus))
        # a cluster's CPUs may grow mid-run (workers that `ray up` is still setting up, a node
        # that rejoins): re-read them now and then, and keep more tasks in flight when they do
        refresh = None if self._started else CPU_REFRESH_S
        checked = time.monotonic()
        pending: dict = {}
        deadline: dict = {}  # ref -> when it is cancelled (task_timeout)
        late: set = set()  # refs cancelled for their deadline
        lstm_run = None
        if lstm and lstm[1]:  # first: a GPU actor gets its node's CPU before the tasks queue
            actor_cls = ray.remote(max_restarts=0, max_task_retries=0)(_LstmActor)
            only = predicts_only(series, lstm[1], lstm[0], lstm[2])  # a stored network as it is: a task
            lstm_task = ray.remote(num_cpus=1, max_retries=0)(_lstm_here) if only else None
            # a global model: it reads most of the series
            lstm_run = _LstmRun(actor_cls, (series, lstm[1], lstm[0], lstm[2]), len(lstm[1]), self.info.gpus,
                                lstm_task)

        def submit() -> None:
            """Submit batches (most expensive first) until `window` tasks are in flight."""
            while queue and len(pending) < window:
                spec, b, cached, why = queue.pop()
                ids = [str(series.item_ids[i]) for i in b]
                sub = {k: cached[k] for k in ids if cached and k in cached}
                run = alone if why is not None else task
                ref = run.remote(series.subset(b), list(range(len(b))), spec, sub or None)
                pending[ref] = (spec, b, cached, why)
                if task_timeout:
                    deadline[ref] = time.monotonic() + task_timeout

        def failed(entry: tuple, exc: Exception) -> None:
            """Queue a failed batch's items one by one, or a failed item's seasonal naive (first)."""
            spec, b, cached, why = entry
            what = why_failed(exc)
            if why is not None and spec.models == (FALLBACK,):
                raise exc  # seasonal naive alone failed too: nothing simpler to fall back on
            ids = ", ".join(str(series.item_ids[i]) for i in b[:5]) + (", ..." if len(b) > 5 else "")
            log = logging.getLogger("nova_ray")
            if len(b) > 1:
                log.warning("a batch of %d items (%s) failed (%s): fitting them one by one",
                            len(b), ids, what)
                queue.extend((spec, [i], cached, "") for i in b)
            else:
                log.warning("item %s failed on its own (%s): seasonal naive only, flagged", ids, what)
                queue.append((replace(spec, models=(FALLBACK,)), b, None, what))

        try:
            submit()
            while pending or lstm_run:
                waits = [*pending, *([lstm_run.ref] if lstm_run and lstm_run.ref is not None else [])]
                due = min(deadline.values(), default=None)
                due = None if due is None else max(0.0, due - time.monotonic())
                timeout = min((t for t in (refresh, lstm_run and lstm_run.timeout(), due) if t is not None),
                              default=None)
                if waits:
                    done, _ = ray.wait(waits, num_returns=1, timeout=timeout)
                else:  # only the LSTM, waiting for a lost node to be declared dead
                    done = []
                    time.sleep(timeout or 0.5)
                if refresh is not None and time.monotonic() - checked >= refresh:
                    checked = time.monotonic()
                    if cpus := self._more_cpus():
                        window = TASKS_AHEAD * cpus
                        submit()
                now = time.monotonic()
                for ref in [r for r, t in deadline.items() if t <= now and r not in done]:
                    del deadline[ref]  # a task that never returns: cancelled (its worker ended);
                    late.add(ref)  # its result comes back as an error, and its items are fitted apart
                    ray.cancel(ref, force=True)
                if lstm_run:  # also while tasks keep finishing: its deadlines are checked every time
                    lstm_run.poll()
                for ref in done:
                    if ref in pending:
                        entry = pending.pop(ref)
                        deadline.pop(ref, None)
                        try:
                            result = ray.get(ref)
                        except ray.exceptions.RayError as exc:  # after its retries, or cancelled when late
                            why = TimeoutError(f"no result {task_timeout:g} s after it was submitted")
                            failed(entry, why if ref in late else exc)
                            late.discard(ref)
                            submit()
                            continue
                        late.discard(ref)  # done as it was cancelled
                        submit()
                        yield (_crashed(result, entry[3]) if entry[3] else result), len(entry[1])
                        continue
                    if lstm_run is None or ref is not lstm_run.ref:
                        continue  # an LSTM ref replaced meanwhile (by `poll`)
                    try:
                        result = lstm_run.ready()
                    except StopIteration:  # the LSTM is done: its CPU (or GPU) goes to the tasks at once
                        lstm_run.kill()
                        lstm_run = None
                        continue
                    self.lstm_device = lstm_run.device
                    if result is not None:
                        yield result, lstm_run.n_items if result.name == FINAL_PART else 0
        finally:
            # a cluster's tasks would outlive this driver: cancel them. A local Ray we started
            # stops with its workers; cancelling there raced with replies already on their way
            # (Ray 2.60 then aborts the driver: "Tried to complete task that was not pending")
            for ref in pending if not self._started else ():
                ray.cancel(ref, force=True)
            if lstm_run is not None:
                lstm_run.kill()


def _node_report() -> dict[str, str]:
    """On a node's worker: its versions, and whether nova-ray's statistical models import there
    (a node whose copy of nova-ray lacks a module fails every task sent to it)."""
    import importlib
    import platform

    import ray

    from . import __version__
    from .models import MODELS

    for m in MODELS.values():
        if not m.is_global:  # TensorFlow's import is the doctor's GPU check's
            importlib.import_module(m.module, "nova_ray.models")
    return {"worker": _worker_name(), "python": platform.python_version(), "ray": ray.__version__,
            "nova_ray": __version__}


def _probe_nodes(timeout_s: float) -> list[dict[str, str]]:
    """`_node_report` from every alive node (pinned there), or the first line of its failure."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, max_retries=0)(_node_report)
    alive = [n for n in ray.nodes() if n.get("Alive")]
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in alive]
    out = []
    for node, ref in zip(alive, refs, strict=True):
        where = {"node": f"{node.get('NodeManagerAddress', '?')}/{node['NodeID'][:12]}"}
        try:
            out.append(where | ray.get(ref, timeout=timeout_s))
        except Exception as exc:  # noqa: BLE001 - reported per node, as one line: the last
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]  # of a remote traceback
            out.append(where | {"error": (lines[-1] if lines else type(exc).__name__)[:300]})
    return out


def probe_ray(address: str | None = None, num_cpus: int = 1, task_timeout_s: float = 60.0) -> dict[str, Any]:
    """Check that Ray works: join `address` (or RAY_ADDRESS), else start a throwaway local Ray with
    `num_cpus` CPUs in a temp dir we own; run one zero-CPU task, and one on each node that imports
    nova-ray's models there (`node_checks`); report the cluster. Raises on failure.

    `nova-ray doctor` runs this in a child process with a timeout (ray.init can hang on an unreachable
    address). An already initialized Ray session of this process is used and left as it is.
    """
    ray = _import_ray()
    t0 = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    tmp: str | None = None
    owned = not ray.is_initialized()
    try:  # a failed start too: what it started is stopped, its temp dir removed
        if owned and address:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        elif owned:
            logging.getLogger(_AUTH_LOG).setLevel(logging.ERROR)
            tmp = owned_tmpdir("probe", "/tmp")
            ray.init(
                address="local",
                num_cpus=num_cpus,
                include_dashboard=False,
                _temp_dir=tmp,
                log_to_driver=False,
                logging_level="ERROR",
            )
        res = ray.cluster_resources()
        started = time.perf_counter()
        worker = ray.get(ray.remote(num_cpus=0, max_retries=0)(_worker_name).remote(), timeout=task_timeout_s)
        nodes = _probe_nodes(task_timeout_s)
        return {
            "address": address or ("local" if owned else "existing session"),
            "ray_version": ray.__version__,
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]),
            "cpus": float(res.get("CPU", 0)),
            "gpus": float(res.get("GPU", 0)),
            "started_local": owned and not address,
            "worker": worker,
            "task_seconds": round(time.perf_counter() - started, 3),
            "seconds": round(time.perf_counter() - t0, 3),
            "node_checks": nodes,
        }
    finally:
        if owned:  # also a start that failed after the head's processes were up
            ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
