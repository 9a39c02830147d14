"""The decoder's bookkeeping: rows, dead letters and offset ranges per partition."""

from __future__ import annotations

import json

from collector.batch import Batch, Origin
from collector.decode import RecordDecoder
from driftline.contracts import EventKind
from driftline.simulate import prediction_payload

TOPICS = {EventKind.PREDICTION: "p", EventKind.LABEL: "l", EventKind.METRIC: "m"}


def test_rows_carry_the_kafka_position_and_the_original_fields() -> None:
    batch = Batch()
    raw = prediction_payload(1, "m1")
    RecordDecoder(TOPICS, 1 << 20).add_records(batch, "p", 2, [Origin("p", 2, 41, None, raw)])
    row = json.loads(batch.rows[EventKind.PREDICTION][0])
    assert (row["topic"], row["partition"], row["offset"]) == ("p", 2, 41)
    assert {k: v for k, v in row.items() if k not in ("topic", "partition", "offset")} == json.loads(raw)


def test_pretty_printed_events_become_one_line() -> None:
    batch = Batch()
    raw = b"  " + json.dumps(json.loads(prediction_payload(1, "m1")), indent=2).encode() + b"\r\n"
    RecordDecoder(TOPICS, 1 << 20).add_records(batch, "p", 0, [Origin("p", 0, 0, None, raw)])
    (row,) = batch.rows[EventKind.PREDICTION]
    assert b"\n" not in row and b"\r" not in row and json.loads(row)["model"] == "m1"


def test_ranges_count_rows_and_dead_letters_per_partition() -> None:
    batch = Batch()
    dec = RecordDecoder(TOPICS, 1 << 20)
    dec.add_records(batch, "p", 0, [Origin("p", 0, o, None, prediction_payload(o, "m")) for o in (10, 11, 12)])
    dec.add_records(batch, "p", 0, [Origin("p", 0, 13, None, b"junk")])
    dec.add_records(batch, "zzz", 1, [Origin("zzz", 1, 5, None, b"{}")])
    r = batch.ranges[("p", 0)]
    assert (r.first_offset, r.next_offset, r.events, r.dead_letters) == (10, 14, 3, 1)
    z = batch.ranges[("zzz", 1)]
    assert (z.first_offset, z.next_offset, z.events, z.dead_letters) == (5, 6, 0, 1)
    assert batch.size == 5
    assert [d.error_kind for d in batch.dead_letters] == ["invalid_json", "unknown_topic"]


def test_sender_sequence_numbers_are_kept_per_partition_for_rows_and_dead_letters_alike() -> None:
    from typing import NamedTuple

    from driftline.sequences import HEADER, header_value

    class Consumed(NamedTuple):  # the fields of kafka-python's ConsumerRecord the decoder reads
        topic: str
        partition: int
        offset: int
        key: bytes | None
        value: bytes | None
        headers: list[tuple[str, bytes]]

    def record(offset: int, value: bytes, headers: list[tuple[str, bytes]]) -> Consumed:
        return Consumed("p", 0, offset, None, value, headers)

    batch = Batch()
    dec = RecordDecoder(TOPICS, 1 << 20)
    dec.add_records(batch, "p", 0, [
        record(0, prediction_payload(0, "m"), [("trace", b"x"), (HEADER, header_value("svc/1/a", 7))]),
        record(1, b"junk", [(HEADER, header_value("svc/1/a", 8))]),  # a dead letter is stored too: not missing
        record(2, prediction_payload(2, "m"), []),  # another producer: nothing to count
        record(3, prediction_payload(3, "m"), [(HEADER, b"svc/1/a eight")]),  # malformed: not counted
        record(4, prediction_payload(4, "m"), [(HEADER, header_value("svc/2/b", 1))]),
    ])
    dec.add_records(batch, "p", 1, [Origin("p", 1, 0, None, prediction_payload(5, "m"))])  # no headers at all
    assert batch.sequences == {("p", 0): {"svc/1/a": [7, 8], "svc/2/b": [1]}}


def test_sequence_header_values_from_untrusted_producers_parse_or_are_ignored() -> None:
    from driftline.sequences import header_value, new_sender_id, parse

    sender = new_sender_id()
    assert parse(header_value(sender, 42)) == (sender, 42)
    for bad in (None, b"", b"svc", b"svc 0", b"svc -1", b"svc 1.5", b"svc 18446744073709551616", b"a b c",
                b"x' OR 1=1 -- 3", b"\xff\xfe 3", b"s" * 200 + b" 3", "svc ٣".encode()):
        assert parse(bad) is None, bad
