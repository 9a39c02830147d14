"""Fuzz of event parsing and validation through the collector's own decode and sink, on the real engine.

Over 100,000 events (hypothesis draws valid events of all three kinds; each
is also mutated every hostile way: wrong types, NaN/Infinity/1e999 tokens,
deep nesting, unicode, lone surrogates, invalid UTF-8, truncation, repeated
and escaped keys, hostile names, oversized) go through
`collector.replay.write_chunk` in batches as the collector would write them.
Nothing may escape decode or the sink but a dead letter; every offset is a
stored row or a dead letter, never both and never neither; every dead letter
keeps the exact bytes and a reason; every valid event reads back equal.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from collector.replay import write_chunk
from collector.sink import OVERSIZED_PREFIX_BYTES
from driftline.contracts import ContractError, EventKind, EventValidator
from driftline.values import class_name
from driftline.values import stored as stored_form
from tests.fuzz_events import MUTATIONS, bases, mutants

pytestmark = pytest.mark.integration

MAX_EVENT_BYTES = 8192  # small, so that oversized events stay cheap to generate
ROUNDS = 2  # every mutation twice per drawn event
PER_BASE = 1 + ROUNDS * len(MUTATIONS)
MIN_EVENTS = 100_000
BASES = -(-MIN_EVENTS // PER_BASE) + 50  # a margin: hypothesis may draw the same base twice
CHUNK = 20_000
KINDS = {"invalid_json", "contract", "invalid_name", "oversized", "store_rejected"}
TABLES = {EventKind.PREDICTION: "predictions", EventKind.LABEL: "labels", EventKind.METRIC: "infra_metrics"}
COLUMNS = {
    EventKind.PREDICTION: "event_id, model, model_version, ts, features, prediction, proba, latency_ms",
    EventKind.LABEL: "event_id, model, ts, label",
    EventKind.METRIC: "model, instance, ts, metrics",
}


def generate() -> list[tuple[EventKind, bytes, dict[str, Any] | None]]:
    """The fuzzed events; each is validated as it is drawn, so a crash shrinks to the base event behind it."""
    validators = {k: EventValidator(k, MAX_EVENT_BYTES) for k in EventKind}
    out: list[tuple[EventKind, bytes, dict[str, Any] | None]] = []

    @given(base=bases())
    @settings(max_examples=BASES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def draw(base) -> None:  # type: ignore[no-untyped-def]
        cases = mutants(*base, rounds=ROUNDS, max_event_bytes=MAX_EVENT_BYTES)
        for kind, raw, valid in cases:
            try:
                validators[kind].validate(raw)
            except ContractError:
                assert valid is None, f"a valid event was rejected: {raw!r}"
        out.extend(cases)

    draw()
    return out


def _utc(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _num_or_str(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def expected_row(kind: EventKind, e: dict[str, Any]) -> tuple[Any, ...]:
    ts = _utc(e["ts"])
    if kind is EventKind.PREDICTION:
        # Values as the value model stores them (driftline/values.py): the ingest view's SQL must agree.
        return (e["event_id"], e["model"], e["model_version"], ts,
                {k: stored_form(v) for k, v in e["features"].items()}, stored_form(e["prediction"]),
                {class_name(k): p for k, p in (e.get("proba") or {}).items()}, e.get("latency_ms"))
    if kind is EventKind.LABEL:
        return e["event_id"], e["model"], ts, stored_form(e["label"])
    return e["model"], e["instance"], ts, {k: float(v) for k, v in e["metrics"].items()}


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, dict):
        return {k: _num_or_str(v) for k, v in value.items()}
    return _num_or_str(value)


@pytest.mark.slow
def test_100k_fuzzed_events_are_each_stored_or_dead_lettered_with_their_bytes(store) -> None:  # type: ignore[no-untyped-def]
    events = generate()
    assert len(events) >= MIN_EVENTS, len(events)
    tag = uuid.uuid4().hex[:8]
    q = lambda sql, **p: store.query(sql, parameters=p).result_rows  # noqa: E731
    tables_before = {r[0] for r in q("SHOW TABLES")}
    summary: dict[str, object] = {"events": len(events)}

    for kind in EventKind:
        mine = [(raw, valid) for k, raw, valid in events if k is kind]
        source = f"fuzz-{tag}-{kind.value}"
        written = dead = 0
        for first in range(0, len(mine), CHUNK):
            outcome = write_chunk(store, kind, [raw for raw, _ in mine[first:first + CHUNK]], source=source,
                                  first_offset=first, max_event_bytes=MAX_EVENT_BYTES)
            written += outcome.written
            dead += len(outcome.dead_letters)
        assert written + dead == len(mine)

        stored = store.query(f"SELECT offset, {COLUMNS[kind]} FROM {TABLES[kind]} WHERE topic = {{t:String}}",
                             parameters={"t": source}).result_rows
        letters = store.query("SELECT offset, raw, error_kind, error FROM dead_letters WHERE topic = {t:String}",
                              parameters={"t": source}, column_formats={"raw": "bytes"}).result_rows
        stored_offsets = Counter(r[0] for r in stored)
        dead_offsets = Counter(r[0] for r in letters)
        # Every offset exactly once, as a row or as a dead letter.
        assert max(stored_offsets.values(), default=1) == 1 and max(dead_offsets.values(), default=1) == 1
        assert not set(stored_offsets) & set(dead_offsets)
        assert set(stored_offsets) | set(dead_offsets) == set(range(len(mine)))
        assert (len(stored), len(letters)) == (written, dead)
        # A dead letter keeps the exact bytes it came from (an oversized one: a prefix and a digest), and says why.
        for offset, raw, error_kind, error in letters:
            original = mine[offset][0]
            if error_kind == "oversized" and len(original) > OVERSIZED_PREFIX_BYTES:
                assert raw == original[:OVERSIZED_PREFIX_BYTES] and sha256(original).hexdigest() in error, offset
            else:
                assert raw == original, offset
            assert error_kind in KINDS and error, (offset, error_kind, error)
            assert mine[offset][1] is None, f"valid event at {offset} dead-lettered: {error_kind}: {error}"
        # Valid events read back equal, field by field.
        by_offset = {r[0]: r[1:] for r in stored}
        valid = [(o, v) for o, (_, v) in enumerate(mine) if v is not None]
        for offset, event in valid:
            got = tuple(_normal(x) for x in by_offset[offset])
            want = expected_row(kind, event)
            assert all(_same(a, b) for a, b in zip(got, want)) and len(got) == len(want), (offset, got, want)
        summary[kind.value] = {"events": len(mine), "stored": written, "valid_round_tripped": len(valid),
                               "dead": dict(Counter(r[2] for r in letters))}

    assert {r[0] for r in q("SHOW TABLES")} == tables_before  # hostile names reached no SQL
    print(f"fuzz: {summary}")
