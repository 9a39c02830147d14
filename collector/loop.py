"""The collector: one member of a Kafka consumer group, feeding ClickHouse.

The loop is small on purpose: poll, decode into the open batch, hand a full
(or old) batch to the writer, report durable offsets to Kafka. Everything
about durability lives in the writer and the checkpoint; everything about
event validity lives in the decoder.
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kafka import ConsumerRebalanceListener, KafkaConsumer, OffsetAndMetadata, TopicPartition
from kafka.errors import KafkaConnectionError, OffsetOutOfRangeError

from collector.batch import Batch, DeadLetter, Origin
from collector.broker_recycling import BrokerRecycling
from collector.checkpoint import OffsetStore, Partition
from collector.decode import RecordDecoder
from collector.fetch_guard import UndecodableBatch, guard_fetcher
from collector.fetch_times import FetchTimes, track_fetch_times
from collector.metadata_watch import MetadataWatch, watch_metadata
from collector.incarnations import (BROKER_REPLACED, LOG_END_BELOW_CHECKPOINT, NEW_TOPIC_ID, Incarnations, WatermarkFile,
                                    incarnation_key)
from collector.sender_gaps import SenderGapWatch
from collector.sink import ClickHouseSink
from collector.stats import CollectorStats
from collector.writer import BatchWriter
from driftline import metrics
from driftline.config import Settings
from driftline.contracts import EventKind
from driftline.privacy import Redactor
from driftline.store import connect
from driftline.unknown_models import ModelGate

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 10.0
GC_GEN0_THRESHOLD = 50_000
IDLE_FLUSH_AGE_S = 0.2
START_OVER_CHECK_EVERY_S = 1.0  # the log-end check of _maybe_check_start_over


def tune_gc_for_throughput() -> None:
    """Collect young objects every 50,000 allocations instead of every 700.

    The collector allocates a record, a decoded event and a row per message;
    with Python's default threshold the cyclic GC runs thousands of times a
    second and scans the batch being built (measured: 20% of the loop).
    Nothing here creates reference cycles, so less frequent passes only
    delay reclaiming garbage that is cycle-free anyway. Called by the service
    commands (and by bench/ingest.py for both of its measurements).
    """
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 100)


def consumer_config(settings: Settings, **overrides: object) -> dict[str, object]:
    """The collector's kafka-python consumer settings (bench/ingest.py's baseline uses the same).

    `fetch_max_wait_ms` is short on purpose: kafka-python keeps one fetch in
    flight per broker, and a fetch that only asks for idle partitions (say,
    the labels topic while predictions pour in) is held by the broker for
    this long, stalling the busy partitions behind it (measured: 300 ms
    stalls, a third of the run, at the default 500 ms).

    `isolation_level="read_committed"`: records of aborted transactions and
    the transaction markers are never returned, and a partition is read only
    up to its last stable offset (the first record of an open transaction).
    kafka-python skips aborted batches using the aborted-transactions list
    the broker sends with each fetch (tests/unit/test_fetch_guard.py); a
    broker that sends no such list (tansu 0.6.0, see docs/operations.md) lets them through.

    `auto_offset_reset="none"`: kafka-python's own reset would move a partition to the log start or end
    without a word; the collector handles OFFSET_OUT_OF_RANGE itself (policy `kafka_offset_out_of_range`).
    """
    s = settings
    config: dict[str, object] = {
        "bootstrap_servers": (s.kafka_bootstrap_servers or "").split(","),
        "group_id": s.consumer_group,
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        # Never reset silently: the collector seeks every assigned partition itself, and a position the log
        # no longer holds (retention, a recreated topic) is counted and handled in Collector._out_of_range.
        "auto_offset_reset": "none",
        "session_timeout_ms": s.kafka_session_timeout_ms,
        "heartbeat_interval_ms": max(s.kafka_session_timeout_ms // 3, 500),
        "max_poll_interval_ms": s.kafka_max_poll_interval_ms,
        "max_poll_records": min(s.batch_max_events, 10_000),
        "fetch_max_wait_ms": 50,
        # Full fetch requests (nine partitions: a few bytes more each): an incremental fetch session outlives
        # the broker that made it, and against a restarted in-memory tansu kafka-python's session then went on
        # fetching nothing (measured: tests/fault/test_broker_restart.py stalled for good after a restart).
        "enable_incremental_fetch_sessions": False,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": max(4 * 1024 * 1024, s.max_event_bytes * 4),
    }
    config.update(overrides)
    return config


REPLACED_BY_TOPIC_ID_S = 10.0
"""After a swap, how long its partitions are left to be met by new topic ids before log ends count too."""
QUIET_POLLS = 3
"""Empty polls at the log end before the held log counts as read (collector/broker_recycling.py)."""


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, collector: "Collector") -> None:
        self._collector = collector

    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        self._collector._on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        self._collector._on_assigned(list(assigned))


class Collector:
    """Consumes the three topics into ClickHouse until `stop()` (or SIGTERM via the CLI)."""

    def __init__(
        self,
        settings: Settings,
        *,
        collector_id: str | None = None,
        stop_event: threading.Event | None = None,
        redactor: Redactor | None = None,
        gate: ModelGate | None = None,
        watermark_path: Path | None = None,
        drain_on_stop: bool = False,
        on_drained: Callable[[], None] | None = None,
        hold_produce: Callable[[], bool] | None = None,
        recycling: BrokerRecycling | None = None,
        sole_reader: bool = False,
    ) -> None:
        """`watermark_path`: where the log ends seen are kept for counting what a killed in-memory broker lost
        (`up` on the embedded default); `drain_on_stop`: on stop, first read every partition up to its log
        end (the in-memory broker dies with the process); `on_drained` runs right after that final read,
        before the consumer leaves the group (`up` stops its broker there, so nothing it acknowledges
        afterwards goes unread); `hold_produce` runs before that read: once it returns True, the broker
        acknowledges no new event, so the log end read to is final (collector/produce_gate.py);
        `recycling`: swap the local broker for an empty one when it grows (collector/broker_recycling.py);
        `sole_reader`: this is the only collector of these topics (`up`'s local broker): it assigns itself
        every partition instead of joining a consumer group, so a replaced broker costs no group rejoin
        (tansu holds a JoinGroup about 3 s)."""
        if not settings.kafka_bootstrap_servers:
            raise ValueError("kafka_bootstrap_servers is not set (DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS)")
        self.settings = settings
        self.collector_id = collector_id or f"{socket.gethostname()}-{os.getpid()}"
        topics = {EventKind(k): t for k, t in settings.topics.items()}
        self.stats = CollectorStats(kinds={t: k.value for k, t in topics.items()})
        self._stop = stop_event or threading.Event()
        self._topics = list(topics.values())
        # redactor: the privacy policies; gate: the registry's model names (None: no registry, none is unknown)
        self._decoder = RecordDecoder(topics, settings.max_event_bytes, redactor, gate)
        self._redactor = redactor
        self._batch = Batch()
        self._store = connect(settings)
        kinds_by_topic = {t: k for k, t in topics.items()}
        self._offsets = OffsetStore(self._store, kinds_by_topic, self.collector_id)
        self._epochs: dict[Partition, int] = {}  # partition -> the epoch we claimed it with (see checkpoint.py)
        self._incarnations = Incarnations(self._store, self.collector_id)
        self._bases: dict[Partition, int] = {}  # stored offset = base + broker offset (collector/incarnations.py)
        self._topic_ids: dict[Partition, str] = {}  # the topic id each partition's base was resolved with
        self._watermarks = WatermarkFile(watermark_path) if watermark_path is not None else None
        self._drain_on_stop = drain_on_stop
        self._on_drained = on_drained
        self._hold_produce = hold_produce
        self._recycling = recycling
        self._sole_reader = sole_reader
        self._replaced: set[Partition] = set()  # partitions of a broker swapped on purpose, not yet met anew
        self._replaced_until = 0.0
        self._moved: dict[Partition, str] = {}  # partitions whose fetched records came from a new incarnation
        self._held: dict[Partition, list] = {}  # type: ignore[type-arg]  # records waiting for current metadata
        self._last_start_over_check = time.monotonic()
        self._gap_watch = SenderGapWatch(self._store)  # logs what PredictionLoggers sent and was never stored
        sink_client = connect(settings)
        fence = OffsetStore(sink_client, kinds_by_topic, self.collector_id)  # the writer thread's own client
        self._writer = BatchWriter(
            ClickHouseSink(sink_client), self._offsets, self.stats,
            guard=lambda batch: fence.check_owner({tp: self._epochs.get(tp, -1) for tp in batch.ranges}),
        )
        self._consumer: KafkaConsumer | None = None
        self._fetch_times: FetchTimes | None = None
        self._metadata: MetadataWatch | None = None
        self._unreachable_logged = -1e9  # when "broker unreachable" was last logged (once per 10 s at most)
        self._last_progress = time.monotonic()
        self._shutdown_deadline: float | None = None  # one shutdown timeout bounds the whole stop

    # -- lifecycle ---------------------------------------------------------------

    @property
    def owned(self) -> set[Partition]:
        """The partitions this collector currently holds (claimed at assignment, released at revocation)."""
        return set(self._epochs)

    @property
    def fenced(self) -> bool:
        """True once a write found this collector's partitions claimed by another member (it then stops)."""
        return self._writer.fenced is not None

    def stop(self) -> None:
        """Ask the loop to finish: it flushes what it holds and returns."""
        self._stop.set()

    def run(self) -> bool:
        """Consume until stopped. Returns True if everything consumed was flushed."""
        s = self.settings
        self._consumer = KafkaConsumer(**consumer_config(s, client_id=self.collector_id))
        guard_fetcher(self._consumer)  # an undecodable batch raises UndecodableBatch, see _poll
        self._fetch_times = track_fetch_times(self._consumer)  # how fresh each log end is, see _at_log_end
        self._metadata = watch_metadata(self._consumer)  # records fetched before it is current wait, see _add
        if not self._sole_reader:
            self._consumer.subscribe(self._topics, listener=_Rebalance(self))
        log.info("collector started", extra={"collector": self.collector_id, "topics": self._topics,
                                              "store": s.redacted_clickhouse_url()})
        flushed = False
        try:
            if self._sole_reader:
                self._assign_every_partition()
            while not self._stop.is_set():
                self._poll_once()
            self._shutdown_deadline = time.monotonic() + s.shutdown_timeout_seconds
            if self._drain_on_stop and not self.fenced:
                flushed = self._read_to_log_end()
            else:
                flushed = self._flush_and_drain(self._flush_timeout())
            self._drained()
        finally:
            try:
                self._consumer.close(autocommit=False, timeout_ms=2000)
            finally:
                self._writer.close(timeout=0 if not flushed else 5)
            log.info("collector stopped", extra={"flushed": flushed, "fenced": self.fenced, **self.stats.snapshot()})
        return flushed and not self.fenced

    def _assign_every_partition(self) -> None:
        """Take every partition of the topics (once the broker's metadata names them all), as an assignment.

        Even when a stop came first: its drain reads the broker to its end, which needs the partitions
        (within the shutdown timeout).
        """
        consumer = self._consumer
        assert consumer is not None
        waited = time.monotonic()
        give_up: float | None = None
        while give_up is None or time.monotonic() < give_up:
            if give_up is None and self._stop.is_set():
                give_up = time.monotonic() + self.settings.shutdown_timeout_seconds
            found = {t: consumer.partitions_for_topic(t) for t in self._topics}
            if all(found.values()):
                partitions = [TopicPartition(t, p) for t, ps in found.items() for p in sorted(ps or ())]
                consumer.assign(partitions)
                self._on_assigned(partitions)
                return
            if time.monotonic() - waited > 10:
                log.warning("waiting for the broker to report the topics' partitions",
                            extra={"missing": [t for t, ps in found.items() if not ps]})
                waited = time.monotonic()
            time.sleep(0.2)
        log.error("stopping before the broker reported the topics' partitions")

    # -- the loop ------------------------------------------------------------------

    def _poll_once(self) -> None:
        consumer = self._consumer
        assert consumer is not None
        if self._writer.fenced is not None:
            log.error("this collector was fenced (its partitions moved while it stalled); stopping",
                      extra={"collector": self.collector_id})
            self._stop.set()
            return
        wait_ms = 100
        if self._batch:
            wait_ms = max(0, min(wait_ms, int((self.settings.batch_max_seconds - self._batch.age()) * 1000)))
        room = max(1, self.settings.batch_max_events - self._batch.size)
        records = self._poll(timeout_ms=wait_ms, max_records=room)
        self._add(records)
        self._note_log_ends()
        batch = self._batch
        # Flush at the size or age bound; or early, once the batch is IDLE_FLUSH_AGE_S old, when a poll
        # comes back empty: the consumer has caught up and holding the batch would only add latency.
        # (Not sooner: a trickle of events would otherwise become many tiny inserts.)
        if batch:
            age = batch.age()
            if (batch.size >= self.settings.batch_max_events or age >= self.settings.batch_max_seconds
                    or (not records and age >= IDLE_FLUSH_AGE_S)):
                self._submit()
        self._report_committed()
        self._maybe_check_start_over()
        self._gap_watch.maybe_check()
        self._maybe_progress()
        if self._recycling is not None and self._recycling.due() and self._recycling.run(self._read_all_held):
            self._replaced = set(self._bases)  # every partition this collector has read: each meets a new log
            self._replaced_until = time.monotonic() + REPLACED_BY_TOPIC_ID_S

    def _read_to_log_end(self) -> bool:
        """On a clean stop of `up`: read every partition to its log end, stop the broker there, then flush.

        A model service that keeps logging moves the log end on, so "caught up" is a moment, not a state:
        the first poll after which every partition's position reaches the log end its fetch reported ends
        the read, and `on_drained` (the broker's stop) runs at once, before the batch is written. Only log
        ends reported by fetches sent after the stop began count (collector/fetch_times.py): an older one
        misses what the broker acknowledged since. With `hold_produce` (`up`'s gated local broker) the broker
        acknowledges nothing after the read begins; without it, what it acknowledges between that fetch and
        its stop is lost (docs/operations.md, "Restarts and delivery from model services").
        """
        if self._hold_produce is not None:
            self._hold_produce()  # False (logged by the gate): the read goes on, as without a gate
        began = time.monotonic()
        while self._flush_timeout() > 0 and not self.fenced:
            records = self._poll(timeout_ms=100)
            if self._at_log_end(fetched_since=began):  # the poll moved the positions; its records wait below
                self._drained()  # the broker stops first: each millisecond before that, it may acknowledge more
                self._add(records)
                self._note_log_ends()
                return self._flush_and_drain(self._flush_timeout())
            self._add(records)
            self._note_log_ends()
            if self._batch.size >= self.settings.batch_max_events or self._batch.age() >= self.settings.batch_max_seconds:
                self._submit()
        log.error("stopping before the broker was read to its end (shutdown timeout or fenced)",
                  extra={"timeout_s": self.settings.shutdown_timeout_seconds})
        self._drained()
        self._flush_and_drain(self._flush_timeout())
        return False

    def _read_all_held(self, timeout: float) -> bool:
        """With produce held at the gate: read every partition to its log end and commit it all.

        The end counts as reached when every position equals a log end fetched since the hold and
        QUIET_POLLS polls in a row then brought nothing (tansu's reported log end can lag its last records
        for a moment). False on timeout, a stop or a failing store: the broker is then kept.
        """
        began = time.monotonic()
        deadline, quiet = began + timeout, 0
        while time.monotonic() < deadline and not self._stop.is_set() and not self.fenced:
            records = self._poll(timeout_ms=100)
            self._add(records)
            self._note_log_ends()
            if self._batch.size >= self.settings.batch_max_events:
                self._submit()
            quiet = quiet + 1 if not any(records.values()) and not self._held and self._at_log_end(fetched_since=began) else 0
            if quiet >= QUIET_POLLS:
                return self._flush_and_drain(max(0.0, deadline - time.monotonic()))
        return False

    def _drained(self) -> None:
        if self._on_drained is not None:  # first: the broker's stop (see _read_to_log_end)
            self._on_drained()
            self._on_drained = None
        if self._watermarks is not None:
            self._watermarks.save()

    def _at_log_end(self, fetched_since: float) -> bool:
        """Every assigned partition read up to a log end that a fetch sent after `fetched_since` reported."""
        consumer, times = self._consumer, self._fetch_times
        assert consumer is not None and times is not None
        assigned = consumer.assignment()
        if not assigned:
            return False  # not in the group yet (a stop soon after start): nothing read, the broker may hold much
        for tp in assigned:
            high, position, sent = consumer.highwater(tp), self._position(tp), times.sent_at(tp)
            if high is None or position is None or position < high or sent is None or sent < fetched_since:
                return False  # None: no fetch answered for it yet, so its log end is unknown
        return True

    def _position(self, tp: TopicPartition) -> int | None:
        """The next offset to fetch, as the consumer holds it: no network round trip, unlike `position()`
        (which refreshes committed offsets and validates epochs first, and took seconds against tansu)."""
        consumer = self._consumer
        assert consumer is not None
        state = consumer._subscription.assignment.get(tp)  # noqa: SLF001
        return None if state is None or state.position is None else int(state.position.offset)

    def _note_log_ends(self) -> None:
        """Keep the highest log end seen per partition (stored offsets) for counting a killed broker's loss."""
        marks = self._watermarks
        if marks is None:
            return
        consumer = self._consumer
        assert consumer is not None
        if self._metadata is not None and self._metadata.stale:
            return  # a log end fetched now may be a new incarnation's: it would count as the old one's loss
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            key = (tp.topic, tp.partition)
            if high is not None and key not in self._held and key not in self._moved and not self._new_incarnation(key):
                base = self._bases.get(key, 0)
                marks.raise_to(key, incarnation_key(self._topic_ids.get(key, ""), base), high + base)
        marks.save()

    def _maybe_check_start_over(self) -> None:
        """A partition whose topic id changed (checked after every poll), or whose log ends below our position
        (checked once a second), started over.

        The topic id after every poll: a restarted broker's new log can grow past our position within a
        second, and records read from it were then stored under the old incarnation's offset base and read
        again under the new one (917 duplicate rows in one CI run of tests/fault/test_broker_restart.py); it
        costs a dictionary lookup per partition. The log end only once a second: tansu can report a log end
        that lags its last records, and a position past it for a moment is not a new log.
        """
        consumer = self._consumer
        assert consumer is not None
        assigned = consumer.assignment()
        # Met by _add (its records were left out of the batch), while still ours.
        moved: dict[Partition, str] = {k: r for k, r in self._moved.items() if TopicPartition(*k) in assigned}
        now = time.monotonic()
        check_ends = now - self._last_start_over_check >= START_OVER_CHECK_EVERY_S
        if check_ends:
            self._last_start_over_check = now
        for tp in assigned:
            key = (tp.topic, tp.partition)
            if self._new_incarnation(key):
                moved[key] = NEW_TOPIC_ID
                continue
            if not check_ends or (key in self._replaced and now < self._replaced_until):
                continue  # a swapped broker is met by its new topic ids (a reason of its own), not its log ends
            high, position = consumer.highwater(tp), self._position(tp)
            if high is not None and position is not None and position > high:
                moved[key] = LOG_END_BELOW_CHECKPOINT
        if moved and self._start_over(moved):
            self._moved.clear()

    def _start_over(self, moved: dict[Partition, str]) -> bool:
        """Flush what was read, then give the partitions that started over a new base and read them from 0."""
        if not self._flush_and_drain(self._flush_timeout()):
            return False  # the store is failing: the next check tries again
        self._resolve_positions(list(moved), {tp: r for tp, r in moved.items() if r != NEW_TOPIC_ID})
        return True

    def _new_incarnation(self, key: Partition) -> bool:
        """The metadata names a topic id other than the one this partition's base was resolved with."""
        known, now = self._topic_ids.get(key), self._topic_id(key[0])
        return bool(known and now and now != known)

    def _topic_id(self, topic: str) -> str:
        """The topic id the broker reported in its metadata ("" when it reports none)."""
        consumer = self._consumer
        assert consumer is not None
        uid = consumer._client.cluster.topic_id(topic)  # kafka-python keeps it only there  # noqa: SLF001
        return str(uid) if uid is not None and uid.int else ""

    def _resolve_positions(self, keys: list[Partition], force: dict[Partition, str] | None = None) -> dict[Partition, int]:
        """Offset bases for `keys` (recording new incarnations), seek each to its checkpoint; returns the checkpoints."""
        consumer = self._consumer
        assert consumer is not None
        committed = self._offsets.committed(keys)
        ids = {tp: self._topic_id(tp[0]) for tp in keys}
        bases = self._incarnations.resolve(keys, committed, ids, self._watermarks, force,
                                           expected={k: BROKER_REPLACED for k in keys if k in self._replaced})
        self._replaced -= {k for k in keys if ids[k] and ids[k] != self._topic_ids.get(k)}
        self._bases.update(bases)
        self._topic_ids.update(ids)
        for key in keys:
            tp = TopicPartition(*key)
            if key in committed and committed[key] > bases[key]:
                consumer.seek(tp, committed[key] - bases[key])
            else:
                # Nothing read from this incarnation yet: its log start. Not seek(tp, 0): after a broker
                # restart kafka-python then validates the position's leader epoch against the new log, and
                # against tansu that left partitions unfetched for good (measured: restart 2 of 2 stalled).
                consumer.seek_to_beginning(tp)
        return committed

    def _out_of_range(self, exc: OffsetOutOfRangeError) -> None:
        """The broker no longer holds a partition's position: count what was skipped, then follow the policy."""
        consumer = self._consumer
        assert consumer is not None
        positions = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
        if self.settings.kafka_offset_out_of_range == "stop":
            log.error("offset out of range and kafka_offset_out_of_range=stop: stopping the collector",
                      extra={"partitions": {f"{tp.topic}/{tp.partition}": o for tp, o in positions.items()}})
            self._stop.set()
            return
        if not self._flush_and_drain(self._flush_timeout()):
            return  # the store is failing: the next poll meets the same answer and tries again
        earliest = consumer.beginning_offsets(list(positions)) if positions else {}
        behind: dict[Partition, str] = {}
        for tp, offset in positions.items():
            key = (tp.topic, tp.partition)
            start = earliest.get(tp)
            if start is not None and offset < start:
                self._incarnations.record_skipped(key, self._topic_ids.get(key, ""), self._bases.get(key, 0),
                                                  start - offset)
                consumer.seek(tp, start)
            else:
                behind[key] = LOG_END_BELOW_CHECKPOINT
        if behind:
            self._start_over(behind)

    def _poll(self, timeout_ms: int, max_records: int | None = None) -> dict[TopicPartition, list]:  # type: ignore[type-arg]
        """`consumer.poll`, except that a record batch it cannot decode is dead-lettered and skipped.

        One bad batch must not stop the collector, nor the other partitions: the poll that raised
        returns nothing (records of other partitions drained with it are returned by the next poll,
        kafka-python holds them back behind the error), and that partition resumes past the batch.
        """
        consumer = self._consumer
        assert consumer is not None
        try:
            return consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        except UndecodableBatch as bad:
            self._skip_undecodable(bad)
            return {}
        except OffsetOutOfRangeError as exc:
            self._out_of_range(exc)
            return {}
        except KafkaConnectionError as exc:
            # kafka-python 3 can raise this out of poll() while the broker is away (its group coordinator's
            # metadata refresh: CI seed 232311708, a collector thread died during a broker restart). The broker
            # coming back is the normal case: wait a moment and poll again.
            self._broker_unreachable(exc)
            return {}

    def _broker_unreachable(self, exc: KafkaConnectionError) -> None:
        now = time.monotonic()
        if now - self._unreachable_logged >= 10:
            log.warning("the broker is unreachable; polling again", extra={"error": str(exc)})
            self._unreachable_logged = now
        self._stop.wait(0.2)

    def _skip_undecodable(self, bad: UndecodableBatch) -> None:
        """Dead-letter an undecodable batch into the open batch and seek its partition past it.

        The dead letter covers the skipped offsets in the open batch, so its checkpoint moves past
        them with the batch, exactly once: a crash before that commit rolls the dead letter back and
        the replay meets (and dead-letters) the same batch again. Nothing is skipped silently.
        """
        consumer = self._consumer
        assert consumer is not None
        tp = TopicPartition(bad.topic, bad.partition)
        if tp not in consumer.assignment() or self._position(tp) != bad.offset:
            # A rebalance or a seek moved this partition since the fetch: whoever reads it meets the batch anew.
            log.info("undecodable batch no longer next in line; not skipped here",
                     extra={"topic": bad.topic, "partition": bad.partition, "offset": bad.offset})
            return
        raw = bad.raw
        note = ""
        if self._redactor is not None and self._redactor.policies:
            raw, note = self._redactor.dead_letter(raw)  # privacy policies: undecodable bytes keep their digest only
        origin = Origin(bad.topic, bad.partition, bad.offset, None, raw)
        self._batch.dead_letters.append(DeadLetter(origin, "undecodable_batch", bad.describe() + note))
        self._batch.cover(bad.topic, bad.partition, bad.offset, bad.next_offset, 0, 1, len(bad.raw),
                          self._bases.get((bad.topic, bad.partition), 0))
        consumer.seek(tp, bad.next_offset)
        metrics.undecodable_batch(bad.topic, bad.reason)
        log.error("record batch could not be decoded: dead-lettered and skipped",
                  extra={"topic": bad.topic, "partition": bad.partition, "offset": bad.offset,
                         "next_offset": bad.next_offset, "reason": bad.reason, "error": str(bad.cause),
                         "error_type": type(bad.cause).__name__, "batch": bad.detail})

    def _add(self, records: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        self._release_held()
        stale = self._metadata is not None and self._metadata.stale
        for tp, messages in records.items():
            key = (tp.topic, tp.partition)
            if messages and self._topic_ids.get(key) and key not in self._moved and (stale or key in self._held):
                # Fetched after a lost connection, before the metadata that says whether the log is still the one
                # we know (collector/metadata_watch.py): held back until it comes, and so is every later record
                # of the partition (so no checkpoint passes them). Not a seek back: after a broker restart
                # kafka-python's seek left tansu's partitions unfetched (see _resolve_positions).
                self._held.setdefault(key, []).extend(messages)
                continue
            self._take(key, messages)

    def _take(self, key: Partition, messages: list) -> None:  # type: ignore[type-arg]
        if key in self._moved or self._new_incarnation(key):
            # The metadata names another topic id: these records are the new incarnation's, and would be
            # stored under the old one's offset base. Left out; read again from its start (_start_over).
            self._moved[key] = NEW_TOPIC_ID
            return
        self._decoder.add_records(self._batch, key[0], key[1], messages, self._bases.get(key, 0))
        self.stats.consumed += len(messages)
        metrics.consumed(self.stats.kinds.get(key[0], metrics.UNKNOWN), len(messages))

    def _release_held(self, force: bool = False) -> None:
        """Records held back by _add, once the metadata is current (or `force`, at a stop): taken, or left to a
        start over when they turn out to be a new incarnation's; a revoked partition's are its next owner's."""
        if not self._held or (not force and self._metadata is not None and self._metadata.stale):
            return
        held, self._held = self._held, {}
        assert self._consumer is not None
        assigned = self._consumer.assignment()
        for key, messages in held.items():
            if TopicPartition(*key) in assigned:
                self._take(key, messages)

    def _submit(self) -> None:
        """Hand the open batch to the writer; while it is busy, pause fetching but stay in the group.

        The batch stays `self._batch` until the writer takes it, so a rebalance during the wait
        flushes it before the partitions move, and records a rebalance brings (from newly assigned,
        unpaused partitions) join it instead of being dropped.
        """
        consumer = self._consumer
        assert consumer is not None
        if self._writer.full():
            paused = list(consumer.assignment())
            consumer.pause(*paused)
            try:
                while self._writer.full() and not self._stop.is_set():
                    self._add(self._poll(timeout_ms=50))
                    self._report_committed()
            finally:
                consumer.resume(*[tp for tp in paused if tp in consumer.assignment()])
            if self._writer.full():
                return  # stopping: _flush_and_drain takes the batch from here, within its timeout
        if not self._batch:
            return  # a revocation during the wait flushed it already
        batch, self._batch = self._batch, Batch()
        for (topic, partition), r in batch.ranges.items():
            high = consumer.highwater(TopicPartition(topic, partition))
            if high is not None:
                r.lag = max(0, high + self._bases.get((topic, partition), 0) - r.next_offset)
                self.stats.lag[(topic, partition)] = r.lag
                metrics.LAG.labels(topic, str(partition)).set(r.lag)
        self._writer.submit(batch)

    def _flush_timeout(self) -> float:
        """The shutdown timeout, or what is left of it once stopping (the revocation inside `close` included)."""
        if self._shutdown_deadline is None:
            return self.settings.shutdown_timeout_seconds
        return max(0.0, self._shutdown_deadline - time.monotonic())

    def _flush_and_drain(self, timeout: float) -> bool:
        """Submit the open batch and wait until everything submitted is durable; False on timeout."""
        self._release_held(force=True)
        deadline = time.monotonic() + timeout
        if self._batch:
            batch, self._batch = self._batch, Batch()
            try:
                self._writer.submit(batch, timeout=timeout)
            except queue.Full:
                log.error("could not flush within the timeout; the batch will be replayed from the checkpoint",
                          extra={"timeout_s": timeout, "events": batch.size})
                return False
        done = self._writer.drain(max(0.0, deadline - time.monotonic()))
        self._report_committed()
        return done

    def _report_committed(self) -> None:
        """Tell Kafka what is durable in ClickHouse (informational: ClickHouse holds the truth)."""
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        while not self._writer.committed.empty():
            for (topic, partition), nxt in self._writer.committed.get().offsets.items():
                broker_offset = nxt - self._bases.get((topic, partition), 0)  # Kafka knows its own offsets only
                if broker_offset >= 0:
                    offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(broker_offset, "", -1)
        if offsets and self._consumer is not None:
            mine = self._consumer.assignment()
            offsets = {tp: o for tp, o in offsets.items() if tp in mine}
            if offsets:
                try:
                    self._consumer.commit_async(offsets)
                except Exception as exc:  # a rebalance in progress; the next commit covers it
                    log.debug("kafka commit skipped", extra={"error": type(exc).__name__})

    def _maybe_progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        log.info("collector progress", extra=self.stats.snapshot())

    # -- rebalances (called inside poll, on the consumer thread) -----------------------

    def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        if not revoked:
            return
        metrics.partitions_revoked((tp.topic, tp.partition) for tp in revoked)
        log.info("partitions revoked, flushing", extra={"partitions": [f"{tp.topic}/{tp.partition}" for tp in revoked]})
        if not self._flush_and_drain(self._flush_timeout()):
            # Our writer may still hold rows for partitions another collector now owns: stop rather than
            # race it (the unflushed batch is replayed by the new owner from the checkpoint).
            log.error("could not flush before giving up partitions; stopping this collector")
            self._stop.set()
            return
        for tp in revoked:
            self._epochs.pop((tp.topic, tp.partition), None)
            self._bases.pop((tp.topic, tp.partition), None)

    def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        if not assigned:
            return
        consumer = self._consumer
        assert consumer is not None
        keys = [(tp.topic, tp.partition) for tp in assigned]
        self._epochs.update(self._offsets.claim(keys))  # before the rollback: a zombie's next write sees it
        committed = self._resolve_positions(keys)
        start = {tp: committed.get(tp, 0) for tp in keys}
        removed = self._offsets.rollback(start)
        log.info(
            "partitions assigned",
            extra={"partitions": {f"{t}/{p}": o for (t, p), o in start.items()}, "rolled_back_rows": removed,
                   "epochs": {f"{t}/{p}": self._epochs[(t, p)] for t, p in keys}},
        )
