"""What every fault scenario measures in a store: events lost and duplicate rows, per table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tests.conftest import query_store

EVENT_TABLES = ("predictions", "labels", "infra_metrics", "dead_letters")


def duplicate_rows(rows: dict[str, tuple[int, int, int]]) -> int:
    """Rows beyond one per (topic, partition, offset), plus rows beyond one per event id (predictions, labels)."""
    return sum(count - by_offset + (count - by_id if by_id >= 0 else 0) for count, by_offset, by_id in rows.values())


def lost(sent: Counter[tuple[str, str]], stored: Counter[tuple[str, str]]) -> int:
    """Events produced that are not in the store (more stored than sent shows up as duplicate rows instead)."""
    return sum(max(0, n - stored.get(k, 0)) for k, n in sent.items())


def row_counts_of_folder(path: Path) -> dict[str, tuple[int, int, int]]:
    """(rows, distinct offsets, distinct event ids or -1) per event table of a chDB folder no process holds."""
    out = {}
    for table in EVENT_TABLES:
        by_id = "uniqExact(event_id)" if table in ("predictions", "labels") else "-1"
        row = query_store(path, f"SELECT count(), uniqExact(topic, partition, offset), {by_id} FROM {table}")[0]
        out[table] = (int(row[0]), int(row[1]), int(row[2]))
    return out


def row_counts_of_topics(client, topics: list[str]) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
    """The same for the rows of some topics in a store this process holds."""
    out = {}
    for table in EVENT_TABLES:
        by_id = "uniqExact(event_id)" if table in ("predictions", "labels") else "-1"
        row = client.query(f"SELECT count(), uniqExact(topic, partition, offset), {by_id} FROM {table} "
                           "WHERE topic IN {t:Array(String)}", parameters={"t": topics}).result_rows[0]
        out[table] = (int(row[0]), int(row[1]), int(row[2]))
    return out


def stored_by_kind(client, topics: list[str]) -> Counter[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Counts per (kind, model) and dead letters, the shape `Traffic.sent` counts in."""
    got: Counter[tuple[str, str]] = Counter()
    for table, kind in (("predictions", "prediction"), ("labels", "label"), ("infra_metrics", "metric")):
        for model, n in client.query(f"SELECT model, count() FROM {table} WHERE topic IN {{t:Array(String)}} "
                                     "GROUP BY model", parameters={"t": topics}).result_rows:
            got[(kind, str(model))] = int(n)
    dead = int(client.query("SELECT count() FROM dead_letters WHERE topic IN {t:Array(String)}",
                            parameters={"t": topics}).result_rows[0][0])
    if dead:
        got[("dead", "")] = dead
    return got
