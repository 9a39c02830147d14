"""Must-show 2 and 3 (no data): the whole pipeline, broker to verdict, on a schedule.

Predictions with drift injected from a known window on are produced to the
real broker with `PredictionLogger`, collected into chDB, and the APScheduler
scheduler (catching up the past windows, as after downtime) flags exactly the
drifted features in the windows after that time and none before. Labels are
sent only afterwards: the performance stage, which had no verdict without
them, is retried on the next ticks and shows the injected accuracy drop in
exactly the drifted windows. A registered model that never sent anything gets
`no_data` results, not an error.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from pathlib import Path

import pytest

import pandas as pd

from collector.loop import Collector
from detectors.config import load_registry
from detectors.reference import upload
from detectors.schedule import DetectorScheduler, window_containing
from driftline.producer import PredictionLogger
from driftline.store import connect
from tests.conftest import wait_for

WINDOW = dt.timedelta(minutes=10)
WINDOWS = 6
DRIFT_FROM = 3  # windows 3, 4, 5 drift
PER_WINDOW = 400


def event(rng: random.Random, drifted: bool) -> tuple[dict[str, object], str, str]:
    """(features, prediction, label): x1 shifts and c changes mix when drifted; accuracy 0.9 -> 0.6."""
    features = {
        "x1": rng.gauss(1.5 if drifted else 0.0, 1.0),
        "x2": rng.gauss(10.0, 2.0),
        "c": rng.choices(["web", "app", "store"], [0.2, 0.3, 0.5] if drifted else [0.5, 0.3, 0.2])[0],
    }
    label = "1" if rng.random() < 0.4 else "0"
    correct = rng.random() < (0.6 if drifted else 0.9)
    prediction = label if correct else ("0" if label == "1" else "1")
    return features, prediction, label


@pytest.mark.slow
def test_scheduled_detection_flags_drift_after_injection_and_accuracy_drop_once_labels_arrive(
    settings, store, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    model, ghost = f"e2e-{tag}", f"ghost-{tag}"
    registry_file = tmp_path / "models.yaml"
    registry_file.write_text(f"""
defaults:
  window: 10m
  schedule: {{interval: 1s}}
  drift: {{min_rows: 100, prediction: false, target: false}}
  performance: {{min_rows: 100, max_drop: 0.1}}
models:
  - name: {model}
    task: binary_classification
    features: {{x1: numeric, x2: numeric, c: categorical}}
    performance: {{metrics: [accuracy, precision, recall, f1]}}
    reference: {{upload: train}}
  - name: {ghost}
    task: regression
    features: {{y: numeric}}
    reference: {{rolling: {{offset: 7d}}}}
