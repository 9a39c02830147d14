"""Whether the consumer's cluster metadata is older than its connection: records to hold back until it is not.

A restarted in-memory broker comes back on the same address with a new log per partition (offsets from 0)
and new topic ids. kafka-python asks for new metadata when a connection is lost, but may fetch from the
new broker before the answer arrives; when the new log had already grown past the collector's position,
those records were read as the old incarnation's (under its offset base) and again, after the new topic
id was seen, from the new log's start: 917 duplicate rows in one CI run of tests/fault/test_broker_restart.py.
So records fetched while a metadata request is unanswered are not taken: the collector seeks back to them
and fetches them again once the metadata says which incarnation they belong to (collector/loop.py, _add).
Private seams of kafka-python's ClusterMetadata (`request_update`, `update_metadata`), as in
collector/fetch_times.py; kafka-python is pinned below 4.
"""

from __future__ import annotations

import time
from typing import Any

from kafka import KafkaConsumer

MAX_HOLD_S = 10.0  # metadata still unanswered after this long: take the records (a stall helps nobody)


class MetadataWatch:
    def __init__(self) -> None:
        self._asked: float | None = None  # the oldest metadata request not answered since (monotonic)

    def asked(self) -> None:
        if self._asked is None:
            self._asked = time.monotonic()

    def answered(self) -> None:
        self._asked = None

    @property
    def stale(self) -> bool:
        """A metadata request is pending (for less than MAX_HOLD_S): fetched records may be a new incarnation's."""
        return self._asked is not None and time.monotonic() - self._asked < MAX_HOLD_S


def watch_metadata(consumer: KafkaConsumer) -> MetadataWatch:
    cluster: Any = consumer._client.cluster  # noqa: SLF001 - see the module docstring
    watch = MetadataWatch()
    request, update = cluster.request_update, cluster.update_metadata

    def request_update() -> Any:
        watch.asked()
        return request()

    def update_metadata(metadata: Any) -> Any:
        result = update(metadata)
        if metadata.brokers:  # an empty answer is a failed update: still waiting
            watch.answered()
        return result

    cluster.request_update, cluster.update_metadata = request_update, update_metadata
    return watch
