"""Freed buffers go back to the system at once, so a process's memory falls after its largest request.

glibc serves a large allocation from its own mapping and returns it when freed, but raises that size
threshold each time such a block is freed (up to 32 MiB), after which frame-sized buffers (a few MiB each)
come from the heap and stay there once freed: a worker or a decoding helper that has answered one long loop
would keep that loop's memory for good. A fixed threshold turns the adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: mallopt's parameter number for the threshold (glibc's malloc.h).
_M_MMAP_THRESHOLD = -3
#: Blocks from this size up get their own mapping: every frame and map buffer, none of the small objects.
MMAP_THRESHOLD_BYTES = 256 * 1024


def return_large_buffers_to_the_system() -> None:
    """Fix glibc's mmap threshold for this process; nothing to do on other C libraries."""
    name = ctypes.util.find_library("c")
    if name is None:
        return
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
