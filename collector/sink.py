"""The ClickHouse sink: writes a batch's rows and dead letters. It never commits offsets.

Rows go in as whole JSON objects (JSONAsString) into a Null-engine entry
table per kind, whose materialized view parses them into the real table:
one insert per table per batch. If ClickHouse
rejects an insert for its data, the batch is split in halves until the
rejected rows are isolated; those become dead letters carrying ClickHouse's
own message, and the rest is written. A store that fails even a health probe
is an outage, not bad data: `StoreUnavailable` goes up so the writer can back
off and retry the whole batch.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from collector.batch import Batch, DeadLetter, Record
from collector.checkpoint import Fenced
from driftline.store.migrations import DEAD_LETTER_TABLE, TABLE_BY_KIND, entry_table

log = logging.getLogger(__name__)

INSERT_SETTINGS = {
    "cast_string_to_variant_use_inference": 0,  # also set in the views; "10115" must stay a string
    "input_format_parallel_parsing": 0,
    "max_insert_threads": 1,
    "max_threads": 1,
}

MAX_ERROR_CHARS = 2000
OVERSIZED_PREFIX_BYTES = 4096
"""An oversized event is kept as this prefix, its length (raw_bytes) and its SHA-256: it can never be
stored as an event, and keeping it whole would let one request store as much as the body limit allows."""


class StoreUnavailable(RuntimeError):
    """ClickHouse cannot take writes right now; retry later (backpressure)."""


class ClickHouseSink:
    def __init__(self, client: Client) -> None:
        self._client = client

    def write(self, batch: Batch, guard: Callable[[], None] | None = None) -> list[DeadLetter]:
        """Write rows then dead letters; returns the rows ClickHouse itself rejected (already dead-lettered).

        `guard` runs before each insert statement and raises (`Fenced`) when the batch's partitions
        are no longer ours, so a collector that stalled between two inserts writes nothing more.
        """
        rejected: list[DeadLetter] = []
        try:
            for kind, rows in batch.rows.items():
                if rows:
                    rejected += self._insert_rows(entry_table(TABLE_BY_KIND[kind]), rows, batch.origins[kind], guard)
            letters = batch.dead_letters + rejected
            if letters:
                if guard is not None:
                    guard()
                self.insert_dead_letters(letters, batch.bases)
        except (StoreUnavailable, Fenced):
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {_short(str(exc))}") from exc
        return rejected

    def _insert_rows(self, table: str, rows: list[bytes], origins: list[Record],
                     guard: Callable[[], None] | None = None) -> list[DeadLetter]:
        if guard is not None:
            guard()  # also before each half of a split: a failed insert may be a stall the group acted on
        try:
            self._client.raw_insert(table, None, insert_block=b"\n".join(rows), fmt="JSONAsString", settings=INSERT_SETTINGS)
            return []
        except OperationalError as exc:
            # The connection failed (reset, timeout): the insert may have landed without an answer. Splitting
            # and re-inserting would write those rows twice, so the writer rolls the batch back and retries.
            raise StoreUnavailable(f"{type(exc).__name__}: {_short(str(exc))}") from exc
        except DatabaseError as exc:
            if len(rows) > 1:
                mid = len(rows) // 2
                return self._insert_rows(table, rows[:mid], origins[:mid], guard) + self._insert_rows(
                    table, rows[mid:], origins[mid:], guard
                )
            self._probe()
            log.warning(
                "ClickHouse rejected a row",
                extra={"table": table, "topic": origins[0].topic, "partition": origins[0].partition, "offset": origins[0].offset},
            )
            return [DeadLetter(origins[0], "store_rejected", _short(str(exc)))]

    def _probe(self) -> None:
        try:
            self._client.query("SELECT 1")
        except Exception as exc:
            raise StoreUnavailable(f"ClickHouse health probe failed: {type(exc).__name__}") from exc

    def insert_dead_letters(self, letters: list[DeadLetter], bases: dict[tuple[str, int], int] | None = None) -> None:
        """`bases`: the batch's offset bases, so dead letters carry stored offsets like rows (see Batch.bases)."""
        cols: list[list[object]] = [[] for _ in range(8)]
        bases = bases or {}
        for d in letters:
            o = d.origin
            raw, error = o.value or b"", _short(d.error)
            size = len(raw)
            if d.error_kind == "oversized" and size > OVERSIZED_PREFIX_BYTES:
                error += f" [raw cut to its first {OVERSIZED_PREFIX_BYTES} bytes; sha256 {hashlib.sha256(raw).hexdigest()}]"
                raw = raw[:OVERSIZED_PREFIX_BYTES]
            offset = o.offset + bases.get((o.topic, o.partition), 0)
            for col, value in zip(
                cols,
                (o.topic, o.partition, offset, o.key or b"", raw, size, d.error_kind, error),
            ):
                col.append(value)
        self._client.insert(
            DEAD_LETTER_TABLE,
            cols,
            column_names=["topic", "partition", "offset", "key", "raw", "raw_bytes", "error_kind", "error"],
            column_oriented=True,
        )


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
