"""Turning a Kafka record into a row for ClickHouse, or a dead letter with a reason.

Valid events are not re-serialized: the original JSON object gets the
record's Kafka position prepended and goes to ClickHouse as a JSONEachRow
line, so ClickHouse's C++ parser does the column work while Python only
validates. ClickHouse stays a second line of defence: a row it rejects
anyway becomes a dead letter in the sink, never a stuck batch.
"""

from __future__ import annotations

from collections.abc import Mapping

from collector.batch import Batch, DeadLetter, Origin
from driftline.contracts import ContractError, EventKind, EventValidator


class RecordDecoder:
    """Routes records by topic to the validator of their event kind."""

    def __init__(self, topics: Mapping[EventKind, str], max_event_bytes: int) -> None:
        self._by_topic = {topic: (kind, EventValidator(kind, max_event_bytes)) for kind, topic in topics.items()}
        # Topic names match the Kafka topic pattern, so they are safe inside a JSON string.
        self._topic_json = {topic: topic.encode() for topic in self._by_topic}

    def add(self, batch: Batch, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Decode one record into the batch: a row for its table or a dead letter."""
        origin = Origin(topic, partition, offset, key, value)
        route = self._by_topic.get(topic)
        if route is None:
            batch.add_dead_letter(DeadLetter(origin, "unknown_topic", f"no event kind is configured for topic {topic!r}"))
            return
        kind, validator = route
        try:
            validator.validate(value)
        except ContractError as exc:
            batch.add_dead_letter(DeadLetter(origin, exc.kind, str(exc)))
            return
        assert value is not None
        body = value.strip()
        if b"\n" in body or b"\r" in body:
            # Raw line breaks can only be whitespace between tokens (inside strings JSON escapes them);
            # JSONEachRow wants one object per line.
            body = body.replace(b"\r", b" ").replace(b"\n", b" ")
        row = b'{"topic":"%s","partition":%d,"offset":%d,%s' % (self._topic_json[topic], partition, offset, body[1:])
        batch.add_row(kind, row, origin)
