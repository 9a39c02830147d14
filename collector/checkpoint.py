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
moment the process died at. The window states built from the predictions
are not touched here: their hours' count and position fingerprint no longer
match the rows, so the next detection that reads them rebuilds them
(`driftline.store.window_states.refresh`).
3. Fencing: an assignment also claims each partition with the next epoch in
   `partition_owners`, and a batch checks before each of its inserts that
   this collector still holds the current epoch of every partition in it.
   A member that stalled mid-batch while its partitions moved (a "zombie":
   alive, but evicted by the session timeout) wakes up fenced: it writes,
   rolls back and commits nothing more, and stops. Not covered: one insert
   statement already sent before the new owner's claim that lands after the
   new owner's rollback (ClickHouse has no compare-and-set to refuse it).
Kafka's own committed offsets are written too, after the checkpoint, only so
that standard lag tools see progress.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from clickhouse_connect.driver.client import Client

from collector.batch import Batch, DeadLetter
from driftline.contracts import EventKind
from driftline.store.migrations import DEAD_LETTER_TABLE, TABLE_BY_KIND

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class Fenced(RuntimeError):
    """Another collector claimed a newer epoch of a partition this batch belongs to: stop writing it."""

    def __init__(self, partitions: list[Partition]) -> None:
        super().__init__("partitions now owned by another collector: " + ", ".join(f"{t}/{p}" for t, p in partitions))
        self.partitions = partitions


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

    def claim(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """Take ownership of newly assigned partitions: one row each with the next epoch; returns the epochs.

        Not a compare-and-set: two members claiming one partition at once could read the same epoch.
        Kafka's group protocol assigns a partition to one member per generation, so the race needs two
        simultaneous assignments of the same partition; what this fences is the member that kept
        writing after its assignment ended.
        """
        wanted = list(partitions)
        if not wanted:
            return {}
        current = self._owners(wanted)
        epochs = {tp: current.get(tp, (0, ""))[0] + 1 for tp in wanted}
        self._client.insert(
            "partition_owners",
            [[t for t, _ in wanted], [p for _, p in wanted], [epochs[tp] for tp in wanted],
             [self._collector_id] * len(wanted)],
            column_names=["topic", "partition", "epoch", "collector"],
            column_oriented=True,
        )
        return epochs

    def check_owner(self, epochs: Mapping[Partition, int]) -> None:
        """Raise `Fenced` unless this collector still holds the current epoch of every partition given."""
        current = self._owners(list(epochs))
        lost = sorted(tp for tp, epoch in epochs.items() if current.get(tp) != (epoch, self._collector_id))
        if lost:
            raise Fenced(lost)

    def _owners(self, partitions: list[Partition]) -> dict[Partition, tuple[int, str]]:
        topics = sorted({t for t, _ in partitions})
        rows = self._client.query(
            "SELECT topic, partition, max(epoch), argMax(collector, epoch) FROM partition_owners "
            "WHERE topic IN {topics:Array(String)} GROUP BY topic, partition",
            parameters={"topics": topics},
        ).result_rows
        return {(str(t), int(p)): (int(e), str(c)) for t, p, e, c in rows}

    def commit(self, batch: Batch, rejected: list[DeadLetter], flush_ms: float) -> None:
        """Record the batch's offsets and counts: the commit point of the exactly-once protocol."""
        keys = list(batch.ranges)
        ranges = [batch.ranges[k] for k in keys]
        outcome = batch.outcome(rejected)
        # Sender sequence numbers ride in the commit row: on record exactly when the batch is (driftline/sequences.py).
        numbers = [batch.sequences.get(k, {}) for k in keys]
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
                [list(n) for n in numbers],
                [list(n.values()) for n in numbers],
            ],
            column_names=[
                "collector", "topic", "partition", "first_offset", "next_offset",
                "events", "dead_letters", "bytes", "lag", "flush_ms", "senders", "sequences",
            ],
            column_oriented=True,
        )
