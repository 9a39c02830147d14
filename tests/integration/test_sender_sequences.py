"""Events a model service sent and Driftline never stored are counted exactly, from sender sequence numbers.

Through the real broker and a real collector into chDB: PredictionLogger numbers its events in a Kafka
header; the collector records the numbers it stored with each checkpoint; `db status`, /metrics and the
collector's log report the numbers missing below each sender's highest. The loss here is made the way a
killed in-memory broker makes it, from the collector's point of view: numbers that never arrive.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid

import pytest
from kafka import KafkaProducer

from collector.loop import Collector
from collector.sender_gaps import SenderGapWatch
from driftline import metrics
from driftline.cli import main
from driftline.producer import PredictionLogger
from driftline.sequences import HEADER, header_value, missing_total, sender_gaps
from tests.conftest import own_database, wait_for

pytestmark = pytest.mark.integration


def prediction(model: str, i: int) -> bytes:
    return json.dumps({"event_id": f"{model}-{i}", "model": model, "model_version": "1",
                       "ts": "2026-05-01T10:00:00Z", "features": {"x": float(i)}, "prediction": 1}).encode()


def test_missing_sequence_numbers_are_counted_exactly_and_reported(settings, capsys, monkeypatch,  # type: ignore[no-untyped-def]
                                                                   caplog) -> None:
    settings, client = own_database(settings)
    collector = Collector(settings)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    tag = uuid.uuid4().hex[:6]
    logger = PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                              topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    try:
        # A real logger: its 40 events (predictions and labels, two topics) all arrive, nothing missing.
        for i in range(20):
            event_id = logger.log_prediction(f"m_{tag}", {"x": float(i)}, i % 2)
            logger.log_label(f"m_{tag}", event_id, i % 2)
        assert logger.flush(30) == 0
        # Another sender's numbers 1..12 where 4, 5, 6 never arrive (what a killed broker took), 7 arrives twice
        # (a resend), 9 is a dead letter (stored as one: not missing), and headers nobody can trust are ignored.
        lost = f"svc/{tag}/lost"
        for n in (1, 2, 3, 7, 7, 8, 9, 10, 11, 12):
            value = b"{not json" if n == 9 else prediction(f"m_{tag}", 100 + n)
            producer.send(settings.topic_predictions, key=b"k", value=value, headers=[(HEADER, header_value(lost, n))])
        for hostile in (b"a b c", b"x' OR 1=1 -- 5", b"svc 0", b"svc -3", b"svc 99999999999999999999999", b""):
            producer.send(settings.topic_predictions, key=b"k", value=prediction(f"m_{tag}", 0), headers=[(HEADER, hostile)])
        producer.flush(30)

        def settled():  # type: ignore[no-untyped-def]
            got = {g.sender: g for g in sender_gaps(client, only_missing=False)}
            return got if logger.sender in got and lost in got and got[lost].highest == 12 and \
                got[logger.sender].stored == 40 else None

        got = wait_for("both senders' numbers stored", settled, timeout=60)
        assert (got[logger.sender].stored, got[logger.sender].missing) == (40, 0)
        assert (got[lost].stored, got[lost].highest, got[lost].missing) == (9, 12, 3)
        assert set(got) == {logger.sender, lost}, "malformed headers are not senders"
        assert [g.sender for g in sender_gaps(client)] == [lost]  # only senders missing some, by default
        assert missing_total(client) == (2, 3)

        scrape = metrics.exposition(metrics.StoreGauges(lambda: client)).decode()
        assert "driftline_sender_events_missing 3.0" in scrape

        # The collector's log names a gap once it lasted from one check to the next, and only once.
        caplog.set_level(logging.ERROR, logger="collector.sender_gaps")
        watch = SenderGapWatch(client, every_s=0)
        for _ in range(3):
            watch.maybe_check()
        lines = [r for r in caplog.records if r.name == "collector.sender_gaps"]
        assert [(r.sender, r.events_missing) for r in lines] == [(lost, 3)]  # type: ignore[attr-defined]

        monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_DATABASE", settings.clickhouse_database)
        assert main(["db", "status", "--clickhouse-url", str(settings.clickhouse_url)]) == 0
        status = json.loads(capsys.readouterr().out)["sender_sequences"]
        assert status["senders"] == 2 and status["events_missing"] == 3
        assert [(s["sender"], s["events_missing"], s["highest_sequence"]) for s in status["missing_by_sender"]] == [
            (lost, 3, 12)]
    finally:
        logger.close(5)
        producer.close(5)
        collector.stop()
        runner.join(60)
