"""Retention TTLs on the real engine: applied once, expired rows removed, the collector's offsets kept.

Each test works in a database of its own inside the session's chDB folder,
so tiny TTLs never touch the rows of other tests.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
from kafka import KafkaProducer

from collector.loop import Collector
from collector.replay import write_chunk
from driftline.config import Settings
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.store import connect, migrate
from driftline.store.retention import RETENTION, apply_retention, current_ttls

pytestmark = pytest.mark.integration

NOW = dt.datetime.now(dt.timezone.utc)
OLD = NOW - dt.timedelta(days=10)
ONE_DAY = {r.setting: 1 for r in RETENTION}


def own_database(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update={"clickhouse_database": f"retention_{uuid.uuid4().hex[:8]}", **update})


def event(i: int, ts: dt.datetime) -> bytes:
    return encode_event(PredictionEvent(event_id=f"r-{i}", model="ret", model_version="1", ts=ts,
                                        features={"x": float(i)}, prediction=0.5))


def test_ttls_are_applied_once_with_the_documented_defaults(base_settings: Settings) -> None:
    settings = own_database(base_settings)
    client = connect(settings)
    migrate(client)
    assert sorted(apply_retention(client, settings)) == sorted(r.table for r in RETENTION)
    assert apply_retention(client, settings) == []  # a restart rewrites nothing
    ttls = current_ttls(client)
    assert ttls["predictions"] == "toDateTime(ingested_at) + toIntervalSecond(7776000)"  # 90 days
    assert ttls["dead_letters"] == "toDateTime(received_at) + toIntervalSecond(2592000)"  # 30 days
    assert ttls["drift_results"] == "toDateTime(computed_at) + toIntervalSecond(34560000)"  # 400 days
    assert ttls["ingest_batches"].startswith("toDateTime(written_at) + toIntervalSecond(2592000) GROUP BY topic, partition")
    # A changed setting changes only its tables; 0 removes the TTL.
    changed = settings.model_copy(update={"retention_dead_letters_days": 7, "retention_audit_days": 0})
    assert sorted(apply_retention(client, changed)) == ["alert_events", "dead_letters", "delivery_attempts"]
    assert current_ttls(client)["alert_events"] is None
    assert apply_retention(client, changed) == []


def test_expired_rows_go_recent_ones_stay_and_the_latest_offsets_survive(base_settings: Settings) -> None:
    settings = own_database(base_settings, **ONE_DAY)
    client = connect(settings)
    migrate(client)
    apply_retention(client, settings)
    # Through the collector's path: recent rows (one describing last year: what counts is when it arrived) ...
    write_chunk(client, EventKind.PREDICTION, [event(i, NOW - dt.timedelta(days=365 * (i == 7))) for i in range(5, 8)]
                + [b"junk"], source="ret-src")
    # ... and rows that arrived 10 days ago.
    client.insert("predictions", [["old-src", 0, i, f"r-{i}", "ret", "1", NOW, OLD] for i in range(5)],
                  column_names=["topic", "partition", "offset", "event_id", "model", "model_version", "ts", "ingested_at"])
    client.insert("dead_letters", [["t", 0, 1, b"", b"old", 3, "x", "", OLD]],
                  column_names=["topic", "partition", "offset", "key", "raw", "raw_bytes", "error_kind", "error",
                                "received_at"])
    client.insert("drift_results", [["ret", "", NOW - dt.timedelta(days=500), NOW, c, 0.05, at]
                                    for c, at in (("old", OLD), ("new", NOW))],
                  column_names=["model", "segment", "window_start", "window_end", "column", "threshold", "computed_at"])
    client.insert("alert_events", [[OLD, "f", "drift"], [NOW, "f", "drift"]], column_names=["at", "fingerprint", "event"])
    batches = [("t", 0, 0, 100, OLD), ("t", 0, 100, 250, OLD + dt.timedelta(hours=1)), ("t", 1, 0, 40, OLD),
               ("t", 0, 250, 300, NOW)]
    client.insert("ingest_batches", [["c", t, p, f, n, n - f, w] for t, p, f, n, w in batches],
                  column_names=["collector", "topic", "partition", "first_offset", "next_offset", "events", "written_at"])
    for table in ("predictions", "dead_letters", "drift_results", "alert_events", "ingest_batches"):
        client.command(f"OPTIMIZE TABLE {table} FINAL")

    def rows(sql: str) -> list[tuple]:
        return [tuple(r) for r in client.query(sql).result_rows]

    assert rows("SELECT event_id FROM predictions ORDER BY event_id") == [("r-5",), ("r-6",), ("r-7",)]
    assert rows("SELECT raw FROM dead_letters") == [("junk",)]  # the recent one
    assert rows("SELECT column FROM drift_results") == [("new",)]  # a 500-day-old window, recomputed today: kept
    assert rows("SELECT at > now() - INTERVAL 1 DAY FROM alert_events") == [(1,)]
    # Expired commit-log rows are folded, never deleted: the latest offset of each partition survives.
    assert rows("SELECT partition, first_offset, next_offset, events FROM ingest_batches ORDER BY partition, "
                "next_offset") == [(0, 0, 250, 250), (0, 250, 300, 50), (1, 0, 40, 40)]


@pytest.mark.slow
def test_the_collector_resumes_exactly_after_its_commit_log_is_folded(base_settings: Settings) -> None:
    from tests.conftest import fresh_topics

    settings = fresh_topics(own_database(base_settings, **ONE_DAY), partitions=2)
    client = connect(settings)
    migrate(client)
    apply_retention(client, settings)
    topic = settings.topic_predictions
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)

    def produce(first: int, n: int) -> None:
        for i in range(first, first + n):
            producer.send(topic, value=event(i, NOW), partition=i % 2)
        producer.flush()

    def collect(expected: int) -> int:
        collector = Collector(settings)
        runner = threading.Thread(target=collector.run, daemon=True)
        runner.start()
        deadline = time.monotonic() + 60
        while collector.stats.inserted < expected:
            assert runner.is_alive() and time.monotonic() < deadline, collector.stats.snapshot()
            time.sleep(0.05)
        time.sleep(0.5)  # anything beyond `expected` would arrive now
        collector.stop()
        runner.join(timeout=60)
        return collector.stats.inserted

    produce(0, 300)
    assert collect(300) == 300
    committed = client.query("SELECT partition, max(next_offset) FROM ingest_batches GROUP BY partition "
                             "ORDER BY partition").result_rows
    # Age the whole commit log past its TTL (written_at is in the sort key: copy back-dated, delete the originals).
    client.command("INSERT INTO ingest_batches SELECT * REPLACE (written_at - INTERVAL 10 DAY AS written_at) "
                   "FROM ingest_batches")
    client.command("DELETE FROM ingest_batches WHERE written_at > now() - INTERVAL 1 DAY")
    client.command("OPTIMIZE TABLE ingest_batches FINAL")
    folded = client.query("SELECT partition, max(next_offset), count() FROM ingest_batches GROUP BY partition "
                          "ORDER BY partition").result_rows
    assert [(p, o) for p, o, _ in folded] == [tuple(r) for r in committed]
    assert all(n == 1 for _, _, n in folded)  # one row per partition is left

    produce(300, 100)
    assert collect(100) == 100  # resumed at the committed offsets: nothing re-read, nothing skipped
    assert client.query("SELECT count(), uniqExact(partition, offset) FROM predictions").result_rows == [(400, 400)]
    producer.close()
