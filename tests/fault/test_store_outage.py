"""ClickHouse failing for a while, at the store boundary: the collector's writes retry and nothing is lost or doubled.

Fault injection wraps the real clients the collector gets from its client
factory (`collector.loop.connect`): while an outage is on, every call raises
the error a dropped connection raises (`OperationalError`), as a ClickHouse
server that went away would; in the flaky phase each call fails by a seeded
coin toss, so batches are left half written (rows in, dead letters or the
checkpoint not) and must be rolled back before the retry. The collector runs
in this process, a producer streams meanwhile. The store is a database of its
own (own_database): every retry's rollback deletes and rebuilds window states
by scanning the tables, and on the session's shared tables, late in a full
parallel run, that outlasted the recovery deadline (CI, seed 3092876354).
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

import collector.loop as loop
from collector.loop import Collector
from tests.conftest import own_database
from tests.fault.checks import duplicate_rows, lost, row_counts_of_topics, stored_by_kind
from tests.integration.test_crash_recovery import Traffic

pytestmark = [pytest.mark.integration, pytest.mark.fault]

CALLS = ("insert", "raw_insert", "command", "query")


class Outage:
    """Which calls fail right now: all of them inside an outage window, some of them while flaky."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.down_until = 0.0
        self.flaky_until = 0.0
        self.failed = 0
        self.flaky_failed = 0
        self.lock = threading.Lock()

    def check(self, call: str) -> None:
        now = time.monotonic()
        with self.lock:
            down = now < self.down_until
            fail = down or (now < self.flaky_until and self.rng.random() < 0.3)
            if fail:
                self.failed += 1
                self.flaky_failed += not down
        if fail:
            raise OperationalError(f"injected: {call} failed, connection refused")


class FaultyClient:
    """The real client, with every call that reaches ClickHouse going through `Outage.check` first."""

    def __init__(self, client, outage: Outage) -> None:  # type: ignore[no-untyped-def]
        self._client = client
        self._outage = outage

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        attr = getattr(self._client, name)
        if name not in CALLS:
            return attr

        def call(*args, **kwargs):  # type: ignore[no-untyped-def]
            self._outage.check(name)
            return attr(*args, **kwargs)

        return call


def test_store_outages_and_flaky_inserts_lose_and_duplicate_nothing(settings, tally, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings, store = own_database(settings)
    rng = tally.rng("store")
    outage = Outage(random.Random(rng.randrange(2**31)))
    real_connect = loop.connect
    monkeypatch.setattr(loop, "connect", lambda s: FaultyClient(real_connect(s), outage))
    s = settings.model_copy(update={"batch_max_events": 500, "batch_max_seconds": 0.2})
    topics = list(s.topics.values())
    started = time.monotonic()
    collector = Collector(s)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    traffic = Traffic(s, rng.randrange(2**31), rate_per_s=2000).start()
    try:
        deadline = time.monotonic() + 60
        while collector.stats.inserted == 0:  # the outages start once partitions are assigned and rows flow
            assert time.monotonic() < deadline and runner.is_alive(), collector.stats.snapshot()
            time.sleep(0.1)
        windows = []
        for _ in range(2):  # two full outages of a few seconds, then a flaky spell
            time.sleep(rng.uniform(0.5, 2.0))
            length = rng.uniform(1.5, 3.0)
            outage.down_until = time.monotonic() + length
            windows.append(round(length, 1))
            time.sleep(length)
            recovered = collector.stats.batches + 2  # the writer is back (its backoff can outlast the outage)
            while collector.stats.batches < recovered:
                assert time.monotonic() < deadline + 60 and runner.is_alive(), collector.stats.snapshot()
                time.sleep(0.05)
        outage.flaky_until = time.monotonic() + 3.0
        time.sleep(3.0)
    finally:
        traffic.stop()
    deadline = time.monotonic() + 120
    while stored_by_kind(store, topics) != traffic.sent:
        assert time.monotonic() < deadline and runner.is_alive(), (stored_by_kind(store, topics), traffic.sent)
        time.sleep(0.5)
    collector.stop()
    runner.join(timeout=60)
    assert not runner.is_alive()

    sent, stored = traffic.sent, stored_by_kind(store, topics)
    rows = row_counts_of_topics(store, topics)
    figures = {"events": sum(sent.values()), "injected_failures": outage.failed, "flaky_failures": outage.flaky_failed,
               "store_errors": collector.stats.store_errors, "events_lost": lost(sent, stored),
               "duplicates": duplicate_rows(rows), "seconds": time.monotonic() - started}
    tally.record("store", **figures)
    print(f"FAULT store outages_s={windows} flaky_s=3.0", flush=True)
    assert outage.flaky_failed > 0 and collector.stats.store_errors > 2  # the faults did hit the writer
    assert stored == sent
    assert figures["events_lost"] == 0 and figures["duplicates"] == 0, rows
    # Store-rejected letters are only the events sent broken on purpose (duplicate feature names), never a good
    # row that met an injected failure.
    assert store.query("SELECT count() FROM dead_letters WHERE topic IN {t:Array(String)} "
                       "AND error_kind = 'store_rejected' AND position(raw, '\"dup\":1.0') = 0",
                       parameters={"t": topics}).result_rows == [(0,)]
