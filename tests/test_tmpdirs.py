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
