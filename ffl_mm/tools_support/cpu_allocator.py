# Copyright (c) ffl_mm contributors.
"""glibc tuning for training on the CPU. Not imported by ``import ffl_mm``."""
import os


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process on glibc, for training on the CPU.

    By default glibc serves every large block (an activation map, a
    gradient) with a fresh ``mmap`` and returns it to the system when it is
    freed, so each training step page-faults its whole working set again,
    and MMEngine's order (gradients freed after the optimizer step) costs
    more than zeroing them before backward. With the tuning the process
    keeps its peak memory instead of returning it between steps; figures
    in docs/benchmarks.md.

    A no-op (returns False) off glibc, or with the environment variable
    ``FFL_MM_NO_MALLOC_TUNING=1``.
    """
    if os.environ.get('FFL_MM_NO_MALLOC_TUNING') == '1':
        return False
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1  # large blocks from the heap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never trim it
    ok &= mallopt(_M_TOP_PAD, 2**28) == 1  # grow it in 256 MB steps
    return bool(ok)
