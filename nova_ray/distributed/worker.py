"""What runs in Ray's worker processes: their thread settings, a private temp folder, the niceness
of the statistical tasks, the batch task and the LSTM actor (both call the local path's engine)."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..engine import BatchResult, EngineSpec, forecast_batch
from ..global_lstm import lstm_parts
from ..memory import release_memory
from ..series import SeriesSet
from ..tmpdirs import owned_tmpdir

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


# Task workers run at this niceness (once per worker process; Ray's workers belong to one job):
# on CPU the LSTM actor shares the cores with them, and as the one piece of work that cannot be
# split it should keep a core to itself and finish before the tasks do, not after them with a
# core idle; the driver streaming results keeps priority too.
TASK_NICENESS = 5
_NICED = False


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
        from ..models.lstm import configure_tensorflow

        configure_tensorflow(self.threads)
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
