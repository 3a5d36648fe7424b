"""nova-ray: spare-parts demand forecasting and purchasing recommendations on Ray."""

import os as _os

__version__ = "0.1.0"

# Polars' allocator (jemalloc; Polars sets a decay of 0.5 s for freed pages, 1 s for lazily freed
# ones) purges only when it allocates again: after a stage's tables were freed, a run's driver
# held 20-40 MiB it no longer used (90 MiB in a loop over 200-item chunks). Freed pages go back
# at once instead. Read when polars loads, so only where nova-ray is imported first (the CLI, the
# benchmarks); a value set by the user wins.
_os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
# Arrow's default pool (mimalloc) kept the pages that its readers and writers freed: at 2000 items
# 33 MiB against 9 at 200, with nothing allocated. The system allocator, which `release_memory`
# trims after each stage, hands them back (the driver's peak 11-26 MiB lower at 2000 items).
# Read when Arrow creates its pool, so only where nova-ray is imported before pyarrow (and pandas,
# which imports it): the CLI, the Ray workers it starts; a value set by the user wins.
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
