"""`GET /metrics` on the real engine: auth, and the counters moving by exactly what the stages did.

Counters are process-wide (one registry per process), so every assertion is on the difference between two
scrapes around the work, parsed with prometheus_client's own parser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaProducer

from alerts import outbox
from alerts.config import AlertConfig
from alerts.dispatch import Dispatcher
from alerts.signing import WebhookSecret
from alerts.store import AlertRecord, save_states
from collector.loop import Collector
from collector.replay import write_events
from detectors.config import registry_from_yaml
from detectors.run import run_stage
from detectors.schedule import DONE, DetectorScheduler
from detectors.sources import Window
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.store import connect
from driftline.yamlfile import LocatedYaml
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.alerting import tag
from tests.integration.receivers import Receiver

pytestmark = pytest.mark.integration

READ, TEAM = "metrics-reader-0123456789", "metrics-team-a-0123456789"
UTC = dt.timezone.utc
WINDOW = Window(dt.datetime(2026, 5, 4, 10, tzinfo=UTC), dt.datetime(2026, 5, 4, 11, tzinfo=UTC))
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"tokens:\n  - {{name: prometheus, sha256: {hashlib.sha256(READ.encode()).hexdigest()}, "
                    "scopes: [read]}\n"
                    f"  - {{name: team-a, sha256: {hashlib.sha256(TEAM.encode()).hexdigest()}, scopes: [read], "
                    "team: team-a}\n")
    return path


def registry(name: str):  # type: ignore[no-untyped-def]
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [
        {"name": name, "task": "regression", "features": {"x": "numeric"}, "owner": "team-a",
         "reference": {"rolling": {"offset": "7d"}}, "drift": {"min_rows": 10}}]}))


@pytest.fixture
def api(base_settings, tmp_path: Path) -> Iterator[tuple[TestClient, str]]:  # type: ignore[no-untyped-def]
    name = f"metered-{tag()}"
    app = create_app(registry(name), load_tokens(tokens(tmp_path)), lambda: connect(base_settings))
    with TestClient(app) as client:
        yield client, name


def scrape(client: TestClient) -> Samples:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {READ}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def prediction(model: str, i: int) -> bytes:
    return encode_event(PredictionEvent(event_id=f"{model}-{i}", model=model, model_version="1",
                                        ts=WINDOW.start + dt.timedelta(seconds=10 * i + 1), features={"x": float(i)},
                                        prediction=1.0))


def test_metrics_need_a_read_token_without_a_team(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.get("/metrics", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    team = client.get("/metrics", headers={"Authorization": f"Bearer {TEAM}"})
    assert team.status_code == 403 and "every team's models" in team.json()["detail"]
    samples = scrape(client)
    assert samples[("driftline_store_up", frozenset())] == 1
    assert ("process_cpu_seconds_total", frozenset()) in samples
    assert client.get("/healthz").status_code == 200  # health stays open
    assert "/metrics" in client.get("/openapi.json").json()["paths"]


def test_writes_detector_runs_and_requests_move_the_counters_by_exactly_what_happened(api, store) -> None:  # type: ignore[no-untyped-def]
    client, name = api
    before = scrape(client)

    good = [prediction(name, i) for i in range(120)]
    bad = [b'{"model": "%s", "ts": "2026-05-04T10:00:00Z", "features": {"x": 1' % name.encode()] * 3  # truncated
    bad += [b'{"model": "%s", "ts": "2026-05-04T10:00:00Z"}' % name.encode()] * 2  # valid JSON, breaks the contract
    assert write_events(store, EventKind.PREDICTION, [*good[:60], *bad, *good[60:]], source=f"metrics-{name}") == (120, 5)

    model = registry(name).models[0]
    ran = run_stage(store, model, WINDOW, "drift")
    failed = run_stage(store, model, WINDOW, "no-such-stage")
    assert ran.status != "error" and failed.status == "error"

    assert client.get(f"/models/{name}", headers={"Authorization": f"Bearer {READ}"}).status_code == 200
    assert client.get("/models/nobody", headers={"Authorization": f"Bearer {READ}"}).status_code == 404
    assert client.get("/models/nobody").status_code == 401
    for _ in range(2):
        assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    assert delta(before, after, "driftline_collector_events_stored_total", kind="prediction") == 120
    assert delta(before, after, "driftline_collector_events_dead_lettered_total", kind="prediction",
                 reason="invalid_json") == 3
    assert delta(before, after, "driftline_collector_events_dead_lettered_total", kind="prediction",
                 reason="contract") == 2
    assert delta(before, after, "driftline_collector_batches_total") == 0  # replay is not a collector batch

    assert delta(before, after, "driftline_detector_runs_total", model=name, stage="drift", status=ran.status) == 1
    assert delta(before, after, "driftline_detector_runs_total", model=name, stage="no-such-stage", status="error") == 1
    assert delta(before, after, "driftline_detector_run_duration_seconds_count", stage="drift") == 1
    assert delta(before, after, "driftline_detector_rows_scanned_total", stage="drift") == ran.rows_scanned > 0

    route = "/models/{model}"
    assert delta(before, after, "driftline_http_requests_total", method="GET", route=route, status="200") == 1
    assert delta(before, after, "driftline_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta(before, after, "driftline_http_requests_total", method="GET", route=route, status="401") == 1
    assert delta(before, after, "driftline_http_requests_total", method="GET", route="unmatched", status="404") == 2
    assert delta(before, after, "driftline_http_request_duration_seconds_count", method="GET", route=route) == 3
    # The first scrape itself is counted under its template, and no raw path ever becomes a label.
    assert delta(before, after, "driftline_http_requests_total", method="GET", route="/metrics", status="200") == 1
    routes = {dict(labels).get("route") for (metric, labels) in after if metric == "driftline_http_requests_total"}
    assert "/models/nobody" not in routes and f"/models/{name}" not in routes and "/no/such/path" not in routes


def test_the_scheduler_reports_windows_behind(api, base_settings, store) -> None:  # type: ignore[no-untyped-def]
    client, name = api
    model = registry(name).models[0]
    write_events(store, EventKind.PREDICTION, [prediction(name, i) for i in range(30)], source=f"behind-{name}")
    before = scrape(client)
    scheduler = DetectorScheduler(registry(name), lambda: connect(base_settings), grace=dt.timedelta(0),
                                  catchup_windows=3)
    results = scheduler.tick(model, now=WINDOW.end + dt.timedelta(hours=1, minutes=5))
    after = scrape(client)
    drift = [r for r in results if r.stage == "drift"]
    assert len(drift) == 3
    for status in {r.status for r in results}:
        assert delta(before, after, "driftline_detector_runs_total", model=name, stage="drift",
                     status=status) == sum(r.status == status for r in drift)
    assert after[("driftline_detector_windows_behind", frozenset({("model", name), ("stage", "drift")}))] == sum(
        r.status not in DONE for r in drift)
    if any(r.status in DONE for r in drift):
        assert ("driftline_detector_last_success_timestamp_seconds",
                frozenset({("model", name), ("stage", "drift")})) in after


def test_alerts_firing_and_the_outbox_are_read_at_scrape_time(api, store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    client, name = api
    before = scrape(client)
    save_states(store, [AlertRecord(f"fp-{name}-{i}", "drift", name, "1", "drift", "x", severity, {}, status="firing",
                                    active_since=dt.datetime.now(UTC))
                        for i, severity in enumerate(["critical", "critical", "warning"])])
    secret = WebhookSecret.generate()
    monkeypatch.setenv("TEST_METRICS_HOOK_SECRET", secret)
    channel = f"hook-{tag()}"
    now = dt.datetime.now(UTC)
    d = outbox.Delivery(outbox.delivery_id("metrics", channel), channel, "webhook", name, "firing", [], "s",
                        "pending", 0, now, "", now)
    assert outbox.enqueue(store, [(d, b'{"schema": "driftline.retrain.v1"}')])
    queued = scrape(client)
    firing = {(dict(k)["severity"]): v for (metric, k), v in queued.items()
              if metric == "driftline_alerts_firing" and dict(k)["model"] == name}
    assert firing == {"critical": 2, "warning": 1}
    assert delta(before, queued, "driftline_notifications_queued_total", kind="webhook") == 1
    assert delta(before, queued, "driftline_outbox_pending", kind="webhook") == 1
    assert queued[("driftline_outbox_oldest_pending_age_seconds", frozenset({("kind", "webhook")}))] >= 0

    with Receiver([500, 200], secret) as receiver:
        config = AlertConfig.model_validate({"channels": {channel: {
            "type": "webhook", "url": receiver.url, "secret_env": "TEST_METRICS_HOOK_SECRET", "timeout": "2s",
            "backoff": "20ms", "backoff_cap": "50ms"}}})
        dispatcher = Dispatcher(store, config)
        deadline = time.monotonic() + 20
        while (outbox.get(store, d.delivery_id) or d).status == "pending":
            assert time.monotonic() < deadline
            dispatcher.deliver_due()
            time.sleep(0.03)
    after = scrape(client)
    assert delta(before, after, "driftline_notification_attempts_total", kind="webhook", outcome="retry") == 1
    assert delta(before, after, "driftline_notification_attempts_total", kind="webhook", outcome="delivered") == 1
    assert delta(before, after, "driftline_notification_attempt_duration_seconds_count", kind="webhook") == 2
    assert delta(before, after, "driftline_outbox_pending", kind="webhook") == 0


def test_a_store_that_fails_the_scrape_queries_is_store_up_0_not_a_failed_scrape(base_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    class Down:
        def query(self, *args: object, **kwargs: object) -> None:
            raise ConnectionRefusedError("clickhouse is down")

    app = create_app(registry(f"down-{tag()}"), load_tokens(tokens(tmp_path)), lambda: Down(),  # type: ignore[arg-type,return-value]
                     ready_checks={"clickhouse": lambda: None})
    samples = scrape(TestClient(app))
    assert samples[("driftline_store_up", frozenset())] == 0
    assert not any(metric == "driftline_alerts_firing" for metric, _ in samples)
    assert ("driftline_collector_batches_total", frozenset()) in samples  # the rest of the exposition is intact


@pytest.mark.slow
def test_a_running_collector_counts_what_it_consumes_and_stores(api, settings, store) -> None:  # type: ignore[no-untyped-def]
    client, name = api
    before = scrape(client)
    collector = Collector(settings.model_copy(update={"batch_max_seconds": 0.3}))
    runner = threading.Thread(target=collector.run, name="collector", daemon=True)
    runner.start()
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    for i in range(40):
        producer.send(settings.topic_predictions, key=name.encode(), value=prediction(name, i))
    for _ in range(4):
        producer.send(settings.topic_predictions, key=name.encode(), value=b"{oops")
    producer.flush(timeout=60)
    producer.close()
    deadline = time.monotonic() + 90
    while collector.stats.inserted + collector.stats.dead_lettered < 44:
        assert runner.is_alive() and time.monotonic() < deadline, collector.stats.snapshot()
        time.sleep(0.1)
    running = scrape(client)  # before stopping: leaving the group revokes the partitions, and their lag with them
    collector.stop()
    runner.join(timeout=60)
    after = scrape(client)
    assert delta(before, after, "driftline_collector_events_consumed_total", kind="prediction") == 44
    assert delta(before, after, "driftline_collector_events_stored_total", kind="prediction") == 40
    assert delta(before, after, "driftline_collector_events_dead_lettered_total", kind="prediction",
                 reason="invalid_json") == 4
    assert delta(before, after, "driftline_collector_batches_total") == collector.stats.batches >= 1
    assert delta(before, after, "driftline_collector_flush_duration_seconds_count") == collector.stats.batches
    lag = {dict(k)["partition"]: v for (metric, k), v in running.items()
           if metric == "driftline_collector_lag_records" and dict(k)["topic"] == settings.topic_predictions}
    assert lag and all(v == 0 for v in lag.values())  # one partition (one key), caught up
    assert not any(metric == "driftline_collector_lag_records" and dict(k)["topic"] == settings.topic_predictions
                   for metric, k in after)
