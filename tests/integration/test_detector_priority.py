"""Detector clients run their queries behind ingest on the real embedded engine, and give the threads back.

Why it matters: the engine's threads are shared with the collector's inserts; a thread left at a
lower priority after a detection would slow ingest instead of detection.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from detectors.priority import can_renice, detector_clients
from driftline.config import Settings
from driftline.store import connect


def _niced_threads(nice: int) -> set[int]:
    """The threads of this process whose nice value is `nice` (field 19 of /proc/self/task/<tid>/stat)."""
    found = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        if int(fields[16]) == nice:
            found.add(int(task.name))
    return found


def test_a_detector_client_queries_behind_ingest_and_other_clients_do_not(base_settings: Settings) -> None:
    settings = base_settings.model_copy(update={"detector_nice": 7})
    detector = detector_clients(settings)()
    ingest = connect(settings)
    setting = "os_threads_nice_value_query" if can_renice() else "max_threads"
    expected = 7 if can_renice() else 1
    assert detector.query(f"SELECT getSetting('{setting}')").result_rows == [(expected,)]
    assert ingest.query("SELECT getSetting('os_threads_nice_value_query')").result_rows == [(0,)]
    assert ingest.query("SELECT getSetting('max_threads')").result_rows != [(1,)]
    if not can_renice():
        return  # without CAP_SYS_NICE ClickHouse ignores nice values: the one-thread cap is what applies

    assert not _niced_threads(7)
    seen: set[int] = set()
    running = threading.Thread(target=detector.query,
                               args=("SELECT sum(sleepEachRow(0.05)) FROM numbers(30) SETTINGS max_block_size = 1",))
    running.start()
    while running.is_alive():
        seen |= _niced_threads(7)
        time.sleep(0.02)
    running.join()
    assert seen, "no thread ran the detector's query at its nice value"
    ingest.query("SELECT count() FROM numbers(1000)")
    assert not _niced_threads(7), "a thread kept the detector's nice value after its query"
