"""Turning Kafka records into rows for ClickHouse, or dead letters with a reason.

Valid events are not re-serialized: the original JSON object gets the
record's Kafka position prepended and goes to ClickHouse as is, where a
materialized view parses it into columns (C++ does the column work; Python
only validates). ClickHouse stays a second line of defence: a row it rejects
anyway becomes a dead letter in the sink, never a stuck batch.

This is the collector's hot loop: it works on the runs of records that
`poll()` returns per partition, and keeps per-record work to validation
and one bytes format.

A model with a privacy policy (`driftline.privacy`) is the one exception:
its events are rewritten (fields dropped or hashed) and re-encoded, and any
dead letter is redacted, in a loop of its own; while no policy is in force
the loop below runs unchanged.

Events of a model the registry does not define are counted and logged once
per name by the `ModelGate` (`driftline.unknown_models`), and dead-lettered
instead of stored when the registry says `unknown_models: dead_letter`. The
per-event cost is one set lookup; without a registry, none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from collector.batch import Batch, DeadLetter, Origin, Record
from driftline.contracts import ContractError, EventKind, EventValidator
from driftline.privacy import Redactor
from driftline.unknown_models import REASON as UNKNOWN_MODEL
from driftline.unknown_models import ModelGate


class RecordDecoder:
    """Routes records by topic to the validator of their event kind."""

    def __init__(self, topics: Mapping[EventKind, str], max_event_bytes: int, redactor: Redactor | None = None,
                 gate: ModelGate | None = None) -> None:
        self._by_topic = {topic: (kind, EventValidator(kind, max_event_bytes)) for kind, topic in topics.items()}
        self._redactor = redactor
        self._gate = gate  # the registry's model names (None, or a gate without names: every model is known)

    def _unknown(self, kind: EventKind, tally: dict[str, int], held: list[tuple[Record, str]],
                 dead: list[DeadLetter]) -> None:
        """Count a run's events of unregistered models; dead-letter those `held` back (the gate's dead_letter)."""
        assert self._gate is not None
        reasons = self._gate.seen(kind.value, tally)
        for origin, name in held:
            dead.append(DeadLetter(origin, UNKNOWN_MODEL, reasons[name]))

    def add_records(self, batch: Batch, topic: str, partition: int, records: Sequence[Record], base: int = 0) -> None:
        """Decode consecutive records of one partition into the batch: rows for their table, or dead letters.

        `base`: the partition's offset base (collector/incarnations.py); rows carry stored offsets.
        """
        if not records:
            return
        batch.note_sequences(topic, partition, records)
        redactor = self._redactor
        if redactor is not None and redactor.policies:
            self._add_governed(redactor, batch, topic, partition, records, base)
            return
        route = self._by_topic.get(topic)
        dead = batch.dead_letters
        nbytes = 0
        if route is None:
            for m in records:
                dead.append(DeadLetter(m, "unknown_topic", f"no event kind is configured for topic {topic!r}"))
                nbytes += len(m.value or b"")
            batch.cover(topic, partition, records[0].offset, records[-1].offset + 1, 0, len(records), nbytes, base)
            return
        kind, validator = route
        validate = validator.validate
        rows, origins = batch.rows[kind], batch.origins[kind]
        # Topic names match Kafka's pattern ([A-Za-z0-9._-]), so they are safe inside a JSON string.
        prefix = b'{"topic":"%s","partition":%d,"offset":' % (topic.encode(), partition)
        events = 0
        gate = self._gate
        known = gate.known if gate is not None else None
        hold = gate is not None and gate.dead_letter
        tally: dict[str, int] = {}
        held: list[tuple[Record, str]] = []
        for m in records:
            value = m.value
            try:
                event = validate(value)
            except ContractError as exc:
                dead.append(DeadLetter(m, exc.kind, str(exc)))
                nbytes += len(value or b"")
                continue
            nbytes += len(value)
            if known is not None and event.model not in known:
                tally[event.model] = tally.get(event.model, 0) + 1
                if hold:
                    held.append((m, event.model))
                    continue
            if value[0] != 0x7B or b"\n" in value or b"\r" in value:  # 0x7B is "{"
                # Leading space or raw line breaks: both can only be whitespace between tokens
                # (inside strings JSON escapes them); one object per line keeps batches readable in errors.
                value = value.strip().replace(b"\r", b" ").replace(b"\n", b" ")
            rows.append(b"%s%d,%s" % (prefix, m.offset + base, value[1:]))
            origins.append(m)
            events += 1
        if tally:
            self._unknown(kind, tally, held, dead)
        batch.cover(topic, partition, records[0].offset, records[-1].offset + 1, events, len(records) - events, nbytes, base)

    def _add_governed(self, redactor: Redactor, batch: Batch, topic: str, partition: int,
                      records: Sequence[Record], base: int) -> None:
        """`add_records` while a privacy policy is in force: the same rows, with governed fields never stored raw.

        Events of models without a policy take the same steps as in `add_records` plus one dict lookup.
        """
        policies = redactor.policies
        dead = batch.dead_letters
        route = self._by_topic.get(topic)
        if route is None:
            for m in records:
                raw, note = redactor.dead_letter(m.value)
                origin = m if raw is m.value else Origin(m.topic, m.partition, m.offset, m.key, raw)
                dead.append(DeadLetter(origin, "unknown_topic", f"no event kind is configured for topic {topic!r}{note}"))
            nbytes = sum(len(m.value or b"") for m in records)
            batch.cover(topic, partition, records[0].offset, records[-1].offset + 1, 0, len(records), nbytes, base)
            return
        kind, validator = route
        validate, rewrite = validator.validate, redactor.event
        rows, origins = batch.rows[kind], batch.origins[kind]
        prefix = b'{"topic":"%s","partition":%d,"offset":' % (topic.encode(), partition)
        nbytes = events = 0
        gate = self._gate
        known = gate.known if gate is not None else None
        hold = gate is not None and gate.dead_letter
        tally: dict[str, int] = {}
        held: list[tuple[Record, str]] = []
        for m in records:
            value = m.value
            try:
                event = validate(value)
            except ContractError as exc:
                nbytes += len(value or b"")
                raw, note = redactor.dead_letter(value)
                origin = m if raw is value else Origin(m.topic, m.partition, m.offset, m.key, raw)
                dead.append(DeadLetter(origin, exc.kind, str(exc) + note))
                continue
            nbytes += len(value)
            if known is not None and event.model not in known:
                tally[event.model] = tally.get(event.model, 0) + 1
                if hold:  # its raw bytes are redacted like any dead letter's (every policy: its model is none)
                    raw, note = redactor.dead_letter(value)
                    held.append((m if raw is value else Origin(m.topic, m.partition, m.offset, m.key, raw), event.model))
                    continue
            policy = policies.get(event.model)
            if policy is not None:
                rewritten = rewrite(event, policy)
                if rewritten is not None:
                    # The origin carries the rewritten bytes too: a row ClickHouse refuses is dead-lettered from it.
                    value, m = rewritten, Origin(m.topic, m.partition, m.offset, m.key, rewritten)
            if value[0] != 0x7B or b"\n" in value or b"\r" in value:  # see add_records
                value = value.strip().replace(b"\r", b" ").replace(b"\n", b" ")
            rows.append(b"%s%d,%s" % (prefix, m.offset + base, value[1:]))
            origins.append(m)
            events += 1
        if tally:
            self._unknown(kind, tally, held, dead)
        batch.cover(topic, partition, records[0].offset, records[-1].offset + 1, events, len(records) - events, nbytes, base)
