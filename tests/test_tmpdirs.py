"""Temp folders named for their owning process: a later run removes those whose owner died."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nova_ray.tmpdirs import owned_tmpdir, sweep


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_new_folder_removes_those_of_dead_owners_only(tmp_path: Path) -> None:
    dead, me = _dead_pid(), os.getpid()
    orphan = tmp_path / f"nova-ray-worker-{dead}-abc"
    (orphan / "tmpx").mkdir(parents=True)
    (orphan / "tmpx" / "stan.csv").write_text("1")
    mine = tmp_path / f"nova-ray-worker-{me}-def"
    other_kind = tmp_path / f"nova-ray-run-{dead}-ghi"
    unstamped = tmp_path / "nova-ray-worker-xyz"  # not ours to judge
    for d in (mine, other_kind, unstamped):
        d.mkdir()
    new = Path(owned_tmpdir("worker", str(tmp_path)))
    assert new.name.startswith(f"nova-ray-worker-{me}-") and new.is_dir()
    assert not orphan.exists()
    assert mine.exists() and other_kind.exists() and unstamped.exists()
    assert sweep("run", str(tmp_path)) == [str(other_kind)] and not other_kind.exists()
    assert sweep("run", str(tmp_path / "missing")) == []


def test_a_zombie_owner_counts_as_gone(tmp_path: Path) -> None:
    """A process that exited but was never reaped (a Ray worker whose raylet is gone, under a PID 1
    that does not reap) still answers signals: its folder is removed all the same."""
    import time

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.05)
        os.kill(p.pid, 0)  # a zombie: still there for signals
        folder = tmp_path / f"nova-ray-worker-{p.pid}-abc"
        folder.mkdir()
        assert sweep("worker", str(tmp_path)) == [str(folder)] and not folder.exists()
    finally:
        p.wait()
