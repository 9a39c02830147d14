"""The embedded default's broker swapped for an empty one under live traffic: nothing lost, nothing twice.

`up` bounds its local broker's memory by replacing it once the collector has committed everything it holds
(collector/broker_recycling.py). Here real producers keep sending through the gate while the broker is
replaced three times: librdkafka (zstd, acks=all) and the project's PredictionLogger (kafka-python,
idempotent by default: its producer goes fatal against a new tansu, which cannot bump a producer epoch, and
the logger replaces it and resends). Every event acknowledged to librdkafka and every event logged must be
stored exactly once, no incarnation may count a loss, and each new broker must start empty.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

from collector.broker_recycling import BrokerRecycling
from collector.local_broker import LocalBroker, ensure_topics
from collector.loop import Collector
from driftline.producer import PredictionLogger
from driftline.simulate import prediction_payload
from tests.conftest import own_database

pytestmark = pytest.mark.integration

PARTITIONS = 3
REPLACEMENTS = 3


class Recycling(BrokerRecycling):
    """Due when the test asks (the real one: when the broker's memory passes local_broker_max_mb)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.wanted = threading.Event()
        self.pauses: list[float] = []
        self.memory_after: list[float | None] = []

    def due(self) -> bool:
        return self.wanted.is_set()

    def run(self, drain):  # type: ignore[no-untyped-def]
        began = time.monotonic()
        swapped = super().run(drain)
        if swapped:
            self.pauses.append(time.monotonic() - began)
            self.memory_after.append(self.broker.memory_mb())
            self.wanted.clear()
        return swapped


def test_the_broker_is_replaced_under_traffic_and_every_acknowledged_event_is_stored_once(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings, store = own_database(settings)
    broker = LocalBroker(gated=True, log_path=tmp_path / "tansu.log").start()
    s = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers,
                                    "batch_max_events": 2000, "batch_max_seconds": 0.2})
    topics = list(s.topics.values())
    ensure_topics(broker.bootstrap_servers, topics, PARTITIONS)
    recycling = Recycling(broker, topics, PARTITIONS, max_mb=1)
    collector = Collector(s, recycling=recycling, watermark_path=tmp_path / "log-ends.json", sole_reader=True)
    runner = threading.Thread(target=collector.run, daemon=True)
    acked: set[str] = set()
    failed: list[str] = []
    stop = threading.Event()
    rdkafka = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "compression.type": "zstd",
                        "linger.ms": 5, "message.timeout.ms": 60000})
    logger = PredictionLogger(broker.bootstrap_servers, topic_predictions=s.topic_predictions, replace_after_s=5)

    def on_delivery(error, message) -> None:  # type: ignore[no-untyped-def]
        (failed.append(str(error)) if error is not None else acked.add(message.key().decode()))

    def send_rdkafka() -> None:
        i = 0
        while not stop.is_set():
            rdkafka.produce(s.topic_predictions, prediction_payload(i, "recycled-rd"), key=b"recycled-rd-%d" % i,
                            on_delivery=on_delivery)
            rdkafka.poll(0)
            i += 1
            time.sleep(0.001)
        rdkafka.flush(60)

    logged: set[str] = set()

    def send_logger() -> None:
        i = 0
        while not stop.is_set():
            logged.add(logger.log_prediction("recycled-py", {"x": float(i), "c": "abc"[i % 3]}, i % 2,
                                             event_id=f"recycled-py-{i}"))
            i += 1
            time.sleep(0.001)
        failed.extend([f"{n} undelivered"] if (n := logger.flush(60)) else [])

    senders = [threading.Thread(target=send_rdkafka, daemon=True), threading.Thread(target=send_logger, daemon=True)]
    runner.start()
    for sender in senders:
        sender.start()
    try:
        for _ in range(REPLACEMENTS):
            stored = collector.stats.inserted  # each time under traffic, with the collector back in its group
            deadline = time.monotonic() + 60
            while collector.stats.inserted < stored + 3000:
                assert time.monotonic() < deadline and runner.is_alive(), collector.stats.snapshot()
                time.sleep(0.05)
            recycling.wanted.set()
            deadline = time.monotonic() + 60
            while recycling.wanted.is_set():
                assert time.monotonic() < deadline and runner.is_alive(), collector.stats.snapshot()
                time.sleep(0.05)
        time.sleep(2)
        stop.set()
        for sender in senders:
            sender.join(90)
        deadline = time.monotonic() + 60
        while stored_ids(store) < acked | logged and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        collector.stop()
        runner.join(60)
        logger.close(5)
        broker.stop()

    assert recycling.replaced == REPLACEMENTS and not failed, (recycling.replaced, failed[:3])
    assert len(acked) > 1000 and len(logged) > 1000
    rows = store.query("SELECT event_id, count() AS n FROM predictions WHERE model IN ('recycled-rd', 'recycled-py') "
                       "GROUP BY event_id").result_rows
    assert all(n == 1 for _, n in rows)  # nothing stored twice
    assert acked | logged <= {e for e, _ in rows}  # every acknowledged or logged event stored (key = event id)
    met = store.query("SELECT countIf(reason = 'broker_replaced'), countIf(reason NOT IN ('first', 'broker_replaced')), "
                      "sum(lost) FROM partition_incarnations WHERE topic = {t:String}",
                      parameters={"t": s.topic_predictions}).result_rows[0]
    assert met == (REPLACEMENTS * PARTITIONS, 0, 0)  # each swap met once per partition, as a swap; nothing lost
    assert all(m is not None and m < 200 for m in recycling.memory_after)  # an empty broker each time
    print(f"replacements={recycling.replaced} acked={len(acked)} pauses_s={[round(p, 2) for p in recycling.pauses]} "
          f"logged={len(logged)} memory_after_mb={[round(m or 0) for m in recycling.memory_after]}")


def stored_ids(store) -> set[str]:  # type: ignore[no-untyped-def]
    rows = store.query("SELECT event_id FROM predictions WHERE model IN ('recycled-rd', 'recycled-py')").result_rows
    return {r[0] for r in rows}
