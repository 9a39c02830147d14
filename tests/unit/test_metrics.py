"""Driftline's own metrics, without a store: the exposition matches docs/reference.md's table, labels stay bounded, the
hooks count what they are given, and a failing store turns into `driftline_store_up 0`, never a failed scrape."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from collector.batch import Batch, DeadLetter, Origin
from collector.decode import RecordDecoder
from driftline import metrics
from driftline.api.metrics import RequestMetrics
from driftline.contracts import EventKind

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
ALLOWED_LABELS = {"kind", "reason", "topic", "partition", "model", "stage", "status", "outcome", "method", "route", "detector",
                  "severity", "version", "le"}
UTC = dt.timezone.utc


class Rows:
    def __init__(self, rows: list[tuple[object, ...]]) -> None:
        self.result_rows = rows


class FakeStore:
    """Answers the scrape-time queries (by their table) with fixed rows."""

    def __init__(self, firing: list[tuple[object, ...]], outbox: list[tuple[object, ...]],
                 late: list[tuple[object, ...]] | None = None, senders: tuple[int, int] = (0, 0)) -> None:
        self.firing, self.outbox, self.late, self.queries = firing, outbox, late or [], []
        self.senders = senders

    def query(self, sql: str, parameters: dict[str, object] | None = None) -> Rows:
        self.queries.append((sql, parameters or {}))
        if "sender_sequences" in sql:
            return Rows([self.senders])
        if "late_labels" in sql:
            return Rows(self.late)
        return Rows(self.firing if "alert_states" in sql else self.outbox)


class DownStore:
    def query(self, sql: str, parameters: dict[str, object]) -> Rows:
        raise ConnectionRefusedError("clickhouse")


def families(*extra: metrics.StoreGauges) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(metrics.exposition(*extra).decode())}


def exposed_name(family) -> str:  # type: ignore[no-untyped-def]
    return f"{family.name}_total" if family.type == "counter" else family.name


def documented() -> dict[str, tuple[str, set[str]]]:
    """The reference's metric table (docs/reference.md): name -> (type, labels)."""
    text = REFERENCE.read_text()
    section = text[text.index("## Metrics"):]
    section = section[:section.index("\n## ", 3)]
    out = {}
    for name, kind, labels in re.findall(r"^\| `(driftline_\w+)` \| (\w+) \|([^|]*)\|", section, re.M):
        out[name] = (kind, set(re.findall(r"`(\w+)`", labels)))
    return out


def test_every_documented_metric_is_exposed_with_its_type_and_labels() -> None:
    store = FakeStore([("churn", "critical", 2)], [("webhook", "pending", 3, dt.datetime(2026, 1, 1, tzinfo=UTC))])
    exposed = {exposed_name(f): f for name, f in families(metrics.StoreGauges(lambda: store)).items()
               if name.startswith("driftline_")}
    docs = documented()
    assert len(docs) >= 25
    assert set(exposed) == set(docs), "docs/reference.md's metric table and driftline.metrics disagree"
    for name, (kind, labels) in docs.items():
        family = exposed[name]
        assert family.type == {"info": "gauge"}.get(kind, kind), name
    # Labels of the metrics that have children already: the documented ones.
    for family in exposed.values():
        for sample in family.samples:
            assert set(sample.labels) - {"le"} <= docs[exposed_name(family)][1], (sample.name, sample.labels)
    # Process metrics come along on the same dedicated registry.
    assert {"process_cpu_seconds", "process_resident_memory_bytes", "python_info"} <= set(families())


def test_label_names_are_bounded_and_never_feature_event_or_path() -> None:
    for collector in list(metrics.REGISTRY._collector_to_names):  # noqa: SLF001 - the registry's own list
        for family in collector.collect():
            if not family.name.startswith("driftline_"):
                continue
            for sample in family.samples:
                assert set(sample.labels) <= ALLOWED_LABELS, (family.name, sample.labels)
    for name, (_, labels) in documented().items():
        assert labels <= ALLOWED_LABELS, name
        assert not labels & {"feature", "event_id", "path", "delivery_id", "fingerprint"}, name
    assert metrics.http_method("GET") == "GET" and metrics.http_method("BREW") == "other"


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_batch_is_counted_by_kind_reason_and_refusal() -> None:
    topic = "preds-unit-metrics"
    decoder = RecordDecoder({EventKind.PREDICTION: topic}, 256 * 1024)
    good = (b'{"event_id": "e%d", "model": "m", "model_version": "1", "ts": "2026-01-01T00:00:00Z", '
            b'"features": {"x": 1.0}, "prediction": 1.0}')
    payloads = [good % i for i in range(5)] + [b"{not json", b'{"model": "m"}', None]
    batch = Batch()
    decoder.add_records(batch, topic, 0, [Origin(topic, 0, i, None, p) for i, p in enumerate(payloads)])
    assert len(batch.rows[EventKind.PREDICTION]) == 5
    refused = [DeadLetter(batch.origins[EventKind.PREDICTION][0], "store_rejected", "no")]
    stored0 = value("driftline_collector_events_stored_total", kind="prediction")
    json0 = value("driftline_collector_events_dead_lettered_total", kind="prediction", reason="invalid_json")
    contract0 = value("driftline_collector_events_dead_lettered_total", kind="prediction", reason="contract")
    refused0 = value("driftline_collector_events_dead_lettered_total", kind="prediction", reason="store_rejected")
    batches0 = value("driftline_collector_batches_total")
    flushes0 = value("driftline_collector_flush_duration_seconds_count")
    metrics.batch_written(batch, refused, {topic: "prediction"}, flush_seconds=0.02)
    metrics.batch_written(batch, [], {topic: "prediction"})  # replay/HTTP: no collector batch, no flush time
    assert value("driftline_collector_events_stored_total", kind="prediction") - stored0 == 4 + 5
    assert value("driftline_collector_events_dead_lettered_total", kind="prediction", reason="invalid_json") - json0 == 4
    assert value("driftline_collector_events_dead_lettered_total", kind="prediction", reason="contract") - contract0 == 2
    assert value("driftline_collector_events_dead_lettered_total", kind="prediction",
                 reason="store_rejected") - refused0 == 1
    assert value("driftline_collector_batches_total") - batches0 == 1
    assert value("driftline_collector_flush_duration_seconds_count") - flushes0 == 1


