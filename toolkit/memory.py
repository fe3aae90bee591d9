"""Process memory behaviour for batched tensor work on CPU: fast reuse with a bound.

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh
``mmap`` and returns it with ``munmap`` when freed, so a loop that allocates the same
large activations batch after batch page-faults all of them in again each time: on the
2-core machines measured (docs/PERFORMANCE.md) frozen-encoder inference spent more time in
the kernel than computing. :func:`retain_freed_memory` serves large blocks from the heap
and keeps freed memory for reuse while the block runs, then restores glibc's behaviour.

Kept heap is not reused perfectly: small long-lived allocations land inside freed large
blocks, so the next batch's activations no longer fit there and the heap grows instead.
How fast depends on which threads allocated what, so unbounded, the same extraction peaked
anywhere from 0.6 to 16 GB (docs/PERFORMANCE.md). The block therefore has a budget: loops
call :func:`heap_checkpoint` between batches, and when the resident size exceeds what it
was after the last release plus ``keep_bytes``, every arena's free pages go back to the
system (``malloc_trim``). Peak memory is then at most the live data + ``keep_bytes`` + one
batch's allocations, whatever the timing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# mallopt parameters (glibc's malloc.h) and their documented defaults.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_BYTES = 512 << 20  # freed heap kept for reuse: a few batches of DGCNN activations
_INT_MAX = 2**31 - 1  # mallopt takes a C int
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") else None


def resident_bytes() -> int | None:
    """This process's resident set size now (Linux ``/proc/self/statm``), None elsewhere."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class HeapBudget:
    """The bound of an active :func:`retain_freed_memory` block: ``limit`` resident bytes
    before freed memory is released; ``releases`` counts the releases so far."""

    keep_bytes: int
    limit: int
    releases: int = 0

    def check(self, libc: ctypes.CDLL) -> None:
        resident = resident_bytes()
        if resident is None or resident <= self.limit:
            return
        libc.malloc_trim(0)
        self.releases += 1
        self.limit = (resident_bytes() or resident) + self.keep_bytes


_active: HeapBudget | None = None


def heap_checkpoint() -> None:
    """Call between batches: inside :func:`retain_freed_memory`, release freed memory when
    the process is over its budget; outside one, nothing (a cheap no-op)."""
    libc = _glibc()
    if _active is not None and libc is not None:
        _active.check(libc)


@contextmanager
def retain_freed_memory(keep_bytes: int = KEEP_BYTES) -> Iterator[HeapBudget | None]:
    """Within the block, allocate large blocks from the heap (no mmap) and keep up to about
    ``keep_bytes`` of freed memory for reuse, enforced at each :func:`heap_checkpoint`.
    Yields the :class:`HeapBudget` (None where the C library is not glibc or the resident
    size cannot be read: then the block changes nothing). Blocks do not nest: an inner one
    runs under the outer one's budget."""
    global _active
    libc = _glibc()
    resident = resident_bytes()
    if libc is None or resident is None or _active is not None:
        yield _active
        return
    _active = HeapBudget(keep_bytes, resident + keep_bytes)
    libc.mallopt(_M_TRIM_THRESHOLD, min(int(keep_bytes), _INT_MAX))
    libc.mallopt(_M_MMAP_MAX, 0)
    try:
        yield _active
    finally:
        _active = None
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)
