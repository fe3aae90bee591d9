"""Process memory behaviour for batched tensor work on CPU.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so a loop that allocates the same
large activations batch after batch page-faults all of them in again each time: on the
2-core machines measured (docs/PERFORMANCE.md) frozen-encoder inference spent more time in
the kernel than computing. :func:`retain_freed_memory` serves large blocks from the heap
and keeps freed memory for reuse while the block runs, then restores glibc's behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Iterator
from contextlib import contextmanager

# mallopt parameters (glibc's malloc.h) and their documented defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


@contextmanager
def retain_freed_memory(keep_bytes: int = 1 << 30) -> Iterator[None]:
    """Within the block, allocate large blocks from the heap (no mmap) and keep up to
    ``keep_bytes`` of freed memory instead of returning it to the system. A no-op where
    the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(_M_TRIM_THRESHOLD, int(keep_bytes))
    libc.mallopt(_M_MMAP_MAX, 0)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
