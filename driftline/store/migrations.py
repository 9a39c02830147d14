"""Versioned, idempotent schema migrations (`driftline db migrate`).

Each migration is a list of statements that are safe to run again
(`IF NOT EXISTS` everywhere), recorded in `schema_migrations` after it
succeeds. A crash halfway through a migration therefore leaves a state the
next run completes, and running `migrate` twice changes nothing.

Layout decisions, for the queries that come next:
- Every ingested row keeps (topic, partition, offset): the collector's
  exactly-once protocol rolls back and replays by offset.
- `predictions` keeps the whole event, features in one Map stored with
  ClickHouse's bucketed Map serialization: merged parts split the keys into
  about sqrt(number of features) buckets, so `features['age']` reads only
  the bucket holding `age` (measured on 500k rows of 20 features: quantiles
  of one feature in 27 ms instead of 124 ms). A per-feature table fed by a
  materialized view would give the same and cost the collector a third of
  its throughput (measured); the buckets cost about 1 us of merge CPU per
  event. `prediction_features` is a plain view, one row per (event,
  feature), for ad-hoc queries.
- Events enter through Null-engine `*_ingest` tables whose materialized
  views parse them, typing each value by its JSON token (see
  `_typed_json_value`). A Null table stores nothing, so an insert still
  writes exactly one real table, and the checkpoint protocol is unchanged.
- `ingest_batches` is the collector's commit log: one row per partition per
  batch, the committed offset being the max `next_offset`.
- Feature values and labels are `Variant(Float64, String)` in the value
  model's stored form (driftline/values.py): numbers, booleans and strings
  spelling a plain number are Float64, other strings stay strings, and null
  is the Variant's NULL. Migration 10 moved existing views to that form.
- `hourly_states` (migration 14; migration 9's view-fed `window_states`
  before it): per (model, hour, feature) mergeable aggregates, so a
  month-long window is summarised without reading its rows. Built per hour
  by the detectors from the stored rows, off the insert path (see
  `driftline/store/window_states.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from driftline.contracts import EventKind
from driftline.store import window_states
from driftline.values import class_name_sql, json_token_sql

log = logging.getLogger(__name__)

KAFKA_POSITION = """
    topic LowCardinality(String),
    partition Int32,
    offset Int64,"""

OFFSET_INDEX = "INDEX idx_offset offset TYPE minmax GRANULARITY 1"

NUMBER_OR_STRING = "Variant(Float64, String)"


def _typed_json_value(raw: str) -> str:
    """SQL turning one raw JSON token into its stored form, a Variant(Float64, String): see driftline.values.

    The token's JSON type decides first (ClickHouse's own inference would read the string "007" as 7),
    then the value model: true/false and numbers are Float64, a string spelling a plain number is that
    number, so `1`, `1.0`, `"1"` and `true` are one class and a numeric category equals its reference.
    """
    return json_token_sql(raw)


TABLE_BY_KIND: dict[EventKind, str] = {
    EventKind.PREDICTION: "predictions",
    EventKind.LABEL: "labels",
    EventKind.METRIC: "infra_metrics",
}
DEAD_LETTER_TABLE = "dead_letters"


def entry_table(table: str) -> str:
    """The Null-engine table the collector inserts into for `table`."""
    return f"{table}_ingest"


def _entry_select(table: str, *, fields: str, columns: str, tokens: str = "") -> str:
    """The SELECT of `table`'s ingest view: one JSON parse of `fields` (plus raw `tokens`) into `columns`."""
    entry = entry_table(table)
    extra = f", {tokens}" if tokens else ""
    return f"""SELECT e.topic AS topic, e.partition AS partition, e.offset AS offset,
                   parseDateTime64BestEffort(e.ts, 3, 'UTC') AS ts,
                   {columns}
            FROM (
                SELECT raw, JSONExtract(raw, 'Tuple(topic String, partition Int32, offset Int64, ts String, {fields})') AS e{extra}
                FROM {entry}
            )
            SETTINGS cast_string_to_variant_use_inference = 0"""


