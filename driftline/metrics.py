"""Driftline's own Prometheus metrics: every one is defined here, on one dedicated registry.

The stages count at the seams where they already keep their own books
(`collector.stats`, `detectors.run`, `alerts.dispatch`, `alerts.outbox`, the
API's request middleware), each with a one-line call into this module; the
API serves the exposition at `GET /metrics` (`driftline.api.metrics`). Gauges
that live in the store (alerts firing, outbox backlog) are read at scrape time
by `StoreGauges`, one bounded query each, and a store error never fails the
scrape: it shows as `driftline_store_up 0`.

Label cardinality is bounded by construction: event kinds, dead-letter
reasons, stages, statuses, channel kinds, route templates (never raw paths),
HTTP methods folded to a known set, topics and partitions of the
configuration, and model names of the registry (plus at most 100 names of
unregistered models, `driftline.unknown_models`). Nothing is labelled by
feature, event id, delivery id or path. The registry is not prometheus_client's
global default: apps and tests can be built several times in one process.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

import driftline
from driftline.sequences import missing_total

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from alerts.outbox import Delivery
    from collector.batch import Batch, DeadLetter
    from detectors.run import RunResult

disable_created_metrics()  # no `_created` series beside every counter and histogram: half the series, same signal
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, open fds, ...
PlatformCollector(registry=REGISTRY)  # python_info

UNKNOWN = "unknown"
FAST = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

BUILD = Info("driftline_build", "Driftline's version.", registry=REGISTRY)
BUILD.info({"version": driftline.__version__})

# -- collector ------------------------------------------------------------------------------------------------
EVENTS_CONSUMED = Counter("driftline_collector_events_consumed_total",
                          "Records polled from Kafka, by event kind of their topic.", ["kind"], registry=REGISTRY)
EVENTS_STORED = Counter("driftline_collector_events_stored_total",
                        "Events written to their ClickHouse table (Kafka collector, HTTP ingest, replay), by event kind.",
                        ["kind"], registry=REGISTRY)
EVENTS_DEAD_LETTERED = Counter("driftline_collector_events_dead_lettered_total",
                               "Records written to the dead-letter table, by event kind and reason "
                               "(invalid_json, oversized, contract, invalid_name, unknown_topic, unknown_model, store_rejected, "
                               "undecodable_batch).",
                               ["kind", "reason"], registry=REGISTRY)
BATCHES = Counter("driftline_collector_batches_total", "Batches the collector made durable (rows, dead letters and "
                  "checkpoint).", registry=REGISTRY)
FLUSH_SECONDS = Histogram("driftline_collector_flush_duration_seconds",
                          "Time to write one collector batch and its checkpoint (the successful attempt).",
                          buckets=SLOW, registry=REGISTRY)
LAG = Gauge("driftline_collector_lag_records", "Records behind the partition's high watermark when the last batch "
            "was cut, per assigned topic-partition.", ["topic", "partition"], registry=REGISTRY)
LOCAL_BROKER_REPLACEMENTS = Counter(
    "driftline_local_broker_replacements_total",
    "Times `up` swapped its local broker for an empty one after committing everything it held "
    "(collector/broker_recycling.py).", registry=REGISTRY)
LOCAL_BROKER_MEMORY = Gauge("driftline_local_broker_memory_bytes",
                            "Resident memory of the local broker `up` runs (the embedded default), as last read.",
                            registry=REGISTRY)
STORE_ERRORS = Counter("driftline_collector_store_errors_total",
                       "Failed batch write attempts (ClickHouse unavailable or the checkpoint failing).", registry=REGISTRY)
UNDECODABLE_BATCHES = Counter(
    "driftline_collector_undecodable_batches_total",
    "Kafka record batches the consumer could not decode, dead-lettered whole (one dead letter per batch) and "
    "skipped, by topic and reason (codec_unavailable, corrupt, too_large). Counted when met: a batch met again "
    "after a crash replay counts again.", ["topic", "reason"], registry=REGISTRY)
EVENTS_LOST = Counter(
    "driftline_collector_events_lost_total",
    "Events a partition's log held past the checkpoint when it started over (an in-memory broker restarted, "
    "a topic recreated: reason new_topic_id or log_end_below_checkpoint) or that retention removed before they "
    "were read (log_start_past_checkpoint), by topic and reason. At least this many: see docs on restarts.",
    ["topic", "reason"], registry=REGISTRY)
OTHER_MODEL = "__other__"
UNKNOWN_MODEL_EVENTS = Counter("driftline_unknown_model_events_total",
                               "Events naming a model the registry does not define, by event kind, model name (the "
                               "first 100 names this process saw; later ones as `__other__`) and outcome (stored, "
                               "dead_lettered: the registry's `unknown_models`).", ["kind", "model", "outcome"],
                               registry=REGISTRY)
WRITE_RETRIES = Counter("driftline_collector_write_retries_total",
                        "Batch write attempts after the first (each after rolling back the failed one).",
                        registry=REGISTRY)

# -- detectors ------------------------------------------------------------------------------------------------
DETECTOR_RUNS = Counter("driftline_detector_runs_total", "Detector runs by model, stage and status "
                        "(ok, no_data, insufficient_data, error).", ["model", "stage", "status"], registry=REGISTRY)
DETECTOR_SECONDS = Histogram("driftline_detector_run_duration_seconds", "Duration of one detector run (one window "
                             "of one stage, every segment).", ["stage"], buckets=SLOW, registry=REGISTRY)
DETECTOR_ROWS = Counter("driftline_detector_rows_scanned_total", "Rows the detector queries scanned.", ["stage"],
                        registry=REGISTRY)
DETECTOR_LAST_SUCCESS = Gauge("driftline_detector_last_success_timestamp_seconds",
                              "Unix time of the model's last finished run (ok or no_data) of the stage.",
                              ["model", "stage"], registry=REGISTRY)
WINDOWS_BEHIND = Gauge("driftline_detector_windows_behind", "Complete windows without a finished run after the "
                       "model's last scheduler tick (within the catch-up look-back).", ["model", "stage"],
                       registry=REGISTRY)
CONCEPT_DRIFT_ROWS = Counter("driftline_concept_drift_rows_total", "Labelled rows the streaming concept drift "
                             "detectors processed.", ["model"], registry=REGISTRY)
CONCEPT_DRIFT_FIRINGS = Counter("driftline_concept_drift_firings_total", "Firings of the streaming concept drift "
                                "detectors (page_hinkley, adwin, ddm).", ["model", "detector"], registry=REGISTRY)

# -- notifications --------------------------------------------------------------------------------------------
NOTIFICATIONS_QUEUED = Counter("driftline_notifications_queued_total", "Deliveries written to the outbox, by "
                               "channel kind (email, webhook).", ["kind"], registry=REGISTRY)
DELIVERY_ATTEMPTS = Counter("driftline_notification_attempts_total", "Delivery attempts by channel kind and outcome "
                            "(delivered, retry, dead).", ["kind", "outcome"], registry=REGISTRY)
DELIVERY_SECONDS = Histogram("driftline_notification_attempt_duration_seconds", "Duration of one delivery attempt "
                             "(SMTP session or webhook POST).", ["kind"], buckets=FAST, registry=REGISTRY)

# -- HTTP API -------------------------------------------------------------------------------------------------
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
HTTP_REQUESTS = Counter("driftline_http_requests_total", "HTTP API requests by method, route template "
                        "(`unmatched` when no route matched) and status code.", ["method", "route", "status"],
                        registry=REGISTRY)
HTTP_SECONDS = Histogram("driftline_http_request_duration_seconds", "HTTP API request duration until the response "
                         "is sent, by method and route template.", ["method", "route"], buckets=FAST, registry=REGISTRY)
HTTP_IN_FLIGHT = Gauge("driftline_http_requests_in_flight", "HTTP API requests being served.", registry=REGISTRY)

# -- scrape-time gauges of the store (StoreGauges) --------------------------------------------------------------
STORE_UP = "driftline_store_up"
ALERTS_FIRING = "driftline_alerts_firing"
OUTBOX_PENDING = "driftline_outbox_pending"
OUTBOX_DEAD = "driftline_outbox_dead"
OUTBOX_OLDEST = "driftline_outbox_oldest_pending_age_seconds"
LABELS_PAST_HORIZON = "driftline_labels_past_horizon"
SENDER_EVENTS_MISSING = "driftline_sender_events_missing"
MAX_SERIES = 1000  # per scrape-time query: a bound on the series a store can make us export


# -- hooks, one call per seam -----------------------------------------------------------------------------------

def consumed(kind: str, count: int) -> None:
    EVENTS_CONSUMED.labels(kind).inc(count)


def undecodable_batch(topic: str, reason: str) -> None:
    UNDECODABLE_BATCHES.labels(topic, reason).inc()


def events_lost(topic: str, reason: str, count: int) -> None:
    EVENTS_LOST.labels(topic, reason).inc(count)


def unknown_model_events(kind: str, model: str, outcome: str, count: int) -> None:
    UNKNOWN_MODEL_EVENTS.labels(kind, model, outcome).inc(count)


def batch_written(batch: Batch, rejected: list[DeadLetter], kinds: Mapping[str, str],
                  flush_seconds: float | None = None) -> None:
    """A batch is durable: its stored rows and dead letters by kind (`kinds`: topic -> event kind).

    `flush_seconds` is given by the collector's writer (a batch of its own), not by replay/HTTP ingest.
    """
    refused = Tally(kinds.get(d.origin.topic, UNKNOWN) for d in rejected)
    for kind, rows in batch.rows.items():
        stored = len(rows) - refused[kind.value]
        if stored:
            EVENTS_STORED.labels(kind.value).inc(stored)
    for letter, count in Tally((kinds.get(d.origin.topic, UNKNOWN), d.error_kind)
                               for d in [*batch.dead_letters, *rejected]).items():
        EVENTS_DEAD_LETTERED.labels(*letter).inc(count)
    if flush_seconds is not None:
        BATCHES.inc()
        FLUSH_SECONDS.observe(flush_seconds)


def partitions_revoked(keys: Iterable[tuple[str, int]]) -> None:
    """Another collector owns these now: its lag is its own to report."""
    for topic, partition in keys:
        try:
            LAG.remove(topic, str(partition))
        except KeyError:
            pass


def detector_run(result: RunResult) -> None:
    DETECTOR_RUNS.labels(result.model, result.stage, result.status).inc()
    DETECTOR_SECONDS.labels(result.stage).observe(result.duration_s)
    DETECTOR_ROWS.labels(result.stage).inc(result.rows_scanned)
    if result.status in ("ok", "no_data"):
        DETECTOR_LAST_SUCCESS.labels(result.model, result.stage).set_to_current_time()


def delivery_attempt(d: Delivery, outcome: str, seconds: float) -> None:
    DELIVERY_ATTEMPTS.labels(d.kind, outcome).inc()
    DELIVERY_SECONDS.labels(d.kind).observe(seconds)


def http_method(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


# -- scrape time ----------------------------------------------------------------------------------------------

class StoreGauges:
    """Gauges read from the store at each scrape: one bounded query per family; errors give `driftline_store_up 0`."""

    def __init__(self, client: Callable[[], Client], *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._client = client
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(STORE_UP, "1 if the store answered this scrape's queries, else 0.")
        firing = GaugeMetricFamily(ALERTS_FIRING, "Alerts firing now, by model and severity.",
                                   labels=["model", "severity"])
        pending = GaugeMetricFamily(OUTBOX_PENDING, "Deliveries waiting in the outbox (first attempt or retry), "
                                                    "by channel kind.", labels=["kind"])
        dead = GaugeMetricFamily(OUTBOX_DEAD, "Dead-lettered deliveries (replayable), by channel kind.",
                                 labels=["kind"])
        oldest = GaugeMetricFamily(OUTBOX_OLDEST, "Age of the oldest pending delivery, by channel kind.",
                                   labels=["kind"])
        late = GaugeMetricFamily(LABELS_PAST_HORIZON, "Labels that arrived after their prediction's window end plus "
                                 "the model's label_horizon (not joined), by model, as counted by the latest "
                                 "performance run of each window.", labels=["model"])
        missing = GaugeMetricFamily(SENDER_EVENTS_MISSING, "Events PredictionLoggers sent (numbered per logger) "
                                    "that were never stored, over all loggers on record: lost by a broker after "
                                    "acknowledging them, or still in flight (driftline/sequences.py).")
        try:
            client = self._client()
            _, never_stored = missing_total(client)
            rows = client.query(
                "SELECT model, severity, count() FROM alert_states FINAL WHERE status = {s:String} "
                "GROUP BY model, severity ORDER BY model, severity LIMIT {n:UInt32}",
                parameters={"s": "firing", "n": MAX_SERIES}).result_rows
            outbox = client.query(
                "SELECT kind, status, count(), min(created_at) FROM outbox FINAL WHERE status IN {st:Array(String)} "
                "GROUP BY kind, status ORDER BY kind, status LIMIT {n:UInt32}",
                parameters={"st": ["pending", "dead"], "n": MAX_SERIES}).result_rows
            past = client.query(
                "SELECT model, sum(labels) FROM late_labels FINAL GROUP BY model ORDER BY model LIMIT {n:UInt32}",
                parameters={"n": MAX_SERIES}).result_rows
        except Exception:  # noqa: BLE001 - the scrape must not fail with the store
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for model, severity, count in rows:
            firing.add_metric([str(model), str(severity)], int(count))
        now = self._clock()
        for kind, status, count, since in outbox:
            if status == "pending":
                pending.add_metric([str(kind)], int(count))
                first = since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)
                oldest.add_metric([str(kind)], max(0.0, (now - first).total_seconds()))
            else:
                dead.add_metric([str(kind)], int(count))
        for model, count in past:
            late.add_metric([str(model)], int(count))
        missing.add_metric([], never_stored)
        yield from (up, firing, pending, dead, oldest, late, missing)


class _Scrape:
    """The registry and per-scrape collectors, exposed together (no registration, so no name clashes across apps)."""

    def __init__(self, *extra: StoreGauges) -> None:
        self._sources = (REGISTRY, *extra)

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source.collect()


def exposition(*extra: StoreGauges) -> bytes:
    """The text exposition (format 0.0.4) of the registry plus `extra` scrape-time collectors."""
    return generate_latest(_Scrape(*extra))  # type: ignore[arg-type]
