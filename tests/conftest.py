"""Shared fixtures: small demo data, quiet libraries, one Ray session per module that asks for it."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")
# stored models of CLI runs go to a throwaway folder, never the checkout's models/, removed at the end
if "NOVA_RAY_MODELS_DIR" not in os.environ:
    os.environ["NOVA_RAY_MODELS_DIR"] = tempfile.mkdtemp(prefix="nova-ray-test-models-")
    atexit.register(shutil.rmtree, os.environ["NOVA_RAY_MODELS_DIR"], True)


def _freeze() -> None:
    """Collect, then move every object alive into the garbage collector's permanent generation
    (`gc.freeze`; frozen objects are still freed by reference counting). This one long process
    holds TensorFlow, Prophet, Ray and every module's fixtures, and each full collection walked
    them all again (0.2-0.3 s); the pipeline asks for one after each stage (`release_memory`), so
    the incremental and checkpoint tests spent 134 of their 274 s collecting (176 s frozen).
    Each run and LSTM training now freezes what exists as it starts and unfreezes everything as it
    ends (`nova_ray.memory.frozen_heap`), this freeze too: what stays of it serves the tests that
    call models directly. (One `frozen_heap` block per module instead, which keeps the freeze for
    the module, cost more: each module's first collection then walked the whole heap, 1-2 s.)"""
    import gc

    gc.collect()
    gc.freeze()


def _import_libraries() -> None:
    """The model and Ray libraries, imported once before the first freeze."""
    import importlib

    for name in ("tensorflow", "keras", "prophet", "statsforecast", "statsmodels.api", "ray", "polars",
                 "pandas", "pyarrow.dataset"):
        importlib.import_module(name)


_import_libraries()
_freeze()


@pytest.fixture(scope="module", autouse=True)
def _frozen_before_each_module() -> None:
    """What earlier modules left alive (imports, session fixtures, caches) frozen in turn; their
    module fixtures are gone by now, and their garbage is collected first."""
    _freeze()


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dozen items, one year of daily history."""
    from nova_ray.demo import generate_demo

    out = tmp_path_factory.mktemp("demo")
    generate_demo(out, items=12, days=365, seed=7)
    return out


@pytest.fixture(scope="module")
def ray_session():
    """A real local Ray with 2 CPUs, shared by the tests of one module."""
    import ray

    from nova_ray.distributed import THREAD_ENV

    tmp = tempfile.mkdtemp(prefix="nova-ray-test-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=tmp,
        runtime_env={"env_vars": THREAD_ENV},
        log_to_driver=False,
        logging_level="WARNING",
    )
    yield ray
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _held_by_another_process(folder: Path) -> Iterator[None]:
    """The job lock on `folder`, held by a child process (within one process it is re-entrant)."""
    code = (
        "import sys, time; from nova_ray.io.lock import job_lock\n"
        f"with job_lock({str(folder)!r}):\n    print('held', flush=True); sys.stdin.read()"
    )
    pipe = subprocess.PIPE
    p = subprocess.Popen([sys.executable, "-c", code], stdin=pipe, stdout=pipe, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        yield
    finally:
        p.communicate("", timeout=30)


@pytest.fixture()
def held_elsewhere() -> Callable[[Path], AbstractContextManager[None]]:
    """`with held_elsewhere(folder):` the nova-ray job lock on `folder`, held by another process."""
    return _held_by_another_process


@pytest.fixture()
def killed_at_publish(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`killed_at_publish(cfg, **run_forecast_kwargs)`: a local run (no Ray) killed (Ctrl-C) as it
    publishes: every batch checkpointed and the model store written, nothing published."""
    from nova_ray.io.results import ResultWriter
    from nova_ray.pipeline import run_forecast

    def run(cfg: object, **kw: object) -> None:
        commit = ResultWriter.commit

        def killed(self: object, *args: object, **kwargs: object) -> None:
            monkeypatch.setattr(ResultWriter, "commit", commit)
            raise KeyboardInterrupt

        monkeypatch.setattr(ResultWriter, "commit", killed)
        with pytest.raises(KeyboardInterrupt):
            run_forecast(cfg, use_ray=False, **kw)

    return run
