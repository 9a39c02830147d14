"""SIGKILL of `driftline collect` at random moments while a producer streams: nothing lost, nothing twice.

Half of the kills land at a random moment after the collector got its
partitions (mid-batch, mid-insert, mid-commit), half at a random moment after
the process started (while it migrates, joins the group or seeks). After the
last kill a collector runs until it has caught up and stops with SIGTERM;
then the folder is read: every produced event (valid ones per kind and model,
broken ones as dead letters) is there exactly once, by offset and by event id.

Every restart joins a consumer group of its own: the checkpoint the collector
resumes from lives in ClickHouse (`ingest_batches`), not in Kafka's group
state, so this is the same recovery path, without waiting out the dead
member's rebalance timeout (~10 s a restart; tests/integration/
test_crash_recovery.py restarts into the same group).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fault.checks import duplicate_rows, lost, row_counts_of_folder
from tests.integration.collector_process import CollectorProcess
from tests.integration.test_crash_recovery import FAST, Traffic, _run_until_caught_up, _stored

pytestmark = [pytest.mark.integration, pytest.mark.fault]

KILLS = 7


def test_collector_sigkilled_at_random_moments(settings, tmp_path: Path, tally) -> None:  # type: ignore[no-untyped-def]
    rng = tally.rng("collector")
    store = tmp_path / "store"
    log = tmp_path / "collector.log"
    started = time.monotonic()
    traffic = Traffic(settings, rng.randrange(2**31), rate_per_s=1500).start()
    kills = 0
    try:
        for i in range(KILLS):
            group = settings.model_copy(update={"consumer_group": f"{settings.consumer_group}-{i}"})
            proc = CollectorProcess(group, store, log, **FAST).start()
            if i % 2 == 0:
                assert proc.wait_for("partitions assigned", timeout=60), "the collector never got its partitions"
                time.sleep(rng.uniform(0.1, 1.5))
            else:
                time.sleep(rng.uniform(0.3, 3.0))
            proc.kill()
            kills += 1
    finally:
        traffic.stop()
    last = settings.model_copy(update={"consumer_group": f"{settings.consumer_group}-last"})
    assert _run_until_caught_up(CollectorProcess(last, store, log, **FAST), last) == 0

    sent, stored = traffic.sent, _stored(store, settings)
    rows = row_counts_of_folder(store)
    figures = {"kills": kills, "events": sum(sent.values()), "events_lost": lost(sent, stored),
               "duplicates": duplicate_rows(rows), "seconds": time.monotonic() - started}
    tally.record("collector", **figures)
    assert kills == KILLS
    assert stored == sent
    assert figures["events_lost"] == 0 and figures["duplicates"] == 0, rows
