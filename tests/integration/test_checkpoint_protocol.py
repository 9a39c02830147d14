"""The exactly-once protocol step by step, on the real engine: commit point, rollback, replay, store faults."""

from __future__ import annotations

import json
import threading
import time

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from kafka import KafkaProducer

from collector.batch import Batch, Origin
from collector.checkpoint import OffsetStore
from collector.decode import RecordDecoder
from collector.loop import Collector
from collector.sink import ClickHouseSink
from collector.stats import CollectorStats
from collector.writer import BatchWriter
from driftline.contracts import EventKind
from driftline.simulate import prediction_payload
from tests.conftest import own_database

pytestmark = pytest.mark.integration


def _records(topic: str, payloads: list[bytes], start: int = 0) -> list[Origin]:
    return [Origin(topic, 0, start + i, b"k", p) for i, p in enumerate(payloads)]


def _decoder(settings) -> RecordDecoder:
    return RecordDecoder({EventKind(k): t for k, t in settings.topics.items()}, settings.max_event_bytes)


def _offsets(store, settings) -> OffsetStore:
    return OffsetStore(store, {t: EventKind(k) for k, t in settings.topics.items()}, "test")


def _count(store, topic: str) -> tuple[int, int]:
    return store.query(
        "SELECT count(), uniqExact(offset) FROM predictions WHERE topic = {t:String}", parameters={"t": topic}
    ).result_rows[0]


@pytest.mark.slow
def test_a_half_written_batch_is_rolled_back_and_replayed_once(settings) -> None:
    # A database of its own: each rollback deletes rows and rebuilds window states by scanning the tables; on the
    # shared tables late in a full run that outlasted the writer's 30 s drain (CI, seed 2505813576).
    settings, store = own_database(settings)
    topic = settings.topic_predictions
    payloads = [prediction_payload(i, "ckpt-model") for i in range(100)]
    decoder, sink, offsets = _decoder(settings), ClickHouseSink(store), _offsets(store, settings)

    first = Batch()
    decoder.add_records(first, topic, 0, _records(topic, payloads[:50]))
    sink.write(first)
    offsets.commit(first, [], flush_ms=1.0)
    second = Batch()  # written, then the process "dies" before its commit
    decoder.add_records(second, topic, 0, _records(topic, payloads[50:], start=50))
    sink.write(second)
    assert _count(store, topic) == (100, 100)

    assert offsets.committed([(topic, 0), (topic, 1)]) == {(topic, 0): 50}
    assert offsets.rollback({(topic, 0): 50}) == 50
    assert _count(store, topic) == (50, 50)

    # The real collector, on the real topic holding the same 100 events, resumes at offset 50.
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for p in payloads:
        producer.send(topic, value=p, partition=0)
    producer.flush()
    collector = Collector(settings)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while collector.stats.inserted < 50:
        assert time.monotonic() < deadline, collector.stats.snapshot()
        time.sleep(0.1)
    collector.stop()
    runner.join(timeout=60)
    assert collector.stats.inserted == 50  # only what was not committed before
    assert _count(store, topic) == (100, 100)


def test_rows_clickhouse_refuses_become_dead_letters_and_the_rest_lands(settings, store) -> None:
    topic = settings.topic_predictions
    payloads = [prediction_payload(i, "bisect-model") for i in range(1000)]
    for i in (3, 500, 999):  # valid JSON and types, duplicated feature name: the table constraint refuses it
        payloads[i] = payloads[i].replace(b'"features":{', b'"features":{"dup":1.0,"dup":2.0,', 1)
    batch = Batch()
    _decoder(settings).add_records(batch, topic, 0, _records(topic, payloads))
    assert batch.ranges[(topic, 0)].events == 1000  # Python let them through

    rejected = ClickHouseSink(store).write(batch)

    assert sorted(d.origin.offset for d in rejected) == [3, 500, 999]
    assert all(d.error_kind == "store_rejected" and "unique_feature_names" in d.error for d in rejected)
    assert _count(store, topic) == (997, 997)
    letters = store.query("SELECT offset, raw FROM dead_letters WHERE topic = {t:String} ORDER BY offset",
                          parameters={"t": topic}, column_formats={"raw": "bytes"}).result_rows
    assert [(o, r) for o, r in letters] == [(i, payloads[i]) for i in (3, 500, 999)]
    assert batch.outcome(rejected) == {(topic, 0): (997, 3)}
    assert batch.ranges[(topic, 0)].events == 1000  # the decode-time counts stay as they were


class FlakyStore:
    """The real client, except that the first `failures` inserts of dead letters raise like a lost connection.

    Rows are inserted before dead letters, so each failure leaves a half-written batch behind.
    """

    def __init__(self, client, failures: int) -> None:
        self._client = client
        self.failures = failures

    def insert(self, table, *args, **kwargs):  # type: ignore[no-untyped-def]
        if table == "dead_letters" and self.failures > 0:
            self.failures -= 1
            raise OperationalError("injected: connection reset by peer")
        return self._client.insert(table, *args, **kwargs)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._client, name)


