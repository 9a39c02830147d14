"""The gate's reading of Kafka request frames: which requests the broker answers (collector/produce_gate.py).

Frames are built here byte by byte after the Kafka protocol's layout, for the versions real clients send:
kafka-python and librdkafka are exercised against a real broker in tests/integration/test_produce_gate.py.
"""

from __future__ import annotations

import struct

from collector.produce_gate import PRODUCE, _Link, read_request


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def header(api_key: int, version: int, correlation: int, client_id: bytes | None) -> bytes:
    cid = struct.pack(">h", -1) if client_id is None else struct.pack(">h", len(client_id)) + client_id
    return struct.pack(">hhi", api_key, version, correlation) + cid


def produce(version: int, acks: int, transactional: bytes | None = None, tagged: list[bytes] = ()) -> bytes:  # type: ignore[assignment]
    frame = header(PRODUCE, version, 77, b"driftline-logger")
    if version >= 9:
        frame += uvarint(len(tagged))
        for i, field in enumerate(tagged):
            frame += uvarint(i) + uvarint(len(field)) + field
        frame += uvarint(0) if transactional is None else uvarint(len(transactional) + 1) + transactional
    elif version >= 3:
        frame += struct.pack(">h", -1) if transactional is None else struct.pack(">h", len(transactional)) + transactional
    return frame + struct.pack(">hi", acks, 30000) + b"\x00" * 40  # then timeout and the topic data


def test_produce_requests_are_answered_unless_acks_is_zero_in_every_header_layout() -> None:
    for version in (0, 2, 3, 8, 9, 11):
        for acks, answered in ((0, False), (1, True), (-1, True)):
            assert read_request(produce(version, acks)) == (PRODUCE, 77, answered), (version, acks)
            assert read_request(memoryview(produce(version, acks, "txn-\u00e9".encode(), [b"x" * 200])))[2] is answered


def test_other_requests_are_answered_and_short_or_broken_frames_count_as_answered() -> None:
    assert read_request(header(1, 12, 5, b"collector")) == (1, 5, True)  # a Fetch
    assert read_request(header(3, 1, 6, None)) == (3, 6, True)  # Metadata with a null client id
    assert read_request(b"\x00\x00") == (-1, -1, True)
    assert read_request(header(PRODUCE, 9, 8, b"c"))[2] is True  # cut off before acks
    assert read_request(header(PRODUCE, 3, 9, b"c") + struct.pack(">h", 500))[2] is True  # a length past the end


def test_responses_split_anywhere_across_reads_answer_their_requests_in_order() -> None:
    link = _Link()
    link.unanswered.extend([10, 11, 12])
    stream = b"".join(struct.pack(">ii", 4 + len(body), corr) + body for corr, body in ((10, b"a" * 300), (11, b""), (12, b"z")))
    for cut in range(1, len(stream)):
        link = _Link()
        link.unanswered.extend([10, 11, 12])
        link.answered(stream[:cut])
        link.answered(stream[cut:])
        assert not link.unanswered, cut
    link = _Link()
    link.unanswered.extend([10, 11, 12])
    link.answered(stream[:320])  # the first response and the header of the second
    assert list(link.unanswered) == [12]