def _entry_point(table: str, *, fields: str, columns: str, tokens: str = "") -> tuple[str, str]:
    """DDL of `table`'s entry point: a Null-engine table and the view that parses its events into `table`.

    The collector inserts each validated event, its Kafka position prepended, as one JSON object
    (format JSONAsString). The view extracts `fields` in one parse (plus any raw `tokens`, typed by
    `_typed_json_value`) and writes `columns`. A Null table stores nothing, so an insert still
    writes exactly one real table.
    """
    entry = entry_table(table)
    return (
        f"CREATE TABLE IF NOT EXISTS {entry} (raw String) ENGINE = Null",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {entry}_mv TO {table} AS\n            "
        + _entry_select(table, fields=fields, columns=columns, tokens=tokens),
    )


PREDICTION_ENTRY = {
    "fields": "event_id String, model String, model_version String, proba Map(String, Float64), "
              "latency_ms Nullable(Float64)",
    "columns": f"""e.event_id AS event_id, e.model AS model, e.model_version AS model_version,
                    mapFromArrays(arrayMap(x -> x.1, kv), arrayMap(x -> {_typed_json_value('x.2')}, kv)) AS features,
                    {_typed_json_value("JSONExtractRaw(raw, 'prediction')")} AS prediction,
                    mapApply((k, v) -> ({class_name_sql('k')}, v), e.proba) AS proba, e.latency_ms AS latency_ms""",
    "tokens": "JSONExtractKeysAndValuesRaw(raw, 'features') AS kv",
}
"""The predictions view: feature values, prediction and proba classes in their canonical forms."""

