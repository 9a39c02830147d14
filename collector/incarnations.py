"""Broker incarnations: a partition whose log started over, and the events that went with the old one.

Offsets are the collector's checkpoint (checkpoint.py), but a Kafka offset
names a record only within one life of a partition's log. An in-memory broker
restarted by `driftline up` starts every partition at 0 again; a topic deleted
and recreated on Apache Kafka does the same. Waiting at the stored offset would
skip every event until the new log reached it, silently; seeking to 0 would
make the new records' offsets collide with stored ones (and the next rollback
would delete old rows). So the store keeps its own offset line: a stored
offset is `base + the broker's offset`, where `base` is set, per partition,
each time a new incarnation is met (the checkpoint's next offset then), and
`partition_incarnations` records each one.

A new incarnation is recognised by the topic id the broker reports (Kafka
2.8+, tansu: a new topic gets a new id) or, for brokers without ids, by a log
whose end lies below the position the collector reads from. What the old
incarnation held past the checkpoint is lost with it: counted from the
highest log end the collector saw in it (`WatermarkFile` below, and the lag
each batch commits) minus the checkpoint. A log whose start moved past the
checkpoint (retention) loses the records in between, counted exactly.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from driftline import metrics

log = logging.getLogger(__name__)

Partition = tuple[str, int]

FIRST = "first"  # the first incarnation this store meets (or a store from before incarnations were recorded)
NEW_TOPIC_ID = "new_topic_id"  # the broker reports another topic id: the topic was created anew
LOG_END_BELOW_CHECKPOINT = "log_end_below_checkpoint"  # no topic id, but the log is shorter than what was read
BROKER_REPLACED = "broker_replaced"  # `up` swapped its local broker for an empty one after committing it all
LOG_START_PAST_CHECKPOINT = "log_start_past_checkpoint"  # retention (or DeleteRecords) removed unread records
_EXPECTED = {FIRST: "first incarnation of this partition recorded",
             BROKER_REPLACED: "partition read on the empty broker that replaced the local one"}
"""Reasons that are no start-over when nothing was lost: logged at info level with these messages."""


@dataclass(frozen=True)
class Incarnation:
    topic_id: str
    base: int


def incarnation_key(topic_id: str, base: int) -> str:
    """Names one incarnation in the watermark file (the base tells apart those of a broker without topic ids)."""
    return f"{topic_id}@{base}"


class WatermarkFile:
    """The highest log end the collector saw per partition, kept in a file beside the embedded store.

    The in-memory broker's events die with it when `up` is killed; the next `up` counts them from the
    log end its predecessor last saw. ClickHouse learns the log end only with each batch (its lag); this
    file is rewritten (atomically: write, rename) whenever a poll raised a log end, so the count misses
    only the events acknowledged after the collector's last fetch.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: dict[str, list[object]] = self._read()
        self._dirty = False

    def _read(self) -> dict[str, list[object]]:
        try:
            data = json.loads(self.path.read_text())
            return {str(k): [str(v[0]), int(v[1])] for k, v in data.items()}
        except (OSError, ValueError, TypeError, IndexError, AttributeError):
            return {}

    def get(self, tp: Partition, incarnation: str) -> int | None:
        """The stored-offset log end last seen for this incarnation of the partition, if any."""
        entry = self._seen.get(f"{tp[0]}/{tp[1]}")
        if entry is None or entry[0] != incarnation:
            return None
        return int(entry[1])  # type: ignore[call-overload]

    def raise_to(self, tp: Partition, incarnation: str, stored_end: int) -> None:
        key = f"{tp[0]}/{tp[1]}"
        entry = self._seen.get(key)
        if entry is not None and entry[0] == incarnation and int(entry[1]) >= stored_end:  # type: ignore[call-overload]
            return
        self._seen[key] = [incarnation, stored_end]
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._seen))
        os.replace(tmp, self.path)
        self._dirty = False


