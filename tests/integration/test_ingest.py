"""Must-show 1: 100,000 events over three topics, 1% malformed, into the real ClickHouse engine.

Every valid event must be stored exactly once, every bad one must be a dead
letter with its raw bytes and a reason, and the collector must keep running.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from collector.loop import Collector
from collector.sink import OVERSIZED_PREFIX_BYTES
from driftline.contracts import EventKind
from driftline.simulate import label_payload, metric_payload, prediction_payload
from tests.malformed import malformed_cases

pytestmark = pytest.mark.integration

TOTAL = 100_000
BAD_SHARE = 0.01
MODELS = ["model-a", "model-b", "model-c"]


def _build_stream(seed: int = 7):
    """The events to produce: (kind, key, raw) in a shuffled order, plus what must come out."""
    rng = random.Random(seed)
    n_bad = int(TOTAL * BAD_SHARE)
    bad: list[tuple[EventKind, bytes | None, str]] = []
    i = 0
    while len(bad) < n_bad:
        bad.extend(malformed_cases(10_000_000 + i))
        i += 1
    bad = bad[:n_bad]
    good: list[tuple[EventKind, bytes, str]] = []
    n_good = TOTAL - n_bad
    for j in range(n_good):
        model = MODELS[j % len(MODELS)]
        r = rng.random()
        if r < 0.7:
            good.append((EventKind.PREDICTION, prediction_payload(j, model, rng=rng), model))
        elif r < 0.9:
            good.append((EventKind.LABEL, label_payload(j, model, rng=rng), model))
        else:
            good.append((EventKind.METRIC, metric_payload(j, model, rng=rng), model))
    stream = [(k, m.encode(), raw, None) for k, raw, m in good] + [(k, b"bad", raw, want) for k, raw, want in bad]
    rng.shuffle(stream)
    return stream, good, bad


@pytest.mark.slow
def test_100k_events_with_1pct_malformed_land_exactly_once(settings, store) -> None:
    stream, good, bad = _build_stream()
    collector = Collector(settings.model_copy(update={"batch_max_events": 20_000, "batch_max_seconds": 0.5}))
    runner = threading.Thread(target=collector.run, name="collector", daemon=True)
    runner.start()

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=20,
                             batch_size=512 * 1024, max_request_size=4 * 1024 * 1024, acks="all")
    topics = settings.topics
    for kind, key, raw, _ in stream:
        producer.send(topics[kind.value], key=key, value=raw)
    producer.flush(timeout=120)
    producer.close()

    deadline = time.monotonic() + 180
    while collector.stats.inserted + collector.stats.dead_lettered < TOTAL:
        assert runner.is_alive(), "the collector stopped on bad input"
        assert time.monotonic() < deadline, f"only {collector.stats.snapshot()} after 180s"
        time.sleep(0.2)
    time.sleep(1.0)  # anything beyond TOTAL (a duplicate) would show up now
    assert runner.is_alive(), "the collector must still be running"

    tp = settings.topic_predictions
    q = lambda sql, **p: store.query(sql, parameters=p).result_rows  # noqa: E731

    # Valid predictions: exactly once, per model, with all their features fanned out.
    want_pred = Counter(m for k, _, m in good if k is EventKind.PREDICTION)
    got_pred = dict(q("SELECT model, count() FROM predictions WHERE topic = {t:String} GROUP BY model", t=tp))
    assert got_pred == dict(want_pred)
    dup = q("SELECT count() - uniqExact(partition, offset), count() - uniqExact(event_id) FROM predictions WHERE topic = {t:String}", t=tp)
    assert dup == [(0, 0)]
    # Feature values come back with their JSON types: numbers as Float64, categories as String.
    want_sums = Counter()
    for k, raw, _ in good:
        if k is EventKind.PREDICTION:
            for name, v in json.loads(raw)["features"].items():
                want_sums[(name, "num" if isinstance(v, float) else "cat")] += 1
    got_sums = q("SELECT feature, countIf(value IS NOT NULL), countIf(category IS NOT NULL) "
                 "FROM prediction_features WHERE topic = {t:String} GROUP BY feature", t=tp)
    assert {(f, "num"): n for f, n, _ in got_sums if n} | {(f, "cat"): c for f, _, c in got_sums if c} == dict(want_sums)
    one = json.loads(next(raw for k, raw, _ in good if k is EventKind.PREDICTION))
    stored = q("SELECT variantElement(features['f0'], 'Float64'), variantElement(features['f9'], 'String') "
               "FROM predictions WHERE topic = {t:String} AND event_id = {e:String}", t=tp, e=one["event_id"])
    assert stored == [(one["features"]["f0"], one["features"]["f9"])]

    want_lbl = Counter(m for k, _, m in good if k is EventKind.LABEL)
    assert dict(q("SELECT model, count() FROM labels WHERE topic = {t:String} GROUP BY model", t=settings.topic_labels)) == dict(want_lbl)
    assert q("SELECT count() - uniqExact(partition, offset) FROM labels WHERE topic = {t:String}", t=settings.topic_labels) == [(0,)]
    want_met = Counter(m for k, _, m in good if k is EventKind.METRIC)
    assert dict(q("SELECT model, count() FROM infra_metrics WHERE topic = {t:String} GROUP BY model", t=settings.topic_metrics)) == dict(want_met)

    # Every bad event is a dead letter: same raw bytes, a reason, the expected kind.
    letters = store.query(
        "SELECT raw, error_kind, error FROM dead_letters WHERE topic IN {ts:Array(String)}",
        parameters={"ts": list(topics.values())}, column_formats={"raw": "bytes"},
    ).result_rows
    assert len(letters) == len(bad)
    digest = lambda b: hashlib.sha256(b or b"").hexdigest()  # noqa: E731
    kept = lambda raw, kind: raw[:OVERSIZED_PREFIX_BYTES] if kind == "oversized" else raw  # noqa: E731 - a prefix + digest
    assert Counter((digest(r), k) for r, k, _ in letters) == Counter((digest(kept(raw, want)), want) for _, raw, want in bad)
    assert all(err for _, _, err in letters)
    assert {k for _, k, _ in letters} >= {"invalid_json", "contract", "invalid_name", "oversized", "store_rejected"}

    # Hostile names never reached SQL: the tables are all still there.
    tables = {r[0] for r in q("SHOW TABLES")}
    assert {"predictions", "prediction_features", "labels", "infra_metrics", "dead_letters"} <= tables

    collector.stop()
    runner.join(timeout=60)
    assert not runner.is_alive()
