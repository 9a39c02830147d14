"""Must-show 6: labels sent days after their predictions, stamped with their send time, join their windows.

Predictions of one hour; their labels arrive two days later (ts = send time,
the PredictionLogger's default), half through Kafka and the collector, half
through HTTP ingest; a few arrive after the model's label_horizon. A backfill
(`driftline detect --start/--end`'s function) computes the window's
performance from every label within the horizon, and the labels past it are
counted: in the late_labels table, the model status and /metrics. The
scheduler sees a finished window relabelled by event id, not by label ts.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from collector.loop import Collector
from collector.replay import write_events
from detectors.backfill import detect
from detectors.config import registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.schedule import due_windows
from detectors.sources import Window
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.contracts import EventKind
from driftline.yamlfile import LocatedYaml
from tests.conftest import own_database
from tests.integration.test_api_write import auth, write_tokens

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2026, 6, 1, 10, tzinfo=UTC), dt.datetime(2026, 6, 1, 11, tzinfo=UTC))
N = 240
PAST = 24  # labels sent after the horizon
SENT = WINDOW.end + dt.timedelta(days=2)  # "days after": inside the 3-day horizon
TOO_LATE = WINDOW.end + dt.timedelta(days=4)


def entry(name: str, min_rows: int = 100) -> dict[str, object]:
    return {"name": name, "task": "binary_classification", "features": {"x": "numeric"},
            "reference": {"upload": "train"}, "window": "1h", "label_horizon": "3d",
            "performance": {"min_rows": min_rows, "metrics": ["accuracy"]}}


def model_spec(name: str, min_rows: int = 100):  # type: ignore[no-untyped-def]
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [entry(name, min_rows)]})).models[0]


def prediction(name: str, i: int, pred: str) -> bytes:
    ts = WINDOW.start + dt.timedelta(seconds=10 * i + 1)
    return json.dumps({"event_id": f"{name}-{i}", "model": name, "model_version": "1", "ts": ts.isoformat(),
                       "features": {"x": float(i)}, "prediction": pred}).encode()


def label(name: str, i: int, value: str, sent: dt.datetime) -> bytes:
    return json.dumps({"event_id": f"{name}-{i}", "model": name, "ts": sent.isoformat(), "label": value}).encode()


def test_labels_sent_days_late_join_their_window_and_those_past_the_horizon_are_shown(  # type: ignore[no-untyped-def]
        settings, tmp_path: Path) -> None:
    settings, client = own_database(settings)
    name = f"late_{uuid.uuid4().hex[:8]}"
    model = model_spec(name)
    rng = np.random.default_rng(5)
    truth = rng.choice(["0", "1"], N)
    pred = np.where(rng.random(N) < 0.7, truth, rng.choice(["0", "1"], N))
    ref = pd.DataFrame({"x": np.arange(N, dtype=float), "prediction": pred, "label": truth})
    ref.to_csv(tmp_path / "ref.csv", index=False)
    upload(client, model, "train", tmp_path / "ref.csv", show_progress=False)
    assert write_events(client, EventKind.PREDICTION, [prediction(name, i, str(pred[i])) for i in range(N)],
                        source=f"late-{name}")[1] == 0

    # Half the timely labels through Kafka and the collector...
    kafka_part = range(0, N // 2)
    collector = Collector(settings)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        for i in kafka_part:
            producer.send(settings.topic_labels, key=name.encode(), value=label(name, i, str(truth[i]), SENT))
        producer.flush(timeout=30)
        producer.close()
        deadline = time.monotonic() + 60
        while collector.stats.inserted < len(kafka_part):
            assert runner.is_alive() and time.monotonic() < deadline, collector.stats.snapshot()
            time.sleep(0.1)
    finally:
        collector.stop()
        runner.join(timeout=30)

    # ...the other half over HTTP, the last PAST of them sent after the horizon.
    app = create_app(registry_from_yaml(LocatedYaml(Path("test"), {"models": [entry(name)]})),
                     load_tokens(write_tokens(tmp_path / "tokens.yaml")), lambda: client, settings=settings)
    api = TestClient(app)
    http_part = [label(name, i, str(truth[i]), TOO_LATE if i >= N - PAST else SENT) for i in range(N // 2, N)]
    answer = api.post("/ingest/labels", content=b"\n".join(http_part), headers={
        **auth("writer"), "content-type": "application/x-ndjson"})
    assert answer.status_code == 200 and answer.json()["accepted"] == N // 2, answer.text

    # The backfill of the predictions' window joins every label inside the horizon, by event id.
    [result] = detect(client, [model], stages=["performance"], start=WINDOW.start, end=WINDOW.end,
                      show_progress=False)
    assert (result.status, result.late_labels) == ("ok", PAST)
    joined = slice(0, N - PAST)
    want = float(np.mean(truth[joined] == pred[joined]))
    [(value, labelled, predictions, status)] = client.query(
        "SELECT value, labelled_rows, prediction_rows, status FROM performance_results FINAL "
        "WHERE model = {m:String} AND metric = 'accuracy' AND segment = ''", parameters={"m": name}).result_rows
    assert (labelled, predictions, status) == (N - PAST, N, "ok")
    assert value == pytest.approx(want)

    # Past the horizon: counted per window, in the model status and in /metrics; never silently dropped.
    assert client.query("SELECT window_start, labels FROM late_labels FINAL WHERE model = {m:String}",
                        parameters={"m": name}).result_rows == [(WINDOW.start.replace(tzinfo=None), PAST)]
    shown = api.get(f"/models/{name}/status", headers=auth("reader")).json()["labels_past_horizon"]
    assert (shown["labels"], shown["windows"], shown["label_horizon_seconds"]) == (PAST, 1, 3 * 86400)
    exposition = api.get("/metrics", headers=auth("reader")).text
    assert f'driftline_labels_past_horizon{{model="{name}"}} {float(PAST)}' in exposition

    # A second backfill replaces the counts instead of adding to them.
    detect(client, [model], stages=["performance"], start=WINDOW.start, end=WINDOW.end, show_progress=False)
    assert client.query("SELECT sum(labels) FROM late_labels FINAL WHERE model = {m:String}",
                        parameters={"m": name}).result_rows == [(PAST,)]


def test_the_scheduler_reruns_a_window_whose_predictions_got_labels_by_event_id(base_settings,  # type: ignore[no-untyped-def]
                                                                               tmp_path: Path) -> None:
    _, client = own_database(base_settings)
    name = f"relabel_{uuid.uuid4().hex[:8]}"
    model = model_spec(name, min_rows=1)
    pd.DataFrame({"x": [1.0, 2.0], "prediction": ["1", "0"], "label": ["1", "0"]}).to_csv(tmp_path / "r.csv", index=False)
    upload(client, model, "train", tmp_path / "r.csv", show_progress=False)
    later = Window(WINDOW.end, WINDOW.end + dt.timedelta(hours=1))
    preds = [prediction(name, i, "1") for i in range(10)]  # in WINDOW
    preds.append(json.dumps({"event_id": f"{name}-next", "model": name, "model_version": "1",
                             "ts": (later.start + dt.timedelta(minutes=5)).isoformat(), "features": {"x": 1.0},
                             "prediction": "1"}).encode())
    write_events(client, EventKind.PREDICTION, preds, source=f"relabel-{name}")
    now = later.end + dt.timedelta(minutes=5)
    timely = [label(name, i, "1", later.end) for i in range(10)]
    timely.append(json.dumps({"event_id": f"{name}-next", "model": name, "ts": later.end.isoformat(),
                              "label": "0"}).encode())
    write_events(client, EventKind.LABEL, timely, source=f"relabel-{name}-timely")
    for window in (WINDOW, later):
        run_stage(client, model, window, "performance")
    assert due_windows(client, model, "performance", now, grace=dt.timedelta(0), catchup_windows=2) == []

    # A corrected label of the later window's prediction, stamped long after both windows: only that window is due again
    # (by its ts alone, the label would fall in neither window, or in both).
    late = json.dumps({"event_id": f"{name}-next", "model": name, "ts": (now + dt.timedelta(hours=20)).isoformat(),
                       "label": "1"}).encode()
    write_events(client, EventKind.LABEL, [late], source=f"relabel-{name}-labels")
    assert due_windows(client, model, "performance", now, grace=dt.timedelta(0), catchup_windows=2) == [later]
