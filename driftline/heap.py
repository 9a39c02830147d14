"""Giving the freed heap back to the system, so the service's RSS follows what it uses.

Why: glibc keeps freed memory in its arenas for reuse and returns only the
free top of a heap. The collector's threads allocate and free a batch of
decoded events and fetch buffers many times a second, so the arenas fill
with free chunks pinned below live ones; the service's RSS then grows with
the fragmentation, not with what it holds. A 15-minute soak measured
glibc's arenas growing from 309 to 384 MB with 220-280 MB of it free
(docs/evidence.md). `malloc_trim(0)` hands the free pages of every arena
back (madvise), leaving the chunks' bookkeeping in place, in a few
milliseconds; the same soak with a trim every minute returned 47-57 MB
each time.

The embedded engine is not concerned: chDB allocates with its own jemalloc,
which returns freed pages by itself after `dirty_decay_ms`.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _glibc() -> tuple[Callable[[int], int] | None, Callable[[], _MallInfo2] | None]:
    """glibc's malloc_trim and mallinfo2, each None where there is none (musl, macOS; glibc before 2.33)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None, None
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    info = getattr(libc, "mallinfo2", None)
    if info is not None:
        info.restype = _MallInfo2
    return trim, info


_MALLOC_TRIM, _MALLINFO2 = _glibc()


def trim_heap() -> bool | None:
    """Return glibc's free pages to the system: True if any were, None where glibc is not the allocator."""
    if _MALLOC_TRIM is None:
        return None
    return bool(_MALLOC_TRIM(0))


def heap_mb() -> tuple[float, float]:
    """glibc's heap (Python's objects above 512 bytes, numpy, kafka-python buffers): MB in use, and MB free
    in its arenas (resident until reused, unless trimmed: a trim returns the pages but glibc still counts the
    chunks as free, so this is an upper bound of what a trim can return); nan for both elsewhere."""
    if _MALLINFO2 is None:
        return float("nan"), float("nan")
    info = _MALLINFO2()
    return (info.uordblks + info.hblkhd) / 2**20, info.fordblks / 2**20


def start_heap_trimmer(every_seconds: float, stop: threading.Event) -> threading.Thread | None:
    """A daemon thread calling `trim_heap` every `every_seconds` until `stop` is set (None: 0, or no glibc)."""
    if every_seconds <= 0 or _MALLOC_TRIM is None:
        return None

    def run() -> None:
        while not stop.wait(every_seconds):
            trim_heap()

    thread = threading.Thread(target=run, name="heap-trimmer", daemon=True)
    thread.start()
    return thread
