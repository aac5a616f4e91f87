"""The C allocator's settings for CPU tensor work: keep freed tensor memory instead of unmapping it.

Every CPU forward pass allocates and frees tensors of 1-60 MB (a batch of gaze patches,
activations). glibc's ``malloc`` serves blocks above its mmap threshold (128 KB, rising
dynamically to at most 32 MB) with fresh ``mmap`` calls and returns them on ``free``, and
trims the top of its heap beyond twice that threshold: the next batch takes a page fault
for every 4 KB it touches again. Measured on this project's 2-core VM with
``scripts/bench_prepare.py`` (``docs/PERFORMANCE.md``): the forward alone over 96 faces of
the paper configuration spends 3.74 of its 26.7 CPU-seconds in the kernel that way and is
1.19x faster in wall time with the thresholds below; over 600 faces of the tiny model,
0.78 of 2.16 CPU-seconds, 1.90x faster.

:func:`tune_for_tensors` raises the mmap threshold to 256 MB and the trim threshold to
1 GB (``mallopt``, the same settings as the ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_`` environment variables): memory freed by one batch is reused by
the next. The price is that up to 1 GB freed by the process may stay mapped to it until
it exits. The CLI calls it at start-up; ``GAZECLIP_MALLOC_TUNING=0`` leaves the allocator
alone, and so do settings already given through the environment. Only glibc (Linux) has
these knobs; elsewhere nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 << 20
TRIM_THRESHOLD_BYTES = 1 << 30
ENV_SWITCH = "GAZECLIP_MALLOC_TUNING"
_GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_for_tensors() -> bool:
    """Set glibc's mmap and trim thresholds for tensor work (see the module docstring).

    Returns:
        True when the settings were applied; False when switched off, already set through
        the environment, or not on glibc.
    """
    if os.environ.get(ENV_SWITCH, "1") == "0" or any(name in os.environ for name in _GLIBC_ENV):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold above glibc's maximum is refused.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
