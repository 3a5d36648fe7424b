"""Starting, joining and stopping a Ray session: a lean private local head in a temp dir we own,
a cluster joined with the workers' thread settings, the CLI's SIGTERM handling kept across Ray's,
and a stop in the background that the next session waits for."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..config import ConfigError
from .address import AddressError, HeadUnreachable, check_address
from .worker import THREAD_ENV

NO_CRASH_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"
_AUTH_LOG = "ray._private.authentication.authentication_token_setup"  # its opt-out notice


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


def join_cluster(address: str, named: str = "") -> None:
    """Connect this driver to the cluster at `address` (checked first: `check_address`); workers
    started by `ray start` get the thread settings as a runtime env. Ray's failures become one
    line: an address it cannot parse (AddressError), a runtime env that clashes with ours
    (ConfigError), another Python or Ray on the cluster (HeadUnreachable), a refused token
    (ConnectionError). `named`: where the address came from, when the user did not give it."""
    ray = _import_ray()
    check_address(address, named=named)
    with _sigterm_kept():
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": THREAD_ENV},
                log_to_driver=False,
                logging_level="WARNING",
            )
        except ValueError as exc:  # an address Ray cannot parse
            why = " ".join(str(exc).split())
            if "runtime env" in why.lower():  # a job's env_vars clash with THREAD_ENV
                raise ConfigError(f"Ray job: {why} (nova-ray sets {', '.join(THREAD_ENV)} "
                                  "itself: leave them out of the job's runtime env)") from None
            raise AddressError(f"Ray address {address!r}: {why}") from None
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


def start_local(temp_dir: str, num_cpus: int) -> None:
    """Start a private one-node Ray of `num_cpus` CPUs in `temp_dir` (a folder we own: a stale
    /tmp/ray/ray_current_cluster cannot hijack the session) and connect to it. Token
    authentication stays on (Ray's default); only its opt-out notice is silenced. Local workers
    inherit the thread settings from the raylet's environment: a runtime env would do the same
    but costs ~2 s of agent set-up before the first task."""
    ray = _import_ray()
    logging.getLogger(_AUTH_LOG).setLevel(logging.ERROR)
    with _environ(THREAD_ENV), _prompt_node_wait(), _lean_local_head(), _sigterm_kept():
        ray.init(
            address="local",
            num_cpus=num_cpus,
            include_dashboard=False,
            _temp_dir=temp_dir,
            log_to_driver=False,
            logging_level="WARNING",
            configure_logging=True,
        )


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


_SHUTDOWN: threading.Thread | None = None  # a session stopping in the background


def wait_for_shutdown() -> None:
    """Block until the Ray session that a `RayBackend` stops in the background has stopped."""
    global _SHUTDOWN
    if _SHUTDOWN is not None:
        _SHUTDOWN.join()
        _SHUTDOWN = None


def stop_in_background(stop: Callable[[], None]) -> None:
    """Run `stop` (a session's shutdown) in a thread that `wait_for_shutdown` joins."""
    global _SHUTDOWN
    _SHUTDOWN = threading.Thread(target=stop, name="nova-ray-shutdown")
    _SHUTDOWN.start()