""")
    registry = load_registry(registry_file)
    rng = random.Random(20261122)

    # The reference: a training sample from the undrifted distribution, with labels (90% accurate).
    rows = []
    for _ in range(2000):
        features, prediction, label = event(rng, drifted=False)
        rows.append({**features, "prediction": prediction, "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "train.csv", index=False)
    upload(store, registry.get(model), "train", tmp_path / "train.csv", show_progress=False)

    collector = Collector(settings.model_copy(update={"batch_max_seconds": 0.2}))
    runner = threading.Thread(target=collector.run, name="collector", daemon=True)
    runner.start()
    now = dt.datetime.now(dt.timezone.utc)
    first = window_containing(now - WINDOW * (WINDOWS + 1), WINDOW)
    labels: list[tuple[str, str, dt.datetime]] = []
    with PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                          topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
        for w in range(WINDOWS):
            for i in range(PER_WINDOW):
                features, prediction, label = event(rng, drifted=w >= DRIFT_FROM)
                ts = first.start + WINDOW * w + WINDOW * (i + 0.5) / PER_WINDOW
                event_id = logger.log_prediction(model, features, prediction, ts=ts)
                labels.append((event_id, label, ts))
        logger.flush(timeout=60)
    count = f"SELECT count() FROM predictions WHERE model = '{model}'"
    wait_for("predictions collected", lambda: store.query(count).result_rows[0][0] == WINDOWS * PER_WINDOW)

    scheduler = DetectorScheduler(registry, lambda: connect(settings), grace=dt.timedelta(seconds=0),
                                  catchup_windows=WINDOWS + 3, workers=2)
    scheduler.start()
    try:
        windows = [first.start + WINDOW * w for w in range(WINDOWS)]

        def drift_runs() -> bool:
            done = store.query(
                "SELECT count(DISTINCT window_start) FROM detector_runs WHERE model = {m:String} AND stage = 'drift' "
                "AND status = 'ok' AND window_start IN {ws:Array(DateTime64(3, 'UTC'))}",
                parameters={"m": model, "ws": windows}).result_rows[0][0]
            return done == WINDOWS

        wait_for("scheduled drift runs of every window", drift_runs)
        flagged = store.query(
            "SELECT window_start, groupArrayIf(column, drifted = 1), groupArray(status) FROM drift_results FINAL "
            "WHERE model = {m:String} AND segment = '' AND column_role = 'feature' "
            "AND window_start IN {ws:Array(DateTime64(3, 'UTC'))} GROUP BY window_start ORDER BY window_start",
            parameters={"m": model, "ws": windows}).result_rows
        assert len(flagged) == WINDOWS
        for w, (_, drifted, statuses) in enumerate(flagged):
            expected = {"x1", "c"} if w >= DRIFT_FROM else set()
            assert set(drifted) == expected, f"window {w}: flagged {drifted}"
            assert set(statuses) <= {"ok", "drifted"}
        # Before any label: performance has no verdict (and is not marked done).
        pending = store.query(
            "SELECT DISTINCT status FROM performance_results FINAL WHERE model = {m:String} "
            "AND window_start IN {ws:Array(DateTime64(3, 'UTC'))}", parameters={"m": model, "ws": windows}).result_rows
        assert {r[0] for r in pending} <= {"insufficient_data"}

        # Labels arrive late; the next ticks recompute the performance of those windows.
        with PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                              topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
            for event_id, label, ts in labels:
                logger.log_label(model, event_id, label, ts=ts + dt.timedelta(minutes=5))
            logger.flush(timeout=60)

        def accuracy() -> list[tuple[object, ...]] | None:
            rows = store.query(
                "SELECT window_start, value, baseline, status, labelled_rows, ci_low, ci_high FROM performance_results FINAL "
                "WHERE model = {m:String} AND segment = '' AND metric = 'accuracy' "
                "AND window_start IN {ws:Array(DateTime64(3, 'UTC'))} ORDER BY window_start",
                parameters={"m": model, "ws": windows}).result_rows
            ready = len(rows) == WINDOWS and all(r[4] == PER_WINDOW for r in rows)
            return rows if ready else None

        rows = wait_for("performance once labels arrived", accuracy, timeout=180)
        for w, (_, value, baseline, status, _labelled, lo, hi) in enumerate(rows):
            assert 0.85 < baseline < 0.95
            assert lo < value < hi
            if w >= DRIFT_FROM:
                assert 0.5 < value < 0.7 and status == "degraded", (w, value, status)
            else:
                assert 0.84 < value < 0.96 and status == "ok", (w, value, status)

        # The model that never sent anything: `no_data`, recorded, no error.
        ghost_runs = store.query(
            "SELECT stage, groupUniqArray(status) FROM detector_runs WHERE model = {m:String} GROUP BY stage",
            parameters={"m": ghost}).result_rows
        assert dict(ghost_runs) == {"drift": ["no_data"], "performance": ["no_data"]}
        ghost_dataset = store.query(
            "SELECT DISTINCT status FROM drift_results FINAL WHERE model = {m:String} AND column = '__dataset__'",
            parameters={"m": ghost}).result_rows
        assert ghost_dataset == [("no_data",)]
    finally:
        scheduler.stop()
        collector.stop()
        runner.join(timeout=30)
