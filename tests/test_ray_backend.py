"""A local Ray session started by RayBackend: stopped in the background after a clean exit, at once
after an error, and always before the next session or the end of a run."""

import os

import pytest
import ray

from nova_ray import distributed


def _one() -> int:
    """One trivial task (a lambda: shipped by value, the test module is not importable in workers)."""
    return ray.get(ray.remote(num_cpus=1)(lambda: 1).remote())


def test_clean_exit_stops_ray_in_the_background_and_the_next_session_waits() -> None:
    from ray._private import services

    lookup = services.get_node
    with distributed.RayBackend(None, 1) as backend:
        tmp = backend._tmp
        assert backend.info.started_local and tmp and os.path.isdir(tmp)
        assert services.get_node is lookup  # the prompt wait for the raylet patched ray.init only
        assert _one() == 1
    assert distributed._SHUTDOWN is not None  # the caller goes on while Ray stops
    with distributed.RayBackend(None, 1) as again:  # joins the previous stop before starting
        assert not os.path.exists(tmp)
        assert _one() == 1
        pids = _session_pids()
        assert "monitor" in pids and "raylet" in pids  # the monitor is stopped first, by SIGKILL
    distributed.wait_for_shutdown()
    assert distributed._SHUTDOWN is None and not ray.is_initialized()
    assert not os.path.exists(again._tmp)
    alive = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not alive, f"processes of the stopped session still run: {alive}"


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
    assert distributed._SHUTDOWN is None and not ray.is_initialized() and not os.path.exists(tmp)
