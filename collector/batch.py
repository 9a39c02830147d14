"""A batch of decoded records on its way to ClickHouse, and what it covers in Kafka."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from driftline.contracts import EventKind


@dataclass(frozen=True)
class Origin:
    """Where a record came from, and its bytes as received (kept for dead letters)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    raw: bytes | None


@dataclass(frozen=True)
class DeadLetter:
    origin: Origin
    error_kind: str
    error: str


@dataclass
class PartitionRange:
    """The offsets of one (topic, partition) that a batch covers: [first_offset, next_offset)."""

    first_offset: int
    next_offset: int
    events: int = 0
    dead_letters: int = 0
    bytes: int = 0
    lag: int = 0


@dataclass
class Batch:
    """Rows per event kind (JSONEachRow lines), dead letters, and the offsets they cover.

    A batch is written as a unit: its rows, then its dead letters, then the
    checkpoint that commits `next_offset` for every partition it covers.
    """

    rows: dict[EventKind, list[bytes]] = field(default_factory=lambda: {k: [] for k in EventKind})
    origins: dict[EventKind, list[Origin]] = field(default_factory=lambda: {k: [] for k in EventKind})
    dead_letters: list[DeadLetter] = field(default_factory=list)
    ranges: dict[tuple[str, int], PartitionRange] = field(default_factory=dict)
    created: float = field(default_factory=time.monotonic)
    size: int = 0

    def _range(self, origin: Origin) -> PartitionRange:
        key = (origin.topic, origin.partition)
        r = self.ranges.get(key)
        if r is None:
            r = self.ranges[key] = PartitionRange(origin.offset, origin.offset + 1)
        else:
            r.next_offset = origin.offset + 1
        r.bytes += len(origin.raw) if origin.raw else 0
        return r

    def add_row(self, kind: EventKind, row: bytes, origin: Origin) -> None:
        self.rows[kind].append(row)
        self.origins[kind].append(origin)
        self._range(origin).events += 1
        self.size += 1

    def add_dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.append(letter)
        self._range(letter.origin).dead_letters += 1
        self.size += 1

    def age(self) -> float:
        return time.monotonic() - self.created

    def __bool__(self) -> bool:
        return self.size > 0
