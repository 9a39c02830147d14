"""Window states stay equal to a recomputation from `predictions`: after ingest (Kafka and HTTP, privacy),
after a rollback, after a process that died mid-rebuild, and after the collector's crash-recovery replay."""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaProducer

from collector.batch import Batch, Origin
from collector.checkpoint import OffsetStore
from collector.decode import RecordDecoder
from collector.http_source import SOURCE_TOPICS, HttpIngest
from collector.loop import Collector
from collector.sink import ClickHouseSink
from driftline.contracts import EventKind
from driftline.privacy import PrivacySpec, Redactor
from driftline.simulate import prediction_payload
from driftline.store import window_states as ws
from tests.conftest import own_database

pytestmark = pytest.mark.integration

GROUP = "model, bucket, feature"


def merged_states(store, topic: str) -> list[tuple]:
    """The states of a topic merged per (model, hour, feature), as the detectors read them."""
    return _rounded(store.query(
        f"SELECT {GROUP}, {', '.join(ws.MERGES)} FROM {ws.TABLE} WHERE topic = {{t:String}} "
        f"GROUP BY {GROUP} ORDER BY {GROUP}", parameters={"t": topic}).result_rows)


def recomputed(store, topic: str) -> list[tuple]:
    """The same aggregates computed from the rows `predictions` holds now."""
    return _rounded(store.query(
        f"SELECT model, {ws.BUCKET} AS bucket, kv.1 AS feature, {', '.join(ws.AGGREGATES)} "
        f"FROM predictions ARRAY JOIN {ws.PAIRS} AS kv WHERE topic = {{t:String}} "
        f"GROUP BY {GROUP} ORDER BY {GROUP}", parameters={"t": topic},
        settings={"cast_string_to_variant_use_inference": 0}).result_rows)


def _rounded(rows: list[tuple]) -> list[tuple]:
    """Float sums depend on the order of addition: compared to 9 significant digits, everything else exactly."""
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


def events(store, topic: str) -> int:
    return int(store.query(f"SELECT sum(rows) FROM {ws.TABLE} WHERE topic = {{t:String}} AND feature = ''",
                           parameters={"t": topic}).result_rows[0][0])


def _write(settings, store, topic: str, payloads: list[bytes], start: int) -> Batch:
    decoder = RecordDecoder({EventKind(k): t for k, t in settings.topics.items()}, settings.max_event_bytes)
    batch = Batch()
    decoder.add_records(batch, topic, 0, [Origin(topic, 0, start + i, b"k", p) for i, p in enumerate(payloads)])
    ClickHouseSink(store).write(batch)
    return batch


