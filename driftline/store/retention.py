"""Retention: ClickHouse TTLs per table, from settings, applied at `db migrate` and at every service start.

Each table's TTL follows one setting (`DRIFTLINE_RETENTION_*_DAYS`, 0 = keep
forever) and counts from when a row was written (`ingested_at`,
`received_at`, `computed_at`, ...), not from the time it describes: a
backfill of last year's predictions, or a recomputed old window, would
otherwise be deleted as soon as it lands. For live traffic the two are the
same. ClickHouse deletes expired rows during merges (and at `OPTIMIZE TABLE
... FINAL`).

`apply_retention` compares the TTL each table has (its `engine_full` in
system.tables) with the one wanted and runs `ALTER TABLE ... MODIFY TTL`
only when they differ, so restarts do not rewrite parts.

`ingest_batches` is the collector's commit log, and exactly-once depends on
its max `next_offset` per partition: its TTL never deletes, it folds expired
rows into one per (topic, partition) that keeps the max `next_offset` (and
the summed counters). Tables left without a TTL on purpose: the current
state (alert_states, silences, the outbox and its bodies, alert_acks,
concept_drift_state), uploaded references, schema_migrations, and
sender_sequences (one bitmap per PredictionLogger instance, a few KB: a TTL
would delete the old parts of a live logger's numbers and count its events
as missing).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from driftline.config import Settings
from driftline.store import window_states

log = logging.getLogger(__name__)

FOLD_INGEST_BATCHES = (
    "GROUP BY topic, partition SET first_offset = min(first_offset), next_offset = max(next_offset), "
    "events = sum(events), dead_letters = sum(dead_letters), bytes = sum(bytes)"
)


@dataclass(frozen=True)
class TableRetention:
    table: str
    column: str  # the time column the TTL counts from
    setting: str  # the Settings field holding the days
    suffix: str = ""  # what happens at expiry, when not DELETE


RETENTION: tuple[TableRetention, ...] = (
    TableRetention("predictions", "ingested_at", "retention_events_days"),
    TableRetention("labels", "ingested_at", "retention_events_days"),
    TableRetention("infra_metrics", "ingested_at", "retention_events_days"),
    TableRetention("dead_letters", "received_at", "retention_dead_letters_days"),
    TableRetention(window_states.TABLE, "bucket", "retention_events_days"),
    TableRetention("drift_results", "computed_at", "retention_results_days"),
    TableRetention("quality_results", "computed_at", "retention_results_days"),
    TableRetention("performance_results", "computed_at", "retention_results_days"),
    TableRetention("estimated_performance_results", "computed_at", "retention_results_days"),
    TableRetention("multivariate_drift_results", "computed_at", "retention_results_days"),
    TableRetention("concept_drift_events", "detected_at", "retention_results_days"),
    TableRetention("detector_runs", "started_at", "retention_results_days"),
    TableRetention("late_labels", "computed_at", "retention_results_days"),
    TableRetention("alert_events", "at", "retention_audit_days"),
    TableRetention("delivery_attempts", "at", "retention_audit_days"),
    TableRetention("ingest_batches", "written_at", "retention_ingest_batches_days", FOLD_INGEST_BATCHES),
)

_TTL = re.compile(r" TTL (.*?)(?: SETTINGS |$)")


def wanted_ttl(rule: TableRetention, days: float) -> str | None:
    """The TTL clause as ClickHouse prints it back (so it compares equal), or None to keep forever."""
    if days <= 0:
        return None
    seconds = max(1, round(days * 86400))
    ttl = f"toDateTime({rule.column}) + toIntervalSecond({seconds})"
    return f"{ttl} {rule.suffix}" if rule.suffix else ttl


def current_ttls(client: Client) -> dict[str, str | None]:
    """Table -> its TTL clause (None without one), for the tables of RETENTION that exist."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}",
        parameters={"names": [r.table for r in RETENTION]},
    ).result_rows
    found: dict[str, str | None] = {}
    for name, engine in rows:
        match = _TTL.search(str(engine))
        found[str(name)] = match.group(1).strip() if match else None
    return found


def apply_retention(client: Client, settings: Settings) -> list[str]:
    """Bring every table's TTL to the settings; returns the tables changed (none on a restart)."""
    have = current_ttls(client)
    changed: list[str] = []
    for rule in RETENTION:
        if rule.table not in have:
            continue  # not migrated yet
        want = wanted_ttl(rule, float(getattr(settings, rule.setting)))
        if have[rule.table] == want:
            continue
        # Table names come from RETENTION, never from input.
        client.command(f"ALTER TABLE {rule.table} REMOVE TTL" if want is None else f"ALTER TABLE {rule.table} MODIFY TTL {want}")
        log.info("retention changed", extra={"table": rule.table, "ttl": want or "none", "setting": rule.setting})
        changed.append(rule.table)
    return changed
