"""The run's fan-out on a Ray session: statistical batches as tasks, a bounded number in flight,
the LSTM beside them, retries, one-by-one refits of a failed batch, deadlines."""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ..engine import FALLBACK, BatchResult, EngineSpec, failed_note, why_failed
from ..global_lstm import FINAL_PART, predicts_only
from ..series import SeriesSet
from ..tmpdirs import owned_tmpdir
from .lstm_run import _LstmRun
from .session import (
    _import_ray,
    _sigterm_action_kept,
    join_cluster,
    local_cpus,
    start_local,
    stop_in_background,
    wait_for_shutdown,
)
from .worker import _batch_task, _lstm_here, _LstmActor

TASKS_AHEAD = 2  # statistical tasks in flight per CPU: one running, one queued behind it
CPU_REFRESH_S = 5.0  # how often a run on a cluster re-reads its CPUs (nodes joining mid-run)


def _crashed(result: BatchResult, why: str) -> BatchResult:
    """The seasonal-naive result of an item whose own task failed (`why`), flagged a fallback."""
    import pyarrow as pa

    items = result.items
    said = [failed_note(n, why) for n in items.column("notes").to_pylist()]
    items = items.set_column(items.schema.get_field_index("notes"), "notes", pa.array(said, pa.string()))
    flag = pa.array([True] * items.num_rows, pa.bool_())
    result.items = items.set_column(items.schema.get_field_index("fallback"), "fallback", flag)
    return result


@dataclass
class ClusterInfo:
    address: str
    cpus: float
    gpus: float
    nodes: int
    started_local: bool


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
        elif self.address:
            join_cluster(self.address, named="environment variable RAY_ADDRESS" if self._from_env else "")
            started = False
        else:
            self._tmp = owned_tmpdir("ray", "/tmp")  # a short path: Ray's socket names are limited
            start_local(self._tmp, self.num_cpus or local_cpus())
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
        import ray

        def stop() -> None:
            if self._owns_connection:
                with _sigterm_action_kept():
                    ray.shutdown()
            if self._tmp:
                shutil.rmtree(self._tmp, ignore_errors=True)

        if exc_type is None:
            stop_in_background(stop)
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
        start_lstm = None  # the LSTM's start, when it waits for the first tasks
        if lstm and lstm[1]:
            actor_cls = ray.remote(max_restarts=0, max_task_retries=0)(_LstmActor)
            only = predicts_only(series, lstm[1], lstm[0], lstm[2])  # a stored network as it is: a task
            lstm_task = ray.remote(num_cpus=1, max_retries=0)(_lstm_here) if only else None

            def start() -> _LstmRun:  # a global model: it reads most of the series
                return _LstmRun(actor_cls, (series, lstm[1], lstm[0], lstm[2]), len(lstm[1]), self.info.gpus,
                                lstm_task)

            # A GPU actor gets its node's CPU, and a stored network's task its worker, before the
            # tasks queue. An actor on CPU starts right after the first tasks: they take the workers
            # that Ray started with the session, and its own process starts beside them. Started
            # first, it took one of those, and Ray started two more for the task left (one unused
            # and ended 2 s later): the second task began ~2 s into the fit (100 demo items).
            if only or self.info.gpus >= 1:
                lstm_run = start()
            else:
                start_lstm = start

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
            if start_lstm is not None:
                lstm_run = start_lstm()
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
