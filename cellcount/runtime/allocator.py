"""glibc allocator settings that make CPU inference and training faster.

Counting (:class:`cellcount.counter.Counter`) and training (``cellcount.train``)
call :func:`tune_allocator` once; ``CELLCOUNT_MALLOC_TUNING=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import os

# glibc ``mallopt`` parameters (<malloc.h>). Its value is a C int, so the trim
# threshold can be at most 2 GiB (the MALLOC_TRIM_THRESHOLD_ variable takes more).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_TRIM_THRESHOLD = 2**31 - 1
MALLOC_TUNING_ENV = "CELLCOUNT_MALLOC_TUNING"
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def tune_allocator() -> bool:
    """Let glibc reuse freed activation buffers instead of returning them (Linux only).

    By default glibc serves every allocation above 32 MiB (each activation of a
    large image or tile) with a fresh ``mmap`` and unmaps it when freed, so every
    forward pass page-faults all its activations anew: ~45 % of fp32 CPU
    inference time (BENCHMARKS.md section 4); training steps likewise. With
    ``M_MMAP_MAX = 0`` (large blocks come from the heap too) and
    ``M_TRIM_THRESHOLD`` = 2 GiB (the most ``mallopt`` takes: the heap is shrunk
    only when that much is free at its top), freed buffers are reused: same
    results, fp32 c-ResUnet inference of a 1600 x 1200 image ~1.7x faster, CPU
    training steps ~1.25x. The cost is memory: the heap fragments and keeps its
    peak resident (BENCHMARKS.md section 6 measures both settings).

    A silent no-op when the C library is not glibc (macOS, musl), when
    ``CELLCOUNT_MALLOC_TUNING=0``, or when the user configures these settings
    (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``
    or ``glibc.malloc`` tunables): theirs win.

    Returns:
        whether the settings were applied.
    """
    if os.environ.get(MALLOC_TUNING_ENV, "1") == "0":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, ValueError):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
