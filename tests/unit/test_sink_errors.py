"""How the sink tells a refused row (split, dead-letter) from a failed connection (retry the batch whole)."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from collector.batch import Batch, Origin
from collector.sink import ClickHouseSink, StoreUnavailable
from driftline.contracts import EventKind


class RecordingClient:
    """Records raw inserts; fails them the way it is told (a unit-test double of the store's client)."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.inserts: list[int] = []

    def raw_insert(self, table: str, columns: object, *, insert_block: bytes, fmt: str, settings: object) -> None:
        self.inserts.append(insert_block.count(b"\n") + 1)
        if self.error is not None:
            raise self.error

    def query(self, sql: str) -> None:  # the health probe after a refused single row
        return None

    def insert(self, *args: object, **kwargs: object) -> None:
        return None


def batch_of(n: int) -> Batch:
    batch = Batch()
    for i in range(n):
        batch.rows[EventKind.PREDICTION].append(b'{"i":%d}' % i)
        batch.origins[EventKind.PREDICTION].append(Origin("predictions", 0, i, None, b"{}"))
    return batch


def test_a_failed_connection_is_retried_whole_never_split() -> None:
    client = RecordingClient(OperationalError("connection reset by peer"))
    with pytest.raises(StoreUnavailable, match="OperationalError"):
        ClickHouseSink(client).write(batch_of(8))  # type: ignore[arg-type]
    assert client.inserts == [8]  # one attempt: halves re-sent after a lost answer would be duplicates


def test_a_refused_insert_is_bisected_down_to_the_rows_clickhouse_refuses() -> None:
    client = RecordingClient(DatabaseError("CHECK constraint violated"))
    rejected = ClickHouseSink(client).write(batch_of(4))  # type: ignore[arg-type]
    assert len(rejected) == 4 and client.inserts == [4, 2, 1, 1, 2, 1, 1]
