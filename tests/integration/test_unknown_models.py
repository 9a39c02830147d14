"""Must-show 5: events of a mistyped model name are visible, never silently a model of their own.

Through a real broker and collector (store mode) and through HTTP ingest
(dead-letter mode), on a database of the test's own so the only unregistered
names are the ones sent here: counted in /metrics, logged once per name with
the closest registered name, listed by `driftline db status`, GET
/unknown-models and the fleet dashboard's panel; with `unknown_models:
dead_letter` they are dead letters whose reason names the closest model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from collector.loop import Collector
from dashboards import fleet
from dashboards.macros import expand
from detectors.config import load_registry
from driftline import metrics
from driftline.api.app import create_app
from driftline.api.context import Reloaded
from driftline.api.auth import load_tokens
from driftline.cli import main
from driftline.unknown_models import ModelGate, record_registry, unknown_model_counts
from tests.conftest import own_database
from tests.integration.test_api_write import auth, model_entry, write_tokens

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc


def prediction(model: str, i: int) -> dict[str, object]:
    return {"event_id": f"{model}-{i}", "model": model, "model_version": "1", "ts": "2026-05-01T10:00:00Z",
            "features": {"x1": float(i), "x2": 0.5, "c": "a"}, "prediction": 1}


def label(model: str, i: int) -> dict[str, object]:
    return {"event_id": f"{model}-{i}", "model": model, "ts": "2026-05-02T10:00:00Z", "label": 1}


def unknown_counter(kind: str, model: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("driftline_unknown_model_events_total",
                                             {"kind": kind, "model": model, "outcome": outcome}) or 0.0


def test_a_mistyped_model_through_kafka_is_counted_logged_once_and_listed(settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                          caplog, monkeypatch, capsys) -> None:
    tag = uuid.uuid4().hex[:8]
    good, typo = f"churn_{tag}", f"chrun_{tag}"
    settings, client = own_database(settings)
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(good, "team-a"), model_entry(f"fraud_{tag}", "team-b")]}))
    registry = load_registry(models_file)
    record_registry(client, registry)
    collector = Collector(settings, gate=ModelGate.from_registry(registry))
    runner = threading.Thread(target=collector.run, daemon=True)
    caplog.set_level(logging.WARNING, logger="driftline.unknown_models")
    runner.start()
    try:
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
        sent = 0
        for round_ in range(2):  # two rounds, so two batches at least: the log line must still come once
            for i in range(5):
                n = round_ * 5 + i
                producer.send(settings.topic_predictions, key=good.encode(), value=json.dumps(prediction(good, n)).encode())
                producer.send(settings.topic_predictions, key=typo.encode(), value=json.dumps(prediction(typo, n)).encode())
                sent += 2
            producer.send(settings.topic_labels, key=typo.encode(), value=json.dumps(label(typo, round_)).encode())
            sent += 1
            producer.flush(timeout=30)
            deadline = time.monotonic() + 60
            while collector.stats.inserted < sent:
                assert runner.is_alive() and time.monotonic() < deadline, collector.stats.snapshot()
                time.sleep(0.1)
        producer.close()
    finally:
        collector.stop()
        runner.join(timeout=30)

    # Stored (the default action), nothing dead-lettered.
    assert client.query("SELECT model, count() FROM predictions GROUP BY model ORDER BY model").result_rows == [
        (typo, 10), (good, 10)]
    assert client.query("SELECT count() FROM dead_letters").result_rows == [(0,)]
    # /metrics: counted per name and kind. (The registry is process-wide: the name is this test's own.)
    assert unknown_counter("prediction", typo, "stored") == 10
    assert unknown_counter("label", typo, "stored") == 2
    assert unknown_counter("prediction", good, "stored") == 0
    # Logged once per name, naming the closest registered model.
    lines = [r for r in caplog.records if getattr(r, "model", None) == typo]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].closest == good and lines[0].levelno == logging.WARNING

    # The store's view: the counting helper, `db status`, and the fleet dashboard's panel.
    [found] = unknown_model_counts(client, [m.name for m in registry.models])
    assert (found.model, found.closest, found.predictions, found.labels, found.dead_lettered) == (typo, good, 10, 2, 0)
    monkeypatch.setenv("DRIFTLINE_MODELS_FILE", str(models_file))
    monkeypatch.setenv("DRIFTLINE_CLICKHOUSE_DATABASE", settings.clickhouse_database)
    assert main(["db", "status", "--clickhouse-url", str(settings.clickhouse_url)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert [(u["model"], u["closest"], u["predictions"], u["labels"]) for u in status["unknown_models"]] == [
        (typo, good, 10, 2)]
    now = dt.datetime.now(UTC)
    panel = expand(fleet.UNKNOWN_MODELS_SQL, start=now - dt.timedelta(hours=1), end=now + dt.timedelta(minutes=1),
                   interval_s=60, variables={})
    rows = client.query(panel).result_rows
    assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(typo, 10, 2, 0)]


@pytest.fixture
def dead_letter_api(base_settings, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings, client = own_database(base_settings)
    tag = uuid.uuid4().hex[:8]
    good = f"churn_{tag}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"unknown_models": "dead_letter",
                                       "models": [model_entry(good, "team-a"), model_entry(f"eta_{tag}", "team-b")]}))
    registry = load_registry(models_file)
    app = create_app(registry, load_tokens(write_tokens(tmp_path / "tokens.yaml")), lambda: client, settings=settings,
                     reload=lambda: Reloaded(load_registry(models_file)))
    return TestClient(app), client, good, models_file


def test_with_the_dead_letter_option_http_events_of_a_typo_are_dead_letters_naming_the_model(dead_letter_api) -> None:  # type: ignore[no-untyped-def]
    api, client, good, models_file = dead_letter_api
    typo = "chrun" + good[5:]
    answer = api.post("/ingest/predictions", json=[prediction(good, 0), prediction(typo, 1), prediction(typo, 2)],
                      headers=auth("writer"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["dead_lettered"], body["unknown_models"]) == (1, 2, [typo])
    assert {e["error_kind"] for e in body["errors"]} == {"unknown_model"}
    assert all(f"closest registered model: {good!r}" in e["error"] for e in body["errors"])
    letters = client.query("SELECT error_kind, error, JSONExtractString(raw, 'model') FROM dead_letters").result_rows
    assert len(letters) == 2 and {(k, m) for k, _, m in letters} == {("unknown_model", typo)}
    assert all(good in error for _, error, _ in letters)
    assert client.query("SELECT model FROM predictions").result_rows == [(good,)]
    assert unknown_counter("prediction", typo, "dead_lettered") == 2

    # The API lists it, with its dead letters; a team token sees it only if the closest model is its team's.
    listed = api.get("/unknown-models", headers=auth("reader"))
    assert listed.status_code == 200, listed.text
    assert [(u["model"], u["closest"], u["predictions"], u["dead_lettered"]) for u in listed.json()] == [
        (typo, good, 0, 2)]
    assert [u["model"] for u in api.get("/unknown-models", headers=auth("team")).json()] == [typo]  # team-a's model

    # A reload that registers the name: its events are stored from then on, and it is no longer listed.
    models_file.write_text(json.dumps({"unknown_models": "dead_letter", "models": [
        model_entry(good, "team-a"), model_entry(typo, "team-b")]}))
    assert api.post("/models/reload", headers=auth("admin")).status_code == 200
    again = api.post("/ingest/predictions", json=[prediction(typo, 3)], headers=auth("writer")).json()
    assert (again["accepted"], again["unknown_models"]) == (1, [])
    assert api.get("/unknown-models", headers=auth("reader")).json() == []


def test_without_a_registry_no_model_is_unknown(base_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings, client = own_database(base_settings)
    from collector.http_source import HttpIngest
    from driftline.contracts import EventKind

    sink = HttpIngest(client, gate=ModelGate.from_registry(None))
    outcome = sink.write(EventKind.PREDICTION, [json.dumps(prediction("anything_at_all", 0)).encode()])
    assert (outcome.written, outcome.dead_letters) == (1, [])
    assert unknown_counter("prediction", "anything_at_all", "stored") == 0
