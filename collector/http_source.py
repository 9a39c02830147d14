"""Events posted to the HTTP API (`POST /ingest/{kind}`), for teams without Kafka.

They take the collector's own path (`collector.replay.write_chunk`: the same
validation, the same tables, the same dead letters), under the source topic
`http-<kind>` and the partition of this API instance
(`DRIFTLINE_API_INGEST_PARTITION`), at offsets allocated here. The next
offset is read once from the store (the highest stored, rows and dead letters
alike) and then kept in memory under a lock, so every posted event gets a
position of its own and a restart continues after the last one stored.

Delivery is at least once: an answer of 503 means some events of the batch
may be stored; the client retries the batch. Rows carry the events'
`event_id`, so a retried prediction is recognisable.
"""

from __future__ import annotations

import threading

from clickhouse_connect.driver.client import Client

from collector.replay import WriteOutcome, write_chunk
from driftline.contracts import EventKind
from driftline.privacy import Redactor
from driftline.unknown_models import ModelGate
from driftline.store.migrations import DEAD_LETTER_TABLE, TABLE_BY_KIND

SOURCE_TOPICS = {kind: f"http-{TABLE_BY_KIND[kind].replace('_', '-')}" for kind in EventKind}


class HttpIngest:
    def __init__(self, client: Client, *, partition: int = 0, max_event_bytes: int = 256 * 1024,
                 redactor: Redactor | None = None, gate: ModelGate | None = None) -> None:
        self._client = client
        self._gate = gate  # the registry's model names, shared with the collector (a reload replaces them)
        self._redactor = redactor  # the privacy policies, shared with the collector (a reload replaces them)
        self._partition = partition
        self._max_event_bytes = max_event_bytes
        self._next: dict[EventKind, int] = {}
        self._lock = threading.Lock()

    def _stored_next(self, kind: EventKind) -> int:
        topic = SOURCE_TOPICS[kind]
        rows = self._client.query(
            f"SELECT max(o) FROM (SELECT max(offset) AS o FROM {TABLE_BY_KIND[kind]} WHERE topic = {{t:String}} "
            f"AND partition = {{p:Int32}} UNION ALL SELECT max(offset) FROM {DEAD_LETTER_TABLE} "
            "WHERE topic = {t:String} AND partition = {p:Int32})",
            parameters={"t": topic, "p": self._partition}, settings={"aggregate_functions_null_for_empty": 1},
        ).result_rows
        highest = rows[0][0] if rows else None
        return 0 if highest is None else int(highest) + 1

    def write(self, kind: EventKind, payloads: list[bytes]) -> WriteOutcome:
        """Store `payloads` (rows or dead letters); raises collector.sink.StoreUnavailable if the store is down."""
        with self._lock:  # one writer at a time: offsets are handed out in the order batches are stored
            if kind not in self._next:
                self._next[kind] = self._stored_next(kind)
            first = self._next[kind]
            self._next[kind] = first + len(payloads)  # taken even if the write fails: a retry gets new offsets
            return write_chunk(self._client, kind, payloads, source=SOURCE_TOPICS[kind], partition=self._partition,
                               first_offset=first, max_event_bytes=self._max_event_bytes,
                               redactor=self._redactor, gate=self._gate)
