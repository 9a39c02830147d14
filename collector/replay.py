"""Writing serialized v1 events straight into the store, through the collector's own decode and sink.

For events that do not come from Kafka (a file of historical predictions, the
seeded datasets of tests and benchmarks): they are validated, dead-lettered
and parsed exactly as the collector would, under a synthetic source name and
offsets so every row stays unique. No offsets are committed: this path is not
exactly-once, and callers give each call its own `source`.
"""

from __future__ import annotations

from collections.abc import Iterable

from clickhouse_connect.driver.client import Client

from collector.batch import Batch, Origin
from collector.decode import RecordDecoder
from collector.sink import ClickHouseSink
from driftline import metrics
from driftline.contracts import EventKind

CHUNK = 20_000


def write_events(client: Client, kind: EventKind, payloads: Iterable[bytes], *, source: str,
                 max_event_bytes: int = 256 * 1024) -> tuple[int, int]:
    """Write `payloads` of one kind; returns (rows written, dead letters)."""
    decoder = RecordDecoder({kind: source}, max_event_bytes)
    sink = ClickHouseSink(client)
    written = dead = 0
    chunk: list[Origin] = []
    offset = 0

    def flush() -> None:
        nonlocal written, dead
        batch = Batch()
        decoder.add_records(batch, source, 0, chunk)
        rejected = sink.write(batch)
        metrics.batch_written(batch, rejected, {source: kind.value})
        written += len(batch.rows[kind]) - len(rejected)
        dead += len(batch.dead_letters) + len(rejected)
        chunk.clear()

    for payload in payloads:
        chunk.append(Origin(source, 0, offset, None, payload))
        offset += 1
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    return written, dead