@pytest.mark.slow
def test_the_writer_retries_a_store_outage_without_duplicating_rows(settings, monkeypatch) -> None:
    # A database of its own: each rollback deletes rows and rebuilds window states by scanning the tables; on the
    # shared tables late in a full run that outlasted the writer's 30 s drain (CI, seed 2505813576).
    settings, store = own_database(settings)
    monkeypatch.setattr("collector.writer.BACKOFF_START_S", 0.01)
    topic = settings.topic_predictions
    payloads = [prediction_payload(i, "flaky-model") for i in range(200)]
    payloads[7] = b"{not json"
    batch = Batch()
    _decoder(settings).add_records(batch, topic, 0, _records(topic, payloads))
    flaky = FlakyStore(store, failures=3)
    stats = CollectorStats()
    writer = BatchWriter(ClickHouseSink(flaky), _offsets(flaky, settings), stats)
    try:
        writer.submit(batch)
        assert writer.drain(timeout=30)
    finally:  # never leave a writer thread in the store while the session's engine shuts down
        writer.close(timeout=5)

    assert flaky.failures == 0 and stats.store_errors == 3
    assert _count(store, topic) == (199, 199)
    dead = store.query("SELECT count() FROM dead_letters WHERE topic = {t:String}", parameters={"t": topic}).result_rows
    assert dead == [(1,)]
    assert _offsets(store, settings).committed([(topic, 0)]) == {(topic, 0): 200}
    assert json.loads(payloads[0])["model"] == "flaky-model"


@pytest.mark.slow
def test_stop_is_bounded_when_the_store_is_down_and_nothing_is_committed(settings, monkeypatch) -> None:
    """A stop with ClickHouse refusing writes ends within the shutdown timeout, reports failure, commits nothing.

    In a database of its own (see own_database): each retry rolls back the half-written batch and a stop
    waits for the attempt in flight; on the shared tables late in a full run, when retries also rebuilt
    the window states, one stop took 8.06 s against the 8 s bound in CI.
    """
    import collector.loop as loop

    settings, store = own_database(settings)
    monkeypatch.setattr("collector.writer.BACKOFF_START_S", 0.05)
    real_connect = loop.connect
    monkeypatch.setattr(loop, "connect", lambda s: FlakyStore(real_connect(s), failures=10**9))
    topic = settings.topic_predictions
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for i in range(300):
        producer.send(topic, value=b"{broken" if i % 50 == 0 else prediction_payload(i, "down-model"))
    producer.flush()
    collector = Collector(settings.model_copy(update={"shutdown_timeout_seconds": 3.0}))
    result: list[bool] = []
    runner = threading.Thread(target=lambda: result.append(collector.run()), daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while collector.stats.store_errors < 2:
        assert time.monotonic() < deadline, collector.stats.snapshot()
        time.sleep(0.05)
    stopped_at = time.monotonic()
    collector.stop()
    runner.join(timeout=30)
    assert not runner.is_alive() and result == [False]
    assert time.monotonic() - stopped_at < 3.0 + 5.0
    assert _offsets(store, settings).committed([(topic, p) for p in range(3)]) == {}


@pytest.mark.slow
def test_a_retried_commit_counts_refused_rows_once(settings, monkeypatch) -> None:
    """Rows ClickHouse refuses move from events to dead letters once, however often the commit is retried."""
    # A database of its own: each rollback deletes rows and rebuilds window states by scanning the tables; on the
    # shared tables late in a full run that outlasted the writer's 30 s drain (CI, seed 2505813576).
    settings, store = own_database(settings)
    monkeypatch.setattr("collector.writer.BACKOFF_START_S", 0.01)
    topic = settings.topic_predictions
    payloads = [prediction_payload(i, "recount-model") for i in range(10)]
    payloads[4] = payloads[4].replace(b'"features":{', b'"features":{"dup":1.0,"dup":2.0,', 1)
    batch = Batch()
    _decoder(settings).add_records(batch, topic, 0, _records(topic, payloads))

    class FailingCommit(FlakyStore):
        def insert(self, table, *args, **kwargs):  # type: ignore[no-untyped-def]
            if table == "ingest_batches" and self.failures > 0:
                self.failures -= 1
                raise OperationalError("injected: connection reset by peer")
            return self._client.insert(table, *args, **kwargs)

    flaky = FailingCommit(store, failures=2)
    stats = CollectorStats()
    writer = BatchWriter(ClickHouseSink(flaky), _offsets(flaky, settings), stats)
    try:
        writer.submit(batch)
        assert writer.drain(timeout=30)
    finally:  # never leave a writer thread in the store while the session's engine shuts down
        writer.close(timeout=5)

    assert flaky.failures == 0
    assert _count(store, topic) == (9, 9)
    logged = store.query("SELECT sum(events), sum(dead_letters) FROM ingest_batches WHERE topic = {t:String}",
                         parameters={"t": topic}).result_rows
    assert logged == [(9, 1)]
    assert (stats.inserted, stats.dead_lettered) == (9, 1)
