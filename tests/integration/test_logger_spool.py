"""PredictionLogger across a broker restart: failed sends are resent from its spool, and what is not sent is reported.

A logger that stayed connected while the local broker restarted used to lose most of what it sent
meanwhile without a word (its send futures were ignored).
"""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer

from collector.local_broker import LocalBroker, ensure_topics
from driftline.producer import DeliveryError, PredictionLogger

pytestmark = pytest.mark.integration

TOPICS = ["predictions", "labels", "metrics"]


def read_all(bootstrap: str, expected: int) -> list[bytes]:
    consumer = KafkaConsumer("predictions", bootstrap_servers=[bootstrap], auto_offset_reset="earliest",
                             group_id=None, consumer_timeout_ms=5000)
    try:
        values: list[bytes] = []
        for message in consumer:
            values.append(message.value)
            if len(values) >= expected:
                break
        return values
    finally:
        consumer.close()


@pytest.mark.slow
def test_events_sent_while_the_broker_is_down_are_resent_once_it_is_back(tmp_path) -> None:
    broker = LocalBroker(log_path=tmp_path / "tansu.log").start()
    ensure_topics(broker.bootstrap_servers, TOPICS, 1)
    errors: list[DeliveryError] = []
    logger = PredictionLogger(broker.bootstrap_servers, on_error=errors.append, retry_backoff_s=0.2,
                              max_block_ms=1000, request_timeout_ms=1000, delivery_timeout_ms=2000,
                              reconnect_backoff_max_ms=200)
    try:
        ids = [logger.log_prediction("m", {"x": i}, 1) for i in range(20)]
        assert logger.flush(10) == 0
        broker.stop()
        ids += [logger.log_prediction("m", {"x": i}, 1) for i in range(20, 50)]
        undelivered = logger.flush(2)
        assert undelivered == 30, "the events sent while the broker was down are neither lost nor acknowledged"
        assert [e.undelivered for e in errors] == [30]
        broker = LocalBroker(port=broker.port, log_path=tmp_path / "tansu.log").start()  # a new, empty incarnation
        ensure_topics(broker.bootstrap_servers, TOPICS, 1)
        assert logger.flush(30) == 0
        assert logger.resent >= 30
        stored = read_all(broker.bootstrap_servers, 30)
        resent_ids = {v.split(b'"event_id":"')[1].split(b'"')[0].decode() for v in stored}
        assert resent_ids == set(ids[20:]), "exactly the spooled events reach the new broker"
    finally:
        logger.close(1)
        broker.stop()


@pytest.mark.slow
def test_close_raises_for_what_it_could_not_deliver(tmp_path) -> None:
    broker = LocalBroker(log_path=tmp_path / "tansu.log").start()
    ensure_topics(broker.bootstrap_servers, TOPICS, 1)
    logger = PredictionLogger(broker.bootstrap_servers, retry_backoff_s=0.2, max_block_ms=500,
                              request_timeout_ms=500, delivery_timeout_ms=1000, spool_events=5)
    broker.stop()
    for i in range(5):
        logger.log_prediction("m", {"x": i}, 1)
    with pytest.raises(DeliveryError, match="spool_events=5"):
        logger.log_prediction("m", {"x": 5}, 1)
    with pytest.raises(DeliveryError, match="5 events were not acknowledged") as raised:
        logger.close(1)
    assert raised.value.undelivered == 5