@pytest.mark.parametrize("start", [0, ws.OFFSET_BLOCK - 30], ids=["one-block", "across-blocks"])
def test_rollback_and_replay_leave_states_equal_to_the_rows(settings, start: int) -> None:
    # In a database of its own: each rollback's DELETE and state rebuild scan the tables, and on the shared
    # tables late in a full run this test took 150 s per case (CI); here it holds its own 100 rows.
    settings, store = own_database(settings)
    topic = settings.topic_predictions
    offsets = OffsetStore(store, {t: EventKind(k) for k, t in settings.topics.items()}, "test")
    payloads = [prediction_payload(i, "states-model") for i in range(100)]
    first = _write(settings, store, topic, payloads[:50], start)
    offsets.commit(first, [], flush_ms=1.0)
    _write(settings, store, topic, payloads[50:], start + 50)  # then the process "dies" before its commit
    assert events(store, topic) == 100 and merged_states(store, topic) == recomputed(store, topic)

    assert offsets.rollback({(topic, 0): start + 50}) == 50
    assert events(store, topic) == 50
    assert merged_states(store, topic) == recomputed(store, topic)

    # A process that died between the rebuild's delete and its insert: the next rollback repairs the states.
    store.command(f"DELETE FROM {ws.TABLE} WHERE topic = {{t:String}} AND offset_block = {{b:Int64}}",
                  parameters={"t": topic, "b": (start + 50) // ws.OFFSET_BLOCK})
    assert events(store, topic) < 50
    assert offsets.rollback({(topic, 0): start + 50}) == 0  # no rows to delete, states still rebuilt
    assert events(store, topic) == 50 and merged_states(store, topic) == recomputed(store, topic)

    replayed = _write(settings, store, topic, payloads[50:], start + 50)
    offsets.commit(replayed, [], flush_ms=1.0)
    assert offsets.rollback({(topic, 0): start + 100}) == 0  # a later assignment: nothing to undo or rebuild
    assert events(store, topic) == 100 and merged_states(store, topic) == recomputed(store, topic)


@pytest.mark.slow
def test_the_collectors_crash_recovery_replay_counts_each_event_once(settings) -> None:
    # In a database of its own: on the shared tables late in a full run, the on-assign rollback and rebuild
    # kept the collector from consuming for over 60 s (see own_database).
    settings, store = own_database(settings)
    topic = settings.topic_predictions
    offsets = OffsetStore(store, {t: EventKind(k) for k, t in settings.topics.items()}, "test")
    payloads = [prediction_payload(i, "states-replay") for i in range(100)]
    first = _write(settings, store, topic, payloads[:50], 0)
    offsets.commit(first, [], flush_ms=1.0)
    _write(settings, store, topic, payloads[50:], 50)  # a half-written, uncommitted batch left by a crash

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    for p in payloads:
        producer.send(topic, value=p, partition=0)
    producer.flush()
    collector = Collector(settings)  # on assignment: rollback (rows and states), then resume at offset 50
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while collector.stats.inserted < 50:
            assert time.monotonic() < deadline, collector.stats.snapshot()
            time.sleep(0.1)
    finally:  # never leave a collector writing into the store while the session's engine shuts down
        collector.stop()
        runner.join(timeout=60)
    assert collector.stats.inserted == 50
    assert events(store, topic) == 100
    assert merged_states(store, topic) == recomputed(store, topic)


def test_http_ingest_with_hashed_fields_keeps_states_of_what_is_stored(store) -> None:
    model = "states-http"
    redactor = Redactor({model: PrivacySpec(drop=("f0",), hash=("f9",))}, b"k" * 32)
    ingest = HttpIngest(store, partition=7, redactor=redactor)
    ingest.write(EventKind.PREDICTION, [prediction_payload(i, model) for i in range(40)])
    ingest.write(EventKind.PREDICTION, [prediction_payload(i, model) for i in range(40, 60)])
    topic = SOURCE_TOPICS[EventKind.PREDICTION]
    states = merged_states(store, topic)
    assert states == recomputed(store, topic)
    mine = [row for row in states if row[0] == model]  # (model, bucket, feature, rows, ..., categories)
    assert {row[2] for row in mine} == {"", "__prediction__"} | {f"f{i}" for i in range(1, 20)}  # f0 dropped
    hashed = [row[-1] for row in mine if row[2] == "f9"]  # categories: (keys, counts) per hour
    assert sum(sum(counts) for _, counts in hashed) == 60
    assert all(k.startswith("hmac:") for keys, _ in hashed for k in keys)
    assert sum(row[3] for row in mine if row[2] == "") == 60  # events


def test_a_writer_retry_after_a_half_written_batch_leaves_the_states_exact(settings, monkeypatch) -> None:
    """Each failed attempt's rows reached the states through the view; the successful attempt rebuilds them.

    In a database of its own: on the shared tables late in a full run the rebuild's DELETE did not finish
    within the 60 s drain (CI).
    """
    from collector.stats import CollectorStats
    from collector.writer import BatchWriter
    from tests.integration.test_checkpoint_protocol import FlakyStore

    monkeypatch.setattr("collector.writer.BACKOFF_START_S", 0.01)
    settings, store = own_database(settings)
    topic = settings.topic_predictions
    payloads = [prediction_payload(i, "states-retry") for i in range(60)]
    payloads[5] = b"{not json"  # a dead letter: its insert is the one that fails, after the rows landed
    decoder = RecordDecoder({EventKind(k): t for k, t in settings.topics.items()}, settings.max_event_bytes)
    batch = Batch()
    decoder.add_records(batch, topic, 0, [Origin(topic, 0, i, b"k", p) for i, p in enumerate(payloads)])
    flaky = FlakyStore(store, failures=2)
    stats = CollectorStats()
    writer = BatchWriter(ClickHouseSink(flaky), OffsetStore(flaky, {t: EventKind(k) for k, t in settings.topics.items()},
                                                           "test"), stats)
    try:
        writer.submit(batch)
        assert writer.drain(timeout=60)
    finally:  # never leave a writer thread in the store while the session's engine shuts down
        writer.close(timeout=5)
    assert stats.store_errors == 2 and flaky.failures == 0
    assert events(store, topic) == 59
    assert merged_states(store, topic) == recomputed(store, topic)
