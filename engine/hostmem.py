"""Keep freed host memory inside the process instead of handing it back to the OS (glibc).

XLA's CPU runtime mallocs every call's buffers (outputs and temporaries) afresh. By default glibc
returns large freed blocks to the OS, so the next call takes them back as new pages, each one a
page fault that the kernel zeroes: ~3 us per 4 KiB page on our VMs. A simulator call at d = 50
took 1000-3000 such faults (4-12 MiB), a fifth to a third of its time, and the time varied from
call to call. With these two settings a process keeps its peak heap for reuse, as tcmalloc and
jemalloc do: the faults drop to ~0 and the call is 1.1-1.4x faster (measured side by side; see
benchmarks/simulate.py).

- M_MMAP_THRESHOLD = 32 MiB (glibc's maximum): blocks below it come from the heap, not from a
  fresh mmap per allocation (setting it also stops glibc's own adaptive threshold).
- M_TRIM_THRESHOLD = 2 GiB: free() no longer gives the top of the heap back to the OS.

The price is memory that stays resident after a peak. acbo's CLI sets this once at start; a
program that drives the engine from Python may call ``retain_freed_memory()`` itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
_MMAP_THRESHOLD = 32 << 20  # glibc refuses more (HEAP_MAX_SIZE / 2 on 64-bit)
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int


def retain_freed_memory() -> bool:
    """Set glibc's malloc to keep freed memory (see the module docstring). Returns whether both
    settings took effect; False (and no change) where the C library has no mallopt."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: macOS, Windows, some musl builds
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return mmap_ok and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
