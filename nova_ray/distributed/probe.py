"""`nova-ray doctor`'s Ray check: join or start a throwaway session, run a task on every node."""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from ..tmpdirs import owned_tmpdir
from .session import _import_ray, join_cluster, start_local
from .worker import _worker_name


def _node_report() -> dict[str, str]:
    """On a node's worker: its versions, and whether nova-ray's statistical models import there
    (a node whose copy of nova-ray lacks a module fails every task sent to it)."""
    import importlib
    import platform

    import ray

    from .. import __version__
    from ..models import MODELS

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
    `num_cpus` CPUs in a temp dir we own, both as a run does; run one zero-CPU task, and one on each
    node that imports nova-ray's models there (`node_checks`); report the cluster. Raises on failure.

    `nova-ray doctor` runs this in a child process with a timeout (ray.init can hang on an unreachable
    address). An already initialized Ray session of this process is used and left as it is.
    """
    ray = _import_ray()
    t0 = time.perf_counter()
    address = address or os.environ.get("RAY_ADDRESS") or None
    tmp: str | None = None
    owned = not ray.is_initialized()
    try:  # a failed start too: what it started is stopped, its temp dir removed
        if owned and address:  # as a run joins it (its errors as one line)
            join_cluster(address)
        elif owned:  # as a run starts it (the lean head, the workers' thread settings)
            tmp = owned_tmpdir("probe", "/tmp")
            start_local(tmp, num_cpus)
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
