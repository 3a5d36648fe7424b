"""Freed memory goes back to the OS: Polars' allocator as soon as a table is freed."""

import subprocess
import sys

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
