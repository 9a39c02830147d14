"""The gate before the local broker, with real clients: once held, the broker's log end is final.

`up` on the embedded default holds new events at the gate before its last read of the in-memory broker
(collector/produce_gate.py). Here real producers keep sending through it: librdkafka with zstd and acks=all,
and kafka-python with acks=0 (whose requests the broker never answers, so the gate must not wait on them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from collector.local_broker import LocalBroker, ensure_topics

pytestmark = pytest.mark.integration


def keep_sending(send: Callable[[int], None], stop: threading.Event) -> threading.Thread:
    def run() -> None:
        i = 0
        while not stop.is_set():
            send(i)
            i += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_all(bootstrap: str, partitions: list[TopicPartition]) -> dict[int, list[bytes]]:
    """Every record from the start of each partition, by partition (read until 1.5 s bring nothing new, 15 s at most)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    records: dict[int, list[bytes]] = {tp.partition: [] for tp in partitions}
    quiet_since = began = time.monotonic()
    while time.monotonic() - quiet_since < 1.5 and time.monotonic() - began < 15:
        batch = consumer.poll(200)
        for tp, rs in batch.items():
            records[tp.partition] += [r.key for r in rs]
            quiet_since = time.monotonic()
    consumer.close()
    return records


def test_held_produce_requests_move_the_log_end_no_further_and_every_acknowledged_event_is_in_it() -> None:
    topic = "gated"
    with LocalBroker(gated=True) as broker:
        ensure_topics(broker.bootstrap_servers, [topic], 2)
        acked: list[tuple[int, int]] = []  # (partition, offset) librdkafka reported delivered
        failed: list[str] = []
        stop = threading.Event()
        rdkafka = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "compression.type": "zstd",
                            "linger.ms": 5, "message.timeout.ms": 3000})

        def on_delivery(error, message) -> None:  # type: ignore[no-untyped-def]
            if error is None:
                acked.append((message.partition(), message.offset()))
            else:
                failed.append(str(error))

        def send_rdkafka(i: int) -> None:
            rdkafka.produce(topic, b"v" * 100, key=b"rd-%d" % i, on_delivery=on_delivery)
            rdkafka.poll(0)

        fire_and_forget = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks=0, linger_ms=5)
        senders = [keep_sending(send_rdkafka, stop),
                   keep_sending(lambda i: fire_and_forget.send(topic, b"v", key=b"kp-%d" % i), stop)]
        time.sleep(2)
        held_at = len(acked)
        began = time.monotonic()
        assert broker.hold_produce() is True
        took = time.monotonic() - began
        time.sleep(2)  # both keep sending: the gate holds it all
        partitions = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        first = read_all(broker.bootstrap_servers, partitions)
        time.sleep(1)
        again = read_all(broker.bootstrap_servers, partitions)
        stop.set()
        for sender in senders:
            sender.join(5)
        rdkafka.poll(3.5)  # the held requests time out: librdkafka reports them failed, not delivered
        assert broker._gate is not None and broker._gate.held >= 2  # noqa: SLF001 - one connection per producer
        fire_and_forget.close(timeout=1)

    assert took < 1.0, took  # acks=0 requests are not waited for
    assert {p: len(r) for p, r in first.items()} == {p: len(r) for p, r in again.items()}  # the log end stays
    assert held_at > 100 and len(acked) >= held_at
    in_log = {(p, offset) for p, records in first.items() for offset in range(len(records))}
    assert set(acked) <= in_log, sorted(set(acked) - in_log)[:5]  # acknowledged means in the log, also after the hold
    keys = [k for records in first.values() for k in records]
    assert any(k.startswith(b"kp-") for k in keys) and len(keys) == len(set(keys))
    assert failed, "librdkafka kept sending after the hold; its held requests must fail, not be acknowledged"
