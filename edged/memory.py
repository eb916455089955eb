"""Large buffers go back to the system when freed: glibc's mmap threshold, fixed.

glibc raises its mmap threshold after each large free (up to 32 MiB, mallopt(3)), so the
buffers of one large mail (the upload, its base64 lines, their text, the message's pieces)
soon come from the heap instead, where a freed block stays resident and a larger one cannot
reuse it: one 25 MB `mail.send` then left the daemon 3x its size above its floor, and that
resident for good. Fixed at 4 MiB, every allocation that large is a mapping of its own,
given back when freed, and the heap serves the small objects (docs/benchmarks.md, Lm). The
cost is a fresh mapping, and its page faults, per large buffer. Another C library: nothing.
"""

from __future__ import annotations

import ctypes
import logging

__all__ = ["LARGE_BUFFER", "return_large_buffers"]

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
LARGE_BUFFER = 4 << 20


def return_large_buffers() -> bool:
    """Fix the mmap threshold at LARGE_BUFFER (process-wide); True where glibc took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library already loaded in this process
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, LARGE_BUFFER))
    if not done:
        log.debug("the C library keeps its own mmap threshold: large buffers may stay resident")
    return done
