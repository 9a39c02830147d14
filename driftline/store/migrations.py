"""Versioned, idempotent schema migrations (`driftline db migrate`).

Each migration is a list of statements that are safe to run again
(`IF NOT EXISTS` everywhere), recorded in `schema_migrations` after it
succeeds. A crash halfway through a migration therefore leaves a state the
next run completes, and running `migrate` twice changes nothing.

Layout decisions, for the queries that come next:
- Every ingested row keeps (topic, partition, offset): the collector's
  exactly-once protocol rolls back and replays by offset.
- `predictions` keeps the whole event (features as a Map) for row-level
  reads; the materialized view fans the features out into
  `prediction_features`, one row per (event, feature), sorted by
  (model, feature, ts), so a detector reads one feature's window as one
  contiguous range without touching the other features.
- Feature values and labels are `Variant(Float64, String)`: numbers stay
  numbers, categories stay strings, and null is the Variant's NULL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)

KAFKA_POSITION = """
    topic LowCardinality(String),
    partition Int32,
    offset Int64,"""

OFFSET_INDEX = "INDEX idx_offset offset TYPE minmax GRANULARITY 1"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "ingest tables: predictions, features, labels, infra metrics, dead letters, offsets",
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
                features Map(LowCardinality(String), Variant(Float64, String)),
                prediction Variant(Float64, String),
                proba Map(LowCardinality(String), Float64),
                latency_ms Nullable(Float64),
                ingested_at DateTime64(3, 'UTC') DEFAULT now64(3),
                {OFFSET_INDEX},
                INDEX idx_event_id event_id TYPE bloom_filter(0.01) GRANULARITY 4,
                CONSTRAINT unique_feature_names
                    CHECK length(mapKeys(features)) = length(arrayDistinct(mapKeys(features))),
                CONSTRAINT unique_proba_classes
                    CHECK length(mapKeys(proba)) = length(arrayDistinct(mapKeys(proba)))
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (model, ts)""",
            f"""CREATE TABLE IF NOT EXISTS prediction_features ({KAFKA_POSITION}
                model LowCardinality(String),
                model_version LowCardinality(String),
                feature LowCardinality(String),
                ts DateTime64(3, 'UTC'),
                value Nullable(Float64),
                category Nullable(String),
                {OFFSET_INDEX}
            ) ENGINE = MergeTree
            PARTITION BY toYYYYMM(ts)
            ORDER BY (model, feature, ts)""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS prediction_features_mv TO prediction_features AS
            SELECT topic, partition, offset, model, model_version,
                   kv.1 AS feature, ts,
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
            """CREATE TABLE IF NOT EXISTS ingest_offsets (
                topic LowCardinality(String),
                partition Int32,
                next_offset Int64,
                committed_at DateTime64(3, 'UTC') DEFAULT now64(3)
            ) ENGINE = ReplacingMergeTree(next_offset)
            ORDER BY (topic, partition)""",
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
