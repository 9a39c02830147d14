"""Exactly-once into ClickHouse: the checkpoint is the commit, everything past it is rolled back.

The protocol, per (topic, partition):
1. A batch writes its rows and dead letters, then inserts one row per
   partition into `ingest_batches` with the next offset to read (and the
   batch's counters). That insert is the commit point: one small part,
   atomic; the committed offset of a partition is its max `next_offset`.
2. When a partition is assigned (start, restart after a crash, rebalance),
   every row of that partition at or past the committed offset is deleted
   from every table it can reach (a crash may have left a batch half
   written), and the consumer seeks to the committed offset.
So each offset is present in ClickHouse exactly once after replay, whatever
moment the process died at. Kafka's own committed offsets are written too,
after the checkpoint, only so that standard lag tools see progress.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from clickhouse_connect.driver.client import Client

from collector.batch import Batch, DeadLetter
from driftline.contracts import EventKind
from driftline.store.migrations import DEAD_LETTER_TABLE, TABLE_BY_KIND

log = logging.getLogger(__name__)



class OffsetStore:
    """Reads and writes the committed offsets, and rolls back what lies past them."""

    def __init__(self, client: Client, kinds_by_topic: Mapping[str, EventKind], collector_id: str) -> None:
        self._client = client
        self._kinds_by_topic = dict(kinds_by_topic)
        self._collector_id = collector_id

    def committed(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """The next offset to read per (topic, partition); partitions never committed are absent."""
        wanted = list(partitions)
        if not wanted:
            return {}
        topics = sorted({t for t, _ in wanted})
        rows = self._client.query(
            "SELECT topic, partition, max(next_offset) FROM ingest_batches "
            "WHERE topic IN {topics:Array(String)} GROUP BY topic, partition",
            parameters={"topics": topics},
        ).result_rows
        found = {(str(t), int(p)): int(o) for t, p, o in rows}
        return {tp: found[tp] for tp in wanted if tp in found}

    def rollback(self, partitions: Mapping[tuple[str, int], int]) -> int:
        """Delete rows at or past each partition's committed offset; returns how many were removed."""
        removed = 0
        for (topic, partition), next_offset in partitions.items():
            kind = self._kinds_by_topic.get(topic)
            tables = ([TABLE_BY_KIND[kind]] if kind else []) + [DEAD_LETTER_TABLE]
            params = {"topic": topic, "partition": partition, "offset": next_offset}
            where = "topic = {topic:String} AND partition = {partition:Int32} AND offset >= {offset:Int64}"
            for table in tables:
                n = int(self._client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=params).result_rows[0][0])
                if n:
                    self._client.command(f"DELETE FROM {table} WHERE {where}", parameters=params)
                    removed += n
                    log.warning(
                        "rolled back uncommitted rows",
                        extra={"table": table, "topic": topic, "partition": partition, "from_offset": next_offset, "rows": n},
                    )
        return removed

    def commit(self, batch: Batch, rejected: list[DeadLetter], flush_ms: float) -> None:
        """Record the batch's offsets and counts: the commit point of the exactly-once protocol."""
        keys = list(batch.ranges)
        ranges = [batch.ranges[k] for k in keys]
        outcome = batch.outcome(rejected)
        self._client.insert(
            "ingest_batches",
            [
                [self._collector_id] * len(keys),
                [t for t, _ in keys],
                [p for _, p in keys],
                [r.first_offset for r in ranges],
                [r.next_offset for r in ranges],
                [outcome[k][0] for k in keys],
                [outcome[k][1] for k in keys],
                [r.bytes for r in ranges],
                [r.lag for r in ranges],
                [flush_ms] * len(keys),
            ],
            column_names=[
                "collector", "topic", "partition", "first_offset", "next_offset",
                "events", "dead_letters", "bytes", "lag", "flush_ms",
            ],
            column_oriented=True,
        )