class Incarnations:
    """Reads and records the incarnations of partitions; decides each partition's offset base."""

    def __init__(self, client: Client, collector_id: str) -> None:
        self._client = client
        self._collector_id = collector_id

    def current(self, partitions: Iterable[Partition]) -> dict[Partition, Incarnation]:
        wanted = list(partitions)
        if not wanted:
            return {}
        rows = self._client.query(
            "SELECT topic, partition, argMax(topic_id, detected_at), argMax(base, detected_at) "
            "FROM partition_incarnations WHERE topic IN {topics:Array(String)} GROUP BY topic, partition",
            parameters={"topics": sorted({t for t, _ in wanted})},
        ).result_rows
        found = {(str(t), int(p)): Incarnation(str(i), int(b)) for t, p, i, b in rows}
        return {tp: found[tp] for tp in wanted if tp in found}

    def last_seen_end(self, tp: Partition, base: int) -> int | None:
        """The highest stored-offset log end a batch of this incarnation committed (its next offset + lag)."""
        row = self._client.query(
            "SELECT max(next_offset + lag), count() FROM ingest_batches WHERE topic = {t:String} "
            "AND partition = {p:Int32} AND next_offset > {base:Int64}",
            parameters={"t": tp[0], "p": tp[1], "base": base},
        ).result_rows[0]
        return int(row[0]) if int(row[1]) else None

    def record(self, tp: Partition, topic_id: str, base: int, lost: int, reason: str) -> None:
        self._client.insert(
            "partition_incarnations",
            [[tp[0], tp[1], topic_id, base, lost, reason, self._collector_id]],
            column_names=["topic", "partition", "topic_id", "base", "lost", "reason", "collector"],
        )
        if lost:
            metrics.events_lost(tp[0], reason, lost)
        if reason in _EXPECTED and not lost:
            level, message = logging.INFO, _EXPECTED[reason]
        else:  # a log that started over under us: a warning, an error when events were lost with it
            level = logging.ERROR if lost else logging.WARNING
            message = ("partition log started over: events it held past the checkpoint are lost "
                       "(events_lost counts those the collector had seen; it may have held more)")
        log.log(level, message,
                extra={"topic": tp[0], "partition": tp[1], "topic_id": topic_id, "base": base,
                       "events_lost": lost, "reason": reason})

    def resolve(self, partitions: Iterable[Partition], committed: Mapping[Partition, int],
                topic_ids: Mapping[Partition, str], watermarks: WatermarkFile | None = None,
                force: Mapping[Partition, str] | None = None,
                expected: Mapping[Partition, str] | None = None) -> dict[Partition, int]:
        """The offset base of each partition, recording new incarnations (and what the old ones lost).

        `force` names partitions known to have started over although their topic id did not change
        (a log end below the position read, reason LOG_END_BELOW_CHECKPOINT); `expected`, the reason to
        record for partitions whose new incarnation was caused on purpose (BROKER_REPLACED).
        """
        wanted = list(partitions)
        known = self.current(wanted)
        force = force or {}
        bases: dict[Partition, int] = {}
        for tp in wanted:
            topic_id = topic_ids.get(tp, "")
            have = known.get(tp)
            if have is None:
                bases[tp] = 0  # stores written before incarnations were recorded used the broker's offsets
                self.record(tp, topic_id, 0, 0, FIRST)
                continue
            changed = tp in force or (topic_id and have.topic_id and topic_id != have.topic_id)
            if not changed:
                bases[tp] = have.base
                continue
            checkpoint = committed.get(tp, have.base)
            seen = [e for e in (self.last_seen_end(tp, have.base),
                                watermarks.get(tp, incarnation_key(have.topic_id, have.base))
                                if watermarks is not None else None) if e is not None]
            lost = max(0, max(seen, default=checkpoint) - checkpoint)
            bases[tp] = checkpoint
            self.record(tp, topic_id, checkpoint, lost, force.get(tp) or (expected or {}).get(tp, NEW_TOPIC_ID))
        return bases

    def record_skipped(self, tp: Partition, topic_id: str, base: int, skipped: int) -> None:
        """Records the broker no longer holds (retention) that were never read: counted as lost."""
        self.record(tp, topic_id, base, skipped, LOG_START_PAST_CHECKPOINT)


def lost_events(client: Client) -> list[dict[str, object]]:
    """Per partition: the events lost with old incarnations or to retention, for `db status` and the docs.

    A broker `up` replaced on purpose (everything it held committed) is no start-over: not listed.
    """
    rows = client.query(
        "SELECT topic, partition, sum(lost), countIf(reason NOT IN ({first:String}, {replaced:String})) AS started_over, "
        "max(detected_at) FROM partition_incarnations GROUP BY topic, partition HAVING started_over > 0 OR sum(lost) > 0 "
        "ORDER BY topic, partition", parameters={"first": FIRST, "replaced": BROKER_REPLACED}
    ).result_rows
    return [{"topic": str(t), "partition": int(p), "events_lost": int(n), "started_over": int(r),
             "last_detected_at": str(at)} for t, p, n, r, at in rows]
