"""A batch of decoded records on its way to ClickHouse, and what it covers in Kafka."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from driftline import sequences
from driftline.contracts import EventKind


class Record(Protocol):
    """What the collector needs of a record: kafka-python's ConsumerRecord has it, so does `Origin`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Origin(NamedTuple):
    """A record's position and bytes as received, when it did not come as a ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DeadLetter(NamedTuple):
    origin: Record
    error_kind: str
    error: str


@dataclass
class PartitionRange:
    """The offsets of one (topic, partition) that a batch covers: [first_offset, next_offset).

    `events` and `dead_letters` are as decoded; see `Batch.outcome` for the counts after ClickHouse.
    """

    first_offset: int
    next_offset: int
    events: int = 0
    dead_letters: int = 0
    bytes: int = 0
    lag: int = 0


@dataclass
class Batch:
    """Rows per event kind (JSON objects, one per line), dead letters, and the offsets they cover.

    A batch is written as a unit: its rows, then its dead letters, then the
    checkpoint that commits `next_offset` for every partition it covers.
    `origins[kind][i]` is the record behind `rows[kind][i]`, kept so that a
    row ClickHouse refuses can still be dead-lettered with its raw bytes.
    """

    rows: dict[EventKind, list[bytes]] = field(default_factory=lambda: {k: [] for k in EventKind})
    origins: dict[EventKind, list[Record]] = field(default_factory=lambda: {k: [] for k in EventKind})
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ranges: dict[tuple[str, int], PartitionRange] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    size: int = 0
    # (topic, partition) -> offset base: stored offset = base + the broker's (collector/incarnations.py).
    # `ranges` and rows hold stored offsets; records and dead letters' origins the broker's.
    bases: dict[tuple[str, int], int] = field(default_factory=dict)
    # (topic, partition) -> sender -> the sequence numbers its records carried (driftline/sequences.py);
    # committed with the checkpoint, so a number is on record exactly when its event is stored.
    sequences: dict[tuple[str, int], dict[str, list[int]]] = field(default_factory=dict)

    def note_sequences(self, topic: str, partition: int, records: Sequence[Record]) -> None:
        """Keep the sender sequence numbers of records about to be stored (as rows or dead letters)."""
        found: dict[str, list[int]] | None = None
        for m in records:
            headers = getattr(m, "headers", None)  # Origins (HTTP, replays, undecodable batches) carry none
            if not headers:
                continue
            for key, value in headers:
                if key == sequences.HEADER:
                    parsed = sequences.parse(value)
                    if parsed is not None:
                        if found is None:
                            found = self.sequences.setdefault((topic, partition), {})
                        found.setdefault(parsed[0], []).append(parsed[1])
                    break

    def cover(self, topic: str, partition: int, first: int, nxt: int, events: int, dead_letters: int, nbytes: int,
              base: int = 0) -> None:
        """Account for consecutive records [first, nxt) (broker offsets) of one partition, already added as rows
        or dead letters; `base` turns them into stored offsets."""
        if base:
            self.bases[(topic, partition)] = base
            first += base
            nxt += base
        r = self.ranges.get((topic, partition))
        if r is None:
            self.ranges[(topic, partition)] = PartitionRange(first, nxt, events, dead_letters, nbytes)
        else:
            r.next_offset = nxt
            r.events += events
            r.dead_letters += dead_letters
            r.bytes += nbytes
        self.size += events + dead_letters

    def outcome(self, rejected: list[DeadLetter]) -> dict[tuple[str, int], tuple[int, int]]:
        """(rows stored, dead letters) per partition once ClickHouse has refused `rejected` of the rows.

        Derived, never written back into `ranges`, so a retried write counts each refusal once.
        """
        moved = Counter((d.origin.topic, d.origin.partition) for d in rejected)
        return {tp: (r.events - moved[tp], r.dead_letters + moved[tp]) for tp, r in self.ranges.items()}

    def age(self) -> float:
        return time.monotonic() - self.created

    def __bool__(self) -> bool:
        return self.size > 0
