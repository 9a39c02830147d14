"""`driftline simulate`'s traffic goes through the real broker and collector: valid events, labels after their
predictions, golden-signal metrics, and a drift that starts when it is told to."""

from __future__ import annotations

import threading
import time

import pytest

from collector.loop import Collector
from driftline.producer import PredictionLogger
from driftline.traffic import TrafficSpec, run
from tests.integration.alerting import tag


@pytest.mark.slow
def test_simulated_traffic_is_valid_and_drifts_on_time(settings, store) -> None:  # type: ignore[no-untyped-def]
    model = f"sim-{tag()}"
    spec = TrafficSpec(model=model, rate=100.0, drift_after_s=1.5, label_delay_s=0.3, metrics_every_s=0.5,
                       duration_s=3.0)
    collector = Collector(settings.model_copy(update={"batch_max_seconds": 0.2}))
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        with PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                              topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
            sent = run(logger, spec, threading.Event())
        assert sent["predictions"] > 150 and sent["labels"] > 100 and sent["metrics"] >= 8

        def counts() -> tuple[int, int, int]:
            return (store.query("SELECT count() FROM predictions WHERE model = {m:String}", parameters={"m": model})
                    .result_rows[0][0],
                    store.query("SELECT count() FROM labels WHERE model = {m:String}", parameters={"m": model})
                    .result_rows[0][0],
                    store.query("SELECT count() FROM infra_metrics WHERE model = {m:String}", parameters={"m": model})
                    .result_rows[0][0])

        deadline = time.monotonic() + 60
        while counts() != (sent["predictions"], sent["labels"], sent["metrics"]):
            assert time.monotonic() < deadline, (counts(), sent)
            time.sleep(0.3)
    finally:
        collector.stop()
        runner.join(timeout=30)
    dead = store.query("SELECT count() FROM dead_letters WHERE position(raw, {m:String}) > 0",
                       parameters={"m": model}).result_rows[0][0]
    assert dead == 0
    # Ordered by time: the first third is undrifted, the last third drifted (monthly charges around 65, then 95).
    early, late = store.query(
        "SELECT avgIf(c, r <= n / 3), avgIf(c, r > 2 * n / 3) FROM (SELECT variantElement(features['monthly_charges'], "
        "'Float64') AS c, row_number() OVER (ORDER BY ts) AS r, count() OVER () AS n FROM predictions "
        "WHERE model = {m:String})", parameters={"m": model}).result_rows[0]
    assert 55 < early < 75 and 85 < late < 105, (early, late)
    unlabelled = store.query(
        "SELECT count() FROM labels AS l LEFT ANTI JOIN (SELECT event_id FROM predictions WHERE model = {m:String}) AS p "
        "USING event_id WHERE l.model = {m:String}", parameters={"m": model}).result_rows[0][0]
    assert unlabelled == 0  # every label answers a prediction that was sent
