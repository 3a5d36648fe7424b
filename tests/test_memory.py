"""Freed memory goes back to the OS: Polars' allocator as soon as a table is freed; collections
during a run skip the objects that existed before it."""

import subprocess
import sys
from pathlib import Path

PROBE = """
import os{first}
import polars as pl

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024

before = rss()
for _ in range(3):  # tables of ~80 MiB, built and freed
    df = pl.DataFrame({{"a": pl.int_range(0, 10_000_000, eager=True)}}).with_columns(b=pl.col("a") * 2)
    df = df.sort("b", descending=True)
    del df
print(rss() - before, os.environ["_RJEM_MALLOC_CONF"])
"""


def _probe(first: str, env: dict[str, str] | None = None) -> tuple[float, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True, check=True, env=env
    )
    kept, conf = out.stdout.split()
    return float(kept), conf


def test_polars_hands_freed_pages_back_once_nova_ray_is_imported() -> None:
    """After `import nova_ray`, tables that Polars freed leave little resident memory behind
    (Polars' own default keeps the freed pages until it allocates again: ~350 MiB here); a
    setting of the user's own wins."""
    import os

    # this process's Polars wrote its own setting into the environment: the probes start without it
    clean = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    kept, conf = _probe("\nimport nova_ray", env=clean)
    default, _ = _probe("", env=clean)
    assert conf.endswith("dirty_decay_ms:0,muzzy_decay_ms:0")
    assert kept < 0.25 * default and default - kept > 100, (kept, default)  # here ~10-25 against ~350 MiB
    _, mine = _probe("\nimport nova_ray", env={**clean, "_RJEM_MALLOC_CONF": "narenas:2"})
    assert mine.endswith("narenas:2") and "dirty_decay_ms:0," not in mine


def test_arrow_uses_the_system_allocator_where_nova_ray_is_imported_first() -> None:
    """Arrow's mimalloc pool kept the pages its readers freed (33 MiB at 2000 items with nothing
    allocated): the CLI's process, and the Ray workers it starts, use the system allocator, which
    `release_memory` trims; a user's own setting wins."""
    import os

    code = "import nova_ray.cli, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    run = lambda e: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,  # noqa: E731
                                   check=True, env=e).stdout.strip()
    assert run(env) == "system"
    assert run({**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"


FROZEN = """
import gc, sys, weakref
from nova_ray.config import ConfigError, load_config
from nova_ray.fit_stage import Silent
from nova_ray.memory import frozen_heap, release_memory
from nova_ray.pipeline import run_forecast

class Node:
    pass

def cycle():  # a weak reference to two objects that only refer to each other: garbage at once
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)

gc.disable()  # no automatic collection in between: the script decides when one runs
assert gc.get_freeze_count() == 0
old = cycle()
with frozen_heap():
    assert gc.get_freeze_count() > 50_000  # the imports' objects
    with frozen_heap():  # a nested block freezes what exists at its entry too
        pass
    assert gc.get_freeze_count() > 0  # and its end leaves the outer block's freeze
    new = cycle()
    release_memory()
    assert new() is None and old() is not None  # made in the block: collected; there on entry: skipped
assert gc.get_freeze_count() == 0
gc.collect()
assert old() is None  # handed back by the outermost block's end
gc.enable()

frozen = {}

class Watch(Silent):
    def stage(self, name, total=None):
        frozen[name] = gc.get_freeze_count()

def cfg(**kw):
    settings = {"data": sys.argv[1] + "/demand.parquet", "output": sys.argv[2] + "/out",
                "models_dir": sys.argv[2] + "/models", "models": "naive", "horizon": 7, **kw}
    return load_config(None, settings, env={}, dotenv=None)

run_forecast(cfg(), use_ray=False, progress=Watch())
assert {"read input", "fit and backtest", "publish"} <= set(frozen), frozen
assert min(frozen.values()) > 50_000, frozen
assert gc.get_freeze_count() == 0
try:
    run_forecast(cfg(backtest_windows=0), use_ray=False, only="metrics")  # fails once the input is read
    raise SystemExit("no ConfigError")
except ConfigError:
    assert gc.get_freeze_count() == 0
print("ok")
"""


def test_a_run_collects_only_what_it_made_and_hands_the_rest_back_as_it_ends(
    small_demo: Path, tmp_path: Path
) -> None:
    """`frozen_heap`, in a fresh process: collections inside walk only what the block made (a full
    one walked every module imported: 0.1-0.26 s with TensorFlow's, several times a run), and
    what was garbage on entry is freed once the outermost block ends. `run_forecast` is such a
    block, every stage frozen, handed back as the run ends, also when it fails."""
    out = subprocess.run([sys.executable, "-c", FROZEN, str(small_demo), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
