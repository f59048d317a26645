"""Hand freed heap memory back to the operating system between build phases.

NumPy allocates arrays above glibc's mmap threshold with mmap and unmaps them
when freed. But glibc raises that threshold each time such an array is freed
(to at most 32 MiB on 64-bit systems, per glibc's mallopt(3) page on
M_MMAP_THRESHOLD). Later arrays then come from the heap, and the heap keeps
their pages after they are freed. In a full-size build that left about
200 MiB of freed memory resident after deduplication, which then counted
toward the peak of the Parquet phase.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """Return glibc's malloc_trim, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        # musl, macOS and Windows have no malloc_trim.
        return None


def release_free_memory() -> None:
    """Return the heap's free pages to the operating system, where glibc allows it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
