"""The global LSTM on its actor (or, for a stored network that only forecasts, a task), driven from
the run's loop: the GPU check, training on CPU when no GPU is usable, runs again when it is lost."""

from __future__ import annotations

import logging
import time
from typing import Any

from ..engine import BatchResult
from ..global_lstm import FINAL_PART

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