def test_lag_of_revoked_partitions_is_dropped() -> None:
    metrics.LAG.labels("t-unit", "0").set(7)
    metrics.LAG.labels("t-unit", "1").set(3)
    metrics.partitions_revoked([("t-unit", 0), ("t-unit", 9)])
    assert metrics.REGISTRY.get_sample_value("driftline_collector_lag_records", {"topic": "t-unit", "partition": "0"}) is None
    assert value("driftline_collector_lag_records", topic="t-unit", partition="1") == 3


def test_store_gauges_read_the_store_and_a_store_error_is_store_up_0() -> None:
    now = dt.datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    store = FakeStore([("churn", "critical", 2), ("eta", "warning", 1)],
                      [("webhook", "pending", 3, dt.datetime(2026, 1, 1)), ("email", "dead", 4, now)],
                      senders=(5, 81))
    got = families(metrics.StoreGauges(lambda: store, clock=lambda: now))
    assert [s.value for s in got["driftline_store_up"].samples] == [1]
    assert {(s.labels["model"], s.labels["severity"]): s.value for s in got["driftline_alerts_firing"].samples} == {
        ("churn", "critical"): 2, ("eta", "warning"): 1}
    assert [(s.labels, s.value) for s in got["driftline_outbox_pending"].samples] == [({"kind": "webhook"}, 3)]
    assert [(s.labels, s.value) for s in got["driftline_outbox_dead"].samples] == [({"kind": "email"}, 4)]
    assert [s.value for s in got["driftline_outbox_oldest_pending_age_seconds"].samples] == [600]
    assert [s.value for s in got["driftline_sender_events_missing"].samples] == [81]
    # Every query that yields a series per row is bounded; the senders' total is one row, one unlabelled series.
    assert all("LIMIT {n:UInt32}" in sql and params["n"] == metrics.MAX_SERIES
               for sql, params in store.queries if "sender_sequences" not in sql)
    assert sum("sender_sequences" in sql for sql, _ in store.queries) == 1

    down = families(metrics.StoreGauges(lambda: DownStore()))
    assert [s.value for s in down["driftline_store_up"].samples] == [0]
    assert "driftline_alerts_firing" not in down and "driftline_collector_batches" in down


def test_requests_are_labelled_by_route_template_and_unknown_paths_are_unmatched() -> None:
    app = FastAPI()

    @app.get("/things/{name}")
    def thing(name: str) -> dict[str, str]:
        if name == "boom":
            raise RuntimeError("boom")
        return {"name": name}

    app.add_middleware(RequestMetrics, router=app.router)
    client = TestClient(app, raise_server_exceptions=False)
    key = {"method": "GET", "route": "/things/{name}"}
    ok0, boom0 = value("driftline_http_requests_total", **key, status="200"), value(
        "driftline_http_requests_total", **key, status="500")
    unmatched0 = value("driftline_http_requests_total", method="GET", route="unmatched", status="404")
    other0 = value("driftline_http_requests_total", method="other", route="/things/{name}", status="405")
    timed0 = value("driftline_http_request_duration_seconds_count", **key)
    for i in range(3):
        assert client.get(f"/things/t{i}").status_code == 200
    assert client.get("/things/boom").status_code == 500
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.request("BREW", "/things/x").status_code == 405
    assert value("driftline_http_requests_total", **key, status="200") - ok0 == 3
    assert value("driftline_http_requests_total", **key, status="500") - boom0 == 1
    assert value("driftline_http_requests_total", method="GET", route="unmatched", status="404") - unmatched0 == 1
    assert value("driftline_http_requests_total", method="other", route="/things/{name}", status="405") - other0 == 1
    assert value("driftline_http_request_duration_seconds_count", **key) - timed0 == 4
    assert value("driftline_http_requests_in_flight") == 0
    raw = metrics.exposition().decode()
    assert "/things/t1" not in raw and "/nowhere" not in raw
