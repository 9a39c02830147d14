"""Window states, once refreshed, equal a recomputation from `predictions`: after ingest (Kafka and HTTP,
privacy), after a rollback, after a process that died mid-rebuild, after the collector's crash-recovery
replay, after late events into a closed hour, and after a change that kept an hour's count."""

from __future__ import annotations

import datetime as dt
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
from driftline.simulate import EPOCH, prediction_payload
from driftline.store import window_states as ws
from tests.conftest import own_database

pytestmark = pytest.mark.integration

GROUP = "model, bucket, feature"
ALL_TIME = (dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc))


def refresh(store, model: str) -> list[dt.datetime]:
    """What a detection reading every hour of the model does first: build the hours new or changed."""
    return ws.refresh(store, model, *ALL_TIME)


def merged_states(store, model: str) -> list[tuple]:
    """The states of a model merged per (model, hour, feature), as the detectors read them."""
    return _rounded(store.query(
        f"SELECT {GROUP}, {', '.join(ws.MERGES)} FROM {ws.TABLE} WHERE model = {{m:String}} "
        f"GROUP BY {GROUP} ORDER BY {GROUP}", parameters={"m": model}).result_rows)


def recomputed(store, model: str) -> list[tuple]:
    """The same aggregates computed from the rows `predictions` holds now."""
    return _rounded(store.query(
        f"SELECT model, {ws.BUCKET} AS bucket, kv.1 AS feature, {', '.join(ws.AGGREGATES)} "
        f"FROM predictions ARRAY JOIN {ws.PAIRS} AS kv WHERE model = {{m:String}} "
        f"GROUP BY {GROUP} ORDER BY {GROUP}", parameters={"m": model}, settings=ws.BUILD_SETTINGS).result_rows)


def exact(store, model: str) -> bool:
    states = merged_states(store, model)
    return bool(states) and states == recomputed(store, model)


def _rounded(rows: list[tuple]) -> list[tuple]:
    """Float sums depend on the order of addition: compared to 9 significant digits, everything else exactly."""
    return [tuple(float(f"{v:.9g}") if isinstance(v, float) else v for v in row) for row in rows]


def events(store, model: str) -> int:
    return int(store.query(f"SELECT sum(rows) FROM {ws.TABLE} WHERE model = {{m:String}} AND feature = ''",
                           parameters={"m": model}).result_rows[0][0])


def _write(settings, store, topic: str, payloads: list[bytes], start: int) -> Batch:
    decoder = RecordDecoder({EventKind(k): t for k, t in settings.topics.items()}, settings.max_event_bytes)
    batch = Batch()
    decoder.add_records(batch, topic, 0, [Origin(topic, 0, start + i, b"k", p) for i, p in enumerate(payloads)])
    ClickHouseSink(store).write(batch)
    return batch


def test_rollback_and_replay_leave_states_equal_to_the_rows(settings) -> None:
    # In a database of its own: each rollback's DELETE scans the tables, and on the shared tables late in a
    # full run this took minutes (CI); here it holds its own 100 rows.
    settings, store = own_database(settings)
    topic, model = settings.topic_predictions, "states-model"
    offsets = OffsetStore(store, {t: EventKind(k) for k, t in settings.topics.items()}, "test")
    payloads = [prediction_payload(i, model) for i in range(100)]
    first = _write(settings, store, topic, payloads[:50], 0)
    offsets.commit(first, [], flush_ms=1.0)
    _write(settings, store, topic, payloads[50:], 50)  # then the process "dies" before its commit
    assert refresh(store, model) and events(store, model) == 100 and exact(store, model)

    assert offsets.rollback({(topic, 0): 50}) == 50
    assert refresh(store, model)  # the rolled-back rows' hour no longer matches its states
    assert events(store, model) == 50 and exact(store, model)

    # A process that died between a rebuild's delete and its insert: the next refresh repairs the states.
    store.command(f"DELETE FROM {ws.TABLE} WHERE model = {{m:String}}", parameters={"m": model})
    assert events(store, model) == 0
    assert refresh(store, model)
    assert events(store, model) == 50 and exact(store, model)

    replayed = _write(settings, store, topic, payloads[50:], 50)
    offsets.commit(replayed, [], flush_ms=1.0)
    assert offsets.rollback({(topic, 0): 100}) == 0  # a later assignment: nothing to undo
    assert refresh(store, model)
    assert events(store, model) == 100 and exact(store, model)
    assert refresh(store, model) == []  # nothing changed since: nothing rebuilt


def test_late_events_into_a_closed_hour_are_counted_in_that_hours_state(settings) -> None:
    settings, store = own_database(settings)
    topic, model = settings.topic_predictions, "states-late"
    offsets = OffsetStore(store, {t: EventKind(k) for k, t in settings.topics.items()}, "test")
    on_time = [prediction_payload(i, model) for i in range(0, 7200, 60)]  # two hours, one event a minute
    offsets.commit(_write(settings, store, topic, on_time, 0), [], flush_ms=1.0)
    first_hour, second_hour = EPOCH, EPOCH + dt.timedelta(hours=1)
    assert refresh(store, model) == [first_hour, second_hour]
    assert events(store, model) == 120

    late = [prediction_payload(i, model) for i in range(30, 3600, 600)]  # six more into the closed first hour
    offsets.commit(_write(settings, store, topic, late, 120), [], flush_ms=1.0)
    assert ws.stale_hours(store, model, *ALL_TIME) == {first_hour: True}
    assert refresh(store, model) == [first_hour]  # that hour only
    assert events(store, model) == 126 and exact(store, model)
    per_hour = dict(store.query(f"SELECT bucket, sum(rows) FROM {ws.TABLE} WHERE model = {{m:String}} AND feature = '' "
                                "GROUP BY bucket", parameters={"m": model}).result_rows)
    assert per_hour == {first_hour.replace(tzinfo=None): 66, second_hour.replace(tzinfo=None): 60}


def test_an_hour_whose_rows_changed_at_an_unchanged_count_is_rebuilt(settings) -> None:
    """Rows deleted by a rollback and as many others added before the next refresh: the fingerprint tells."""
    settings, store = own_database(settings)
    topic, model = settings.topic_predictions, "states-swap"
    _write(settings, store, topic, [prediction_payload(i, model) for i in range(0, 40)], 0)
    assert refresh(store, model) and events(store, model) == 40
    store.command("DELETE FROM predictions WHERE model = {m:String} AND offset >= 30", parameters={"m": model})
    _write(settings, store, topic, [prediction_payload(i, model) for i in range(1000, 1010)], 500)
    assert int(store.query("SELECT count() FROM predictions WHERE model = {m:String}",
                           parameters={"m": model}).result_rows[0][0]) == 40
    assert refresh(store, model) == [EPOCH]
    assert exact(store, model)


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
    refresh(store, "states-replay")
    assert events(store, "states-replay") == 100 and exact(store, "states-replay")


def test_http_ingest_with_hashed_fields_keeps_states_of_what_is_stored(store) -> None:
    model = "states-http"
    redactor = Redactor({model: PrivacySpec(drop=("f0",), hash=("f9",))}, b"k" * 32)
    ingest = HttpIngest(store, partition=7, redactor=redactor)
    ingest.write(EventKind.PREDICTION, [prediction_payload(i, model) for i in range(40)])
    ingest.write(EventKind.PREDICTION, [prediction_payload(i, model) for i in range(40, 60)])
    assert refresh(store, model) and exact(store, model)
    states = merged_states(store, model)
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
    refresh(store, "states-retry")
    assert events(store, "states-retry") == 59 and exact(store, "states-retry")
