"""Handing freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

_frozen = 0  # open `frozen_heap` blocks in this process
_frozen_lock = threading.Lock()


def release_memory(collect: bool = True) -> None:
    """Give freed memory back to the OS: Arrow's pool and glibc's heap keep what a large
    temporary table used (~100-200 MiB after reading 2 M rows), and glibc's per-thread arenas
    what TensorFlow's threads freed after training, unless asked. `collect=False` skips the
    garbage collection of reference cycles (70-85 ms in a worker holding the models' imports,
    where the trim itself takes under 1 ms; inside `frozen_heap`, only what the block made)."""
    if collect:
        gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Garbage collections inside skip the objects that existed on entry (`gc.freeze`): the
    imported modules' ~0.2-1 M objects (TensorFlow's, pandas', Ray's), which a full collection
    walks every time (0.1-0.26 s) without finding anything to free. What the block makes is
    collected as before. A nested block freezes what exists at its entry too; the outermost
    block's end hands every frozen object back to the collector (`gc.unfreeze`, also what was
    frozen before the block): what was garbage on entry is freed later, never kept for good."""
    global _frozen
    with _frozen_lock:
        gc.freeze()
        _frozen += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen -= 1
            if not _frozen:
                gc.unfreeze()
