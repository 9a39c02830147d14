"""The heap trimmer hands glibc's free pages back: measured on this process's RSS, not assumed."""

from __future__ import annotations

import os
import threading

import pytest

from driftline.heap import heap_mb, start_heap_trimmer, trim_heap

PAGE = os.sysconf("SC_PAGE_SIZE")


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


@pytest.mark.skipif(trim_heap() is None, reason="glibc only: elsewhere trim_heap says None (tested below)")
def test_freed_chunks_pinned_below_a_live_one_go_back_to_the_system() -> None:
    # 4 KiB objects come from glibc's arena; freeing all but the last leaves ~200 MB free below a live chunk,
    # which glibc keeps resident: only the top of a heap is returned on free().
    blocks = [bytearray(4096) for _ in range(50_000)]
    pinned = blocks[-1]
    del blocks
    assert heap_mb()[1] > 100, "glibc does not count the freed chunks as free in its arenas"
    before = _rss_mb()
    assert trim_heap() is True
    after = _rss_mb()
    assert before - after > 100, f"RSS {before:.0f} MB before the trim, {after:.0f} MB after"
    assert len(pinned) == 4096


def test_the_trimmer_runs_until_stopped_and_not_at_zero() -> None:
    stop = threading.Event()
    assert start_heap_trimmer(0, stop) is None
    thread = start_heap_trimmer(0.01, stop)
    if trim_heap() is None:
        assert thread is None
        return
    assert thread is not None and thread.is_alive() and thread.daemon
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
