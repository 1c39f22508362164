"""Keep freed host memory in the process for reuse (glibc's malloc, Linux).

EDVR on the CPU allocates and frees large tensors in every layer of every window (a DCN's
offsets and mask at 854x480 are 177 MB) and of every training step. glibc's malloc serves large
blocks (above a threshold that adapts up to 32 MB) with a fresh `mmap` and returns them with
`munmap` when freed, and trims freed memory at the top of its heap back to the system, so the
kernel maps and zeroes the same memory page by page again for the next layer. `keep_freed_memory()` turns both off
(`mallopt(M_MMAP_MAX, 0)`, `mallopt(M_TRIM_THRESHOLD, -1)`): blocks come from the heap and freed
ones are reused. The process's memory then stays at its peak instead of shrinking between
windows or steps. Elsewhere (another libc or system) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_MAX = -4
_kept = False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse (see the module docstring); idempotent.
    Returns whether the setting is in effect."""
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 disables trimming
    _kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))
    return _kept
