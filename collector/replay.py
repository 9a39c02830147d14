"""Writing serialized v1 events straight into the store, through the collector's own decode and sink.

For events that do not come from Kafka (HTTP ingest, a file of historical
predictions, the seeded datasets of tests and benchmarks): they are validated,
dead-lettered and parsed exactly as the collector would, under a source name
and offsets of the caller's choosing, so every row stays unique. No offsets
are committed: this path is not exactly-once, and callers give each call its
own `source` or offset range.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from collector.batch import Batch, DeadLetter, Origin
from collector.decode import RecordDecoder
from collector.sink import ClickHouseSink
from driftline import metrics
from driftline.contracts import EventKind
from driftline.privacy import Redactor
from driftline.unknown_models import ModelGate

CHUNK = 20_000


@dataclass
class WriteOutcome:
    """Rows stored and the dead letters written (each with its origin's offset), for one call."""

    written: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    first_offset: int = 0


def write_chunk(client: Client, kind: EventKind, payloads: Sequence[bytes], *, source: str, partition: int = 0,
                first_offset: int = 0, max_event_bytes: int = 256 * 1024,
                redactor: Redactor | None = None, gate: ModelGate | None = None) -> WriteOutcome:
    """Write one batch of `payloads` under offsets first_offset.. of (source, partition), privacy policies applied.

    `gate`: the registry's model names; events of other models are counted (or dead-lettered) as the collector does.
    """
    decoder = RecordDecoder({kind: source}, max_event_bytes, redactor, gate)
    batch = Batch()
    origins = [Origin(source, partition, first_offset + i, None, p) for i, p in enumerate(payloads)]
    decoder.add_records(batch, source, partition, origins)
    rejected = ClickHouseSink(client).write(batch)
    metrics.batch_written(batch, rejected, {source: kind.value})
    return WriteOutcome(len(batch.rows[kind]) - len(rejected), batch.dead_letters + rejected, first_offset)


def write_events(client: Client, kind: EventKind, payloads: Iterable[bytes], *, source: str,
                 max_event_bytes: int = 256 * 1024) -> tuple[int, int]:
    """Write `payloads` of one kind in chunks; returns (rows written, dead letters)."""
    written = dead = 0
    chunk: list[bytes] = []
    offset = 0

    def flush() -> None:
        nonlocal written, dead, offset
        outcome = write_chunk(client, kind, chunk, source=source, first_offset=offset, max_event_bytes=max_event_bytes)
        written += outcome.written
        dead += len(outcome.dead_letters)
        offset += len(chunk)
        chunk.clear()

    for payload in payloads:
        chunk.append(payload)
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    return written, dead
