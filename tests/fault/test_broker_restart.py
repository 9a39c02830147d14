"""The broker restarted mid-stream, twice, under a running collector: nothing stored twice, every loss counted.

The local broker (tansu, `memory://` storage) keeps its logs in memory, so a restart loses every event it
held and starts each partition at offset 0 again, under a new topic id. What this scenario proves:

- The collector recognises the new incarnation (collector/incarnations.py): it flushes what it read, gives
  the partition a new offset base (the checkpoint) and reads the new log from its start. Before, it waited
  at its old offset and silently skipped every event until the new log reached it.
- What the old broker held past the checkpoint is lost (only a producer could bring it back, and the
  broker had acknowledged it): the collector counts it from the highest log end it saw, in
  `partition_incarnations` and driftline_collector_events_lost_total. That count is a lower bound: the
  producer here sends in bursts and the broker dies right after one, before the collector has fetched
  (and so seen the log end of) the last of it; what it never saw the end of is not counted.
- Every event sent after the last restart is stored.
- Nothing is stored twice: per (topic, partition, offset) and per event id.
"""

from __future__ import annotations

import threading
import time

import pytest
from kafka import KafkaProducer

from collector.local_broker import LocalBroker, ensure_topics
from collector.loop import Collector
from driftline.simulate import label_payload, prediction_payload
from tests.conftest import own_database
from tests.fault.checks import duplicate_rows, row_counts_of_topics

pytestmark = [pytest.mark.integration, pytest.mark.fault]

PARTITIONS = 3
RESTARTS = 2


class Producer:
    """Sends predictions and labels to explicit partitions; reconnects after a broker restart."""

    def __init__(self, bootstrap: str, topics: dict[str, str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.sent = 0
        self.ids: set[str] = set()
        self._producer = self._connect()

    def _connect(self) -> KafkaProducer:
        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5, retries=10)

    def send(self, n: int) -> None:
        for _ in range(n):
            i = self.sent
            kind = "labels" if i % 4 == 3 else "predictions"
            raw = (label_payload if kind == "labels" else prediction_payload)(i, f"m{i % 3}")
            self._producer.send(self.topics[kind], value=raw, partition=i % PARTITIONS)
            self.ids.add(raw.split(b'"event_id":"', 1)[1].split(b'"', 1)[0].decode())
            self.sent += 1
        self._producer.flush(timeout=30)

    def reconnect(self) -> None:
        self._producer.close(timeout=5)
        self._producer = self._connect()

    def close(self) -> None:
        self._producer.close(timeout=5)


def test_broker_restarted_mid_stream_stores_each_event_once_and_counts_what_it_lost(settings, tmp_path, tally) -> None:  # type: ignore[no-untyped-def]
    # A database of its own: each rejoin after a restart rolls back on assignment (DELETEs and a window-state
    # rebuild that scan the tables); on the session's shared tables that was slow late in a full parallel run.
    settings, store = own_database(settings)
    rng = tally.rng("broker")
    broker = LocalBroker(log_path=tmp_path / "tansu.log").start()
    s = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                    "batch_max_events": 500, "batch_max_seconds": 0.2})
    topics = {"predictions": s.topic_predictions, "labels": s.topic_labels}
    ensure_topics(broker.bootstrap_servers, list(s.topics.values()), PARTITIONS)
    started = time.monotonic()
    producer = Producer(broker.bootstrap_servers, topics)
    collector = Collector(s, watermark_path=tmp_path / "log-ends.json")
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    behind: list[int] = []  # events sent but not yet stored when the broker went: the ones it lost
    try:
        producer.send(2000)
        deadline = time.monotonic() + 60
        while collector.stats.inserted == 0:
            assert time.monotonic() < deadline and runner.is_alive(), collector.stats.snapshot()
            time.sleep(0.1)
        for _ in range(RESTARTS):
            for _ in range(rng.randrange(2, 6)):  # mid-stream: the collector is somewhere in the backlog
                producer.send(rng.randrange(300, 1500))
            behind.append(producer.sent - sum(_stored_per_partition(store, list(topics.values())).values()))
            broker.stop()
            time.sleep(rng.uniform(0.5, 2.0))
            broker = LocalBroker(port=broker.port, log_path=tmp_path / "tansu.log").start()
            ensure_topics(broker.bootstrap_servers, list(s.topics.values()), PARTITIONS)
            producer.reconnect()
        before_last = set(producer.ids)
        producer.send(1000)
        after_last = producer.ids - before_last
        deadline = time.monotonic() + 120
        while not after_last <= _stored_ids(store, topics):
            assert time.monotonic() < deadline and runner.is_alive(), collector.stats.snapshot()
            time.sleep(0.5)
        time.sleep(1)  # anything more would be a duplicate: give it the chance to show
        collector.stop()
        runner.join(timeout=60)
        assert not runner.is_alive()
    finally:
        producer.close()
        collector.stop()
        broker.stop()

    rows = row_counts_of_topics(store, list(topics.values()))
    stored = sum(_stored_per_partition(store, list(topics.values())).values())
    stored_ids = _stored_ids(store, topics)
    counted = _counted_lost(store, topics)
    figures = {"restarts": RESTARTS, "events": producer.sent, "stored": stored, "lost_with_the_broker": producer.sent - stored,
               "counted_lost": counted, "duplicates": duplicate_rows(rows),
               "unstored_when_the_broker_went": sum(behind), "seconds": time.monotonic() - started}
    tally.record("broker", **figures)
    assert figures["duplicates"] == 0, rows
    assert stored_ids <= producer.ids
    assert after_last <= stored_ids  # the new incarnation is read from its start: nothing after it skipped
    assert counted <= producer.sent - stored, figures  # losses counted, never more than there were


def _stored_ids(store, topics: dict[str, str]) -> set[str]:  # type: ignore[no-untyped-def]
    return {str(r[0]) for r in store.query(
        "SELECT event_id FROM predictions WHERE topic = {t:String} UNION ALL "
        "SELECT event_id FROM labels WHERE topic = {l:String}",
        parameters={"t": topics["predictions"], "l": topics["labels"]}).result_rows}


def _counted_lost(store, topics: dict[str, str]) -> int:  # type: ignore[no-untyped-def]
    return int(store.query("SELECT sum(lost) FROM partition_incarnations WHERE topic IN {t:Array(String)}",
                           parameters={"t": list(topics.values())}).result_rows[0][0])


def _stored_per_partition(store, topics: list[str]) -> dict[tuple[str, int], int]:  # type: ignore[no-untyped-def]
    out: dict[tuple[str, int], int] = {}
    for table in ("predictions", "labels"):
        for topic, partition, n in store.query(f"SELECT topic, partition, count() FROM {table} WHERE topic IN "
                                               "{t:Array(String)} GROUP BY topic, partition",
                                               parameters={"t": topics}).result_rows:
            out[(str(topic), int(partition))] = int(n)
    return out
