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


def _threads() -> list[tuple[int, str, int]]:
    """(tid, name, nice value) of this process's threads (/proc/self/task/<tid>/comm and field 19 of stat)."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        found.append((int(task.name), name, int(fields[16])))
    return found


def _niced_threads(nice: int) -> set[int]:
    """The threads of this process whose nice value is `nice`."""
    return {tid for tid, _, value in _threads() if value == nice}


def test_a_detector_client_queries_behind_ingest_and_other_clients_do_not(base_settings: Settings) -> None:
    settings = base_settings.model_copy(update={"background_nice": 7})
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


def test_the_embedded_engines_merges_run_behind_ingest(base_settings: Settings) -> None:
    client = connect(base_settings)
    setting = client.query("SELECT value FROM system.server_settings "
                           "WHERE name = 'os_threads_nice_value_merge_mutate'").result_rows
    assert setting == [(str(base_settings.background_nice),)]
    if not can_renice():
        return  # without CAP_SYS_NICE ClickHouse keeps merges at normal priority: the setting is all there is

    client.command("CREATE TABLE merge_priority (k UInt64, v String) ENGINE = MergeTree ORDER BY k")
    for part in range(6):
        client.command(f"INSERT INTO merge_priority SELECT number, repeat('x', 200) FROM numbers({part * 300000}, 300000)")
    seen: set[int] = set()
    merging = threading.Thread(target=client.command, args=("OPTIMIZE TABLE merge_priority FINAL",))
    merging.start()
    while merging.is_alive():
        seen |= {value for _, name, value in _threads() if name == "MergeMutate"}
        time.sleep(0.005)
    merging.join()
    assert base_settings.background_nice in seen, f"no merge thread ran at the background nice value: {seen}"
    assert client.query("SELECT count() FROM system.parts WHERE table = 'merge_priority' AND active "
                        "AND database = currentDatabase()").result_rows == [(1,)]