LABEL_ENTRY = {
    "fields": "event_id String, model String",
    "columns": f"""e.event_id AS event_id, e.model AS model,
                    {_typed_json_value("JSONExtractRaw(raw, 'label')")} AS label""",
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ingest tables: predictions, labels, infra metrics, dead letters, ingest batches",
        (
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version UInt32,
                name String,
                applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = ReplacingMergeTree ORDER BY version""",
            f"""CREATE TABLE IF NOT EXISTS predictions ({KAFKA_POSITION}
                event_id String,
                model LowCardinality(String),
                model_version LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                features Map(String, Variant(Float64, String)),
                prediction Variant(Float64, String),
                proba Map(String, Float64),
                latency_ms Nullable(Float64),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
                {OFFSET_INDEX},
                CONSTRAINT unique_feature_names
                    CHECK length(mapKeys(features)) = length(arrayDistinct(mapKeys(features))),
                CONSTRAINT unique_proba_classes
                    CHECK length(mapKeys(proba)) = length(arrayDistinct(mapKeys(proba)))
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (model, ts)
            SETTINGS map_serialization_version = 'with_buckets',
                     map_buckets_strategy = 'sqrt',
                     max_buckets_in_map = 32,
                     map_buckets_min_avg_size = 1""",
            """CREATE VIEW IF NOT EXISTS prediction_features AS
            SELECT topic, partition, offset, event_id, model, model_version, ts,
                   kv.1 AS feature,
                   variantElement(kv.2, 'Float64') AS value,
                   variantElement(kv.2, 'String') AS category
            FROM predictions ARRAY JOIN features AS kv""",
            f"""CREATE TABLE IF NOT EXISTS labels ({KAFKA_POSITION}
                event_id String,
                model LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                label Variant(Float64, String),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
                {OFFSET_INDEX},
                INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (model, ts)""",
            f"""CREATE TABLE IF NOT EXISTS infra_metrics ({KAFKA_POSITION}
                model LowCardinality(String),
                instance LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                metrics Map(LowCardinality(String), Float64),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
                {OFFSET_INDEX}
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (model, instance, ts)""",
            *_entry_point("predictions", **PREDICTION_ENTRY),
            *_entry_point("labels", **LABEL_ENTRY),
            *_entry_point(
                "infra_metrics",
                fields="model String, instance String, metrics Map(String, Float64)",
                columns="e.model AS model, e.instance AS instance, e.metrics AS metrics",
            ),
            f"""CREATE TABLE IF NOT EXISTS dead_letters ({KAFKA_POSITION}
                key String,
                raw String,
                raw_bytes UInt32,
                error_kind LowCardinality(String),
                error String,
                source LowCardinality(String) DEFAULT 'kafka',
                received_at DateTime64(3, 'UTC') DEFAULT now64(3),
                {OFFSET_INDEX}
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(received_at)
            ORDER BY (topic, received_at)""",
            """CREATE TABLE IF NOT EXISTS ingest_batches (
                collector LowCardinality(String),
                topic LowCardinality(String),
                partition Int32,
                first_offset Int64,
                next_offset Int64,
                events UInt32,
                dead_letters UInt32,
                bytes UInt64,
                lag Int64,
                flush_ms Float64,
                written_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(written_at)
            ORDER BY (topic, partition, written_at)""",
        ),
    ),
)


RESULT_KEY = """
                model LowCardinality(String),
                model_version LowCardinality(String),
                segment String,
                window_start DateTime64(3, 'UTC'),
                window_end DateTime64(3, 'UTC'),"""

RESULT_TAIL = """
                run_id UUID,
                computed_at DateTime64(3, 'UTC') DEFAULT now64(3)"""

MIGRATIONS = MIGRATIONS + (
    Migration(
        2,
        "detectors: references, drift/quality/performance results, detector runs",
        (
            # An uploaded reference (a training sample) is stored like predictions, with its label inline.
            """CREATE TABLE IF NOT EXISTS reference_rows (
                model LowCardinality(String),
                reference LowCardinality(String),
                row UInt64,
                features Map(String, Variant(Float64, String)),
                prediction Variant(Float64, String),
                proba Map(String, Float64),
                label Variant(Float64, String),
                uploaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = MergeTree
            ORDER BY (model, reference, row)
            SETTINGS map_serialization_version = 'with_buckets',
                     map_buckets_strategy = 'sqrt',
                     max_buckets_in_map = 32,
                     map_buckets_min_avg_size = 1""",
            # Uploads arrive typed by the registry (numbers and categories in separate maps), so a
            # category "10115" stays a string; the view builds the Variant values.
            """CREATE TABLE IF NOT EXISTS reference_ingest (
                model String,
                reference String,
                row UInt64,
                numbers Map(String, Float64),
                categories Map(String, String),
                prediction_number Nullable(Float64),
                prediction_category Nullable(String),
                proba Map(String, Float64),
                label_number Nullable(Float64),
                label_category Nullable(String)
            ) ENGINE = Null""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS reference_ingest_mv TO reference_rows AS
            SELECT model, reference, row,
                   mapConcat(mapApply((k, v) -> (k, CAST(v AS {NUMBER_OR_STRING})), numbers),
                             mapApply((k, v) -> (k, CAST(v AS {NUMBER_OR_STRING})), categories)) AS features,
                   if(prediction_category IS NOT NULL, CAST(prediction_category AS {NUMBER_OR_STRING}),
                      CAST(prediction_number AS {NUMBER_OR_STRING})) AS prediction,
                   proba,
                   if(label_category IS NOT NULL, CAST(label_category AS {NUMBER_OR_STRING}),
                      CAST(label_number AS {NUMBER_OR_STRING})) AS label
            FROM reference_ingest
            SETTINGS cast_string_to_variant_use_inference = 0""",
            # Results are ReplacingMergeTrees keyed on the window: recomputing a window replaces its
            # rows (read with FINAL); the detector also deletes rows of an older run that the new one
            # no longer produces (a feature removed from the registry).
            f"""CREATE TABLE IF NOT EXISTS drift_results ({RESULT_KEY}
                column String,
                column_role LowCardinality(String),
                column_type LowCardinality(String),
                method LowCardinality(String),
                statistic Nullable(Float64),
                p_value Nullable(Float64),
                adjusted_p_value Nullable(Float64),
                score Nullable(Float64),
                threshold Float64,
                effect_method LowCardinality(String),
                effect_size Nullable(Float64),
                effect_threshold Nullable(Float64),
                drifted UInt8,
                status LowCardinality(String),
                exact UInt8,
                reference_rows UInt64,
                current_rows UInt64,{RESULT_TAIL}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, segment, window_start, window_end, column_role, column)""",
            f"""CREATE TABLE IF NOT EXISTS quality_results ({RESULT_KEY}
                column String,
                check LowCardinality(String),
                value Nullable(Float64),
                threshold Float64,
                failed UInt8,
                status LowCardinality(String),
                rows UInt64,{RESULT_TAIL}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, segment, window_start, window_end, check, column)""",
            f"""CREATE TABLE IF NOT EXISTS performance_results ({RESULT_KEY}
                metric LowCardinality(String),
                value Nullable(Float64),
                baseline Nullable(Float64),
                ci_low Nullable(Float64),
                ci_high Nullable(Float64),
                max_drop Float64,
                degraded UInt8,
                status LowCardinality(String),
                labelled_rows UInt64,
                prediction_rows UInt64,{RESULT_TAIL}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, segment, window_start, window_end, metric)""",
            """CREATE TABLE IF NOT EXISTS detector_runs (
                run_id UUID,
                model LowCardinality(String),
                stage LowCardinality(String),
                window_start DateTime64(3, 'UTC'),
                window_end DateTime64(3, 'UTC'),
                trigger LowCardinality(String),
                started_at DateTime64(3, 'UTC'),
                finished_at DateTime64(3, 'UTC'),
                duration_ms Float64,
                rows_scanned UInt64,
                status LowCardinality(String),
                error String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(started_at)
            ORDER BY (model, stage, window_start, started_at)""",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    Migration(
        3,
        "alerts: alert states, audit trail, silences, notification outbox and attempts",
        (
            # One row per alert (fingerprint) and change; the latest `updated_at` wins (read with FINAL).
            """CREATE TABLE IF NOT EXISTS alert_states (
                fingerprint String,
                rule LowCardinality(String),
                model LowCardinality(String),
                model_version LowCardinality(String),
                kind LowCardinality(String),
                subject String,
                severity LowCardinality(String),
                labels Map(String, String),
                status LowCardinality(String),
                bad_streak UInt32,
                good_streak UInt32,
                active_since Nullable(DateTime64(3, 'UTC')),
                evaluated_until Nullable(DateTime64(3, 'UTC')),
                last_value Nullable(Float64),
                last_window_start Nullable(DateTime64(3, 'UTC')),
                last_window_end Nullable(DateTime64(3, 'UTC')),
                notified_firing_at Nullable(DateTime64(3, 'UTC')),
                notifications UInt32,
                muted String,
                updated_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY (model, fingerprint)""",
            # The audit trail: every transition, suppression, notification and human action.
            """CREATE TABLE IF NOT EXISTS alert_events (
                at DateTime64(3, 'UTC'),
                fingerprint String,
                rule LowCardinality(String),
                model LowCardinality(String),
                model_version LowCardinality(String),
                event LowCardinality(String),
                actor String,
                window_start Nullable(DateTime64(3, 'UTC')),
                window_end Nullable(DateTime64(3, 'UTC')),
                value Nullable(Float64),
                detail String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(at)
            ORDER BY (model, at)""",
            """CREATE TABLE IF NOT EXISTS silences (
                id String,
                matchers Array(Tuple(name String, op String, value String)),
                author String,
                comment String,
                starts_at DateTime64(3, 'UTC'),
                ends_at DateTime64(3, 'UTC'),
                created_at DateTime64(3, 'UTC'),
                updated_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY id""",
            # The outbox: a delivery's body is written once; its status row is replaced on each attempt.
            """CREATE TABLE IF NOT EXISTS outbox_bodies (
                delivery_id String,
                body String,
                created_at DateTime64(3, 'UTC')
            ) ENGINE = MergeTree
            ORDER BY delivery_id""",
            """CREATE TABLE IF NOT EXISTS outbox (
                delivery_id String,
                channel LowCardinality(String),
                kind LowCardinality(String),
                model LowCardinality(String),
                event LowCardinality(String),
                fingerprints Array(String),
                subject String,
                status LowCardinality(String),
                attempts UInt32,
                next_attempt_at DateTime64(3, 'UTC'),
                last_error String,
                created_at DateTime64(3, 'UTC'),
                updated_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY delivery_id""",
            """CREATE TABLE IF NOT EXISTS delivery_attempts (
                delivery_id String,
                attempt UInt32,
                channel LowCardinality(String),
                model LowCardinality(String),
                at DateTime64(3, 'UTC'),
                outcome LowCardinality(String),
                detail String,
                duration_ms Float64,
                actor String
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(at)
            ORDER BY (delivery_id, at)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        4,
        "alert acknowledgements",
        (
            # One row per acknowledgement of an alert's episode (fingerprint, active_since); append-only.
            """CREATE TABLE IF NOT EXISTS alert_acks (
                fingerprint String,
                model LowCardinality(String),
                active_since DateTime64(3, 'UTC'),
                acknowledged_at DateTime64(3, 'UTC'),
                author String,
                comment String
            ) ENGINE = MergeTree
            ORDER BY (model, fingerprint, active_since)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        5,
        "scale out: partition owner epochs (collector fencing), detector window claims",
        (
            # One row per (partition, assignment): the owner is the row with the highest epoch. A collector
            # writes a batch only while it still holds the current epoch of every partition in it, so a
            # stalled member whose partitions moved ("zombie") cannot write or commit over the new owner.
            """CREATE TABLE IF NOT EXISTS partition_owners (
                topic LowCardinality(String),
                partition Int32,
                epoch UInt64,
                collector String,
                claimed_at DateTime64(6, 'UTC') DEFAULT now64(6)
            ) ENGINE = MergeTree
            ORDER BY (topic, partition, epoch)""",
            # Claims of (model, stage, window) by detector workers: the earliest live claim wins (read back
            # after a settle delay; ClickHouse has no compare-and-set), so two workers never judge one window.
            """CREATE TABLE IF NOT EXISTS detector_claims (
                model LowCardinality(String),
                stage LowCardinality(String),
                window_start DateTime64(3, 'UTC'),
                window_end DateTime64(3, 'UTC'),
                worker String,
                claim_id UUID,
                claimed_at DateTime64(6, 'UTC') DEFAULT now64(6)
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, stage, window_start, claimed_at)
            TTL toDateTime(claimed_at) + INTERVAL 7 DAY""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        6,
        "estimated performance before labels arrive (CBPE, DLE), and the timeline of estimated then realized",
        (
            f"""CREATE TABLE IF NOT EXISTS estimated_performance_results ({RESULT_KEY}
                metric LowCardinality(String),
                method LowCardinality(String),
                value Nullable(Float64),
                sampling_error Nullable(Float64),
                ci_low Nullable(Float64),
                ci_high Nullable(Float64),
                baseline Nullable(Float64),
                max_drop Float64,
                degraded UInt8,
                status LowCardinality(String),
                prediction_rows UInt64,
                estimated_rows UInt64,
                detail String,{RESULT_TAIL}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, segment, window_start, window_end, metric)""",
            # One timeline per (model, segment, window, metric): the realized value once labels gave a
            # verdict (ok/degraded), the estimate before; label coverage says how far the labels have come.
            """CREATE VIEW IF NOT EXISTS performance_timeline AS
            SELECT model, segment, window_start, window_end, metric,
                   if(r.has, r.model_version, e.model_version) AS model_version,
                   e.value AS estimated, e.ci_low AS estimated_low, e.ci_high AS estimated_high,
                   e.method AS method, e.status AS estimated_status,
                   r.value AS realized, r.status AS realized_status,
                   if(r.has, r.labelled_rows, 0) AS labelled_rows,
                   greatest(r.prediction_rows, e.prediction_rows) AS prediction_rows,
                   if(r.has, r.labelled_rows, 0) / greatest(r.prediction_rows, e.prediction_rows, 1) AS label_coverage,
                   if(r.status IN ('ok', 'degraded'), r.value, e.value) AS value,
                   if(r.status IN ('ok', 'degraded'), 'realized', if(e.value IS NULL, '', 'estimated')) AS source,
                   if(r.status IN ('ok', 'degraded'), r.baseline, e.baseline) AS baseline,
                   if(r.status IN ('ok', 'degraded'), r.degraded, e.degraded) AS degraded
            FROM (SELECT model, segment, window_start, window_end, metric, model_version, value, ci_low, ci_high,
                         method, status, prediction_rows, baseline, degraded
                  FROM estimated_performance_results FINAL) AS e
            FULL OUTER JOIN
                 (SELECT model, segment, window_start, window_end, metric, model_version, value, status,
                         labelled_rows, prediction_rows, baseline, degraded, 1 AS has
                  FROM performance_results FINAL) AS r
            USING (model, segment, window_start, window_end, metric)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        7,
        "multivariate drift results",
        (
            # One row per (window, method): PCA reconstruction error with its band, or the domain
            # classifier's cross-validated AUC with its threshold (`upper`); recomputing a window replaces it.
            f"""CREATE TABLE IF NOT EXISTS multivariate_drift_results ({RESULT_KEY}
                method LowCardinality(String),
                value Nullable(Float64),
                lower Nullable(Float64),
                upper Nullable(Float64),
                drifted UInt8,
                status LowCardinality(String),
                reference_rows UInt64,
                current_rows UInt64,
                sample_rows UInt64,{RESULT_TAIL}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, segment, window_start, window_end, method)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        8,
        "concept drift: streaming detector state and firings",
        (
            # One row per model and persisted batch: the detectors' state, the stream cursor and the rows seen,
            # written in one insert, so a crash leaves the previous batch's row (read with FINAL) in force.
            """CREATE TABLE IF NOT EXISTS concept_drift_state (
                model LowCardinality(String),
                config String,
                state String,
                cursor_ingested_at DateTime64(3, 'UTC'),
                cursor_topic String,
                cursor_partition Int32,
                cursor_offset Int64,
                rows_seen UInt64,
                firings UInt64,
                updated_at DateTime64(6, 'UTC')
            ) ENGINE = ReplacingMergeTree(updated_at)
            ORDER BY model""",
            # Keyed by (model, detector, position): a batch replayed after a crash writes the same rows again.
            """CREATE TABLE IF NOT EXISTS concept_drift_events (
                model LowCardinality(String),
                detector LowCardinality(String),
                position UInt64,
                event_id String,
                label_ts DateTime64(3, 'UTC'),
                label_ingested_at DateTime64(3, 'UTC'),
                statistic Float64,
                threshold Float64,
                detected_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = ReplacingMergeTree(detected_at)
            PARTITION BY toYYYYMM(label_ingested_at)
            ORDER BY (model, detector, position)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        9,
        "window states: per (model, hour, feature) mergeable aggregates kept by a view on predictions",
        (
            # See driftline/store/window_states.py: long windows assembled from states, not rescans.
            window_states.LEGACY_CREATE_TABLE,
            window_states.LEGACY_CREATE_VIEW,
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        10,
        "value model: ingest views store 1, 1.0, \"1\" and true as one value, proba classes canonical",
        (
            # ALTER ... MODIFY QUERY swaps a view's query atomically: no insert is parsed twice or missed.
            # New stores already have these queries from migration 1; rows stored before keep their form.
            f"ALTER TABLE {entry_table('predictions')}_mv MODIFY QUERY "
            + _entry_select("predictions", **PREDICTION_ENTRY),
            f"ALTER TABLE {entry_table('labels')}_mv MODIFY QUERY " + _entry_select("labels", **LABEL_ENTRY),
        ),
    ),
    Migration(
        11,
        "what ingest and the performance stage do not store: the registry's names, labels past the horizon",
        (
            # The model names of the registry a service runs with (written at start and reload), so the fleet
            # dashboard can tell events of unregistered models (driftline/unknown_models.py); the latest row counts.
            """CREATE TABLE IF NOT EXISTS registry_snapshots (
                models Array(String),
                unknown_models LowCardinality(String),
                written_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = MergeTree
            ORDER BY written_at""",
            # Per window: labels of its predictions that arrived after window end + the model's label_horizon,
            # so not joined (detectors/performance.py). Replaced by each performance run of the window.
            f"""CREATE TABLE IF NOT EXISTS late_labels (
                model LowCardinality(String),
                window_start DateTime64(3, 'UTC'),
                window_end DateTime64(3, 'UTC'),
                labels UInt64,
                horizon_seconds Float64,
                {RESULT_TAIL.strip()}
            ) ENGINE = ReplacingMergeTree(computed_at)
            PARTITION BY toYYYYMM(window_start)
            ORDER BY (model, window_start, window_end)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        12,
        "partition incarnations: the store's offset line across broker restarts, and the events they lost",
        (
            # collector/incarnations.py: stored offset = base + the broker's offset; one row per incarnation met.
            """CREATE TABLE IF NOT EXISTS partition_incarnations (
                topic LowCardinality(String),
                partition Int32,
                topic_id String,
                base Int64,
                lost Int64,
                reason LowCardinality(String),
                collector String,
                detected_at DateTime64(6, 'UTC') DEFAULT now64(6)
            ) ENGINE = MergeTree
            ORDER BY (topic, partition, detected_at)""",
        ),
    ),
)


MIGRATIONS = MIGRATIONS + (
    Migration(
        13,
        "sender sequence numbers: each PredictionLogger's events Driftline stored, to count those it never did",
        (
            # driftline/sequences.py. The numbers go in the checkpoint row itself, so they are on record exactly
            # when the batch is committed; the view folds them into one bitmap per sender.
            "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS senders Array(String)",
            "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS sequences Array(Array(UInt64)) CODEC(ZSTD(1))",
            """CREATE TABLE IF NOT EXISTS sender_sequences (
                sender String,
                numbers AggregateFunction(groupBitmap, UInt64),
                first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
                last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
            ) ENGINE = AggregatingMergeTree
            ORDER BY sender""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS sender_sequences_mv TO sender_sequences AS
            SELECT sender, groupBitmapState(number) AS numbers, min(written_at) AS first_seen,
                   max(written_at) AS last_seen
            FROM ingest_batches ARRAY JOIN senders AS sender, sequences AS numbers_of_sender
            ARRAY JOIN numbers_of_sender AS number
            GROUP BY sender""",
        ),
    ),
)

MIGRATIONS = MIGRATIONS + (
    Migration(
        14,
        "window states built per hour by the detectors, not by a view on every insert",
        (
            # driftline/store/window_states.py: the view halved the collector's throughput. States are
            # derived data: the first detection to read an hour builds it from the rows again.
            f"DROP VIEW IF EXISTS {window_states.LEGACY_TABLE}_mv",
            f"DROP TABLE IF EXISTS {window_states.LEGACY_TABLE}",
            window_states.CREATE_TABLE,
        ),
    ),
)


def applied_versions(client: Client) -> set[int]:
    exists = client.command("EXISTS TABLE schema_migrations")
    if str(exists).strip() != "1":
        return set()
    return {int(r[0]) for r in client.query("SELECT DISTINCT version FROM schema_migrations").result_rows}


def migrate(client: Client, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations not yet recorded; returns the versions applied now."""
    done = applied_versions(client)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        log.info("applying migration", extra={"version": migration.version, "migration": migration.name})
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations", [[migration.version, migration.name]], column_names=["version", "name"]
        )
        applied.append(migration.version)
    return applied


def schema_version(client: Client) -> int:
    versions = applied_versions(client)
    return max(versions) if versions else 0
