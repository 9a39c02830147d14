"""kafka-python's real Fetcher on crafted fetch responses: codecs, undecodable batches, transactions.

Pure logic, no broker: the fetch responses are what a broker sends (v2 record batches built with
kafka-python's own batch builder, broker-assigned base offsets, control batches as brokers write them)
handed to the Fetcher exactly where its network callback would (`_completed_fetches`). The Fetcher is
configured from the collector's `consumer_config`, as KafkaConsumer configures it.
"""

from __future__ import annotations

import importlib.metadata
import re
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer
from kafka.consumer.fetcher import CompletedFetch, Fetcher
from kafka.consumer.subscription_state import SubscriptionState
from kafka.errors import TopicAuthorizationFailedError
from kafka.protocol.consumer import FetchResponse
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import calc_crc32c
from kafka.structs import TopicPartition

import kafka.codec
from collector.fetch_guard import CODEC_UNAVAILABLE, CORRUPT, TOO_LARGE, UndecodableBatch, guard_fetcher, locate
from collector.loop import consumer_config
from driftline.config import Settings

ROOT = Path(__file__).resolve().parents[2]
PartitionData = FetchResponse.FetchableTopicResponse.PartitionData
Aborted = PartitionData.AbortedTransaction
GOOD, BAD = TopicPartition("predictions", 0), TopicPartition("predictions", 1)
TS = 1_780_000_000_000  # a fixed create time (ms): batches built twice are byte-identical
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def batch(base: int, n: int, codec: str = "none", *, pid: int = -1, transactional: bool = False,
          tag: bytes = b"e") -> bytes:
    """A v2 record batch of `n` records at offsets base.. as a broker stores it (values compress well)."""
    b = DefaultRecordBatchBuilder(2, CODEC_IDS[codec], transactional, pid, 0 if pid >= 0 else -1,
                                  0 if pid >= 0 else -1, 1 << 20)
    for i in range(n):
        b.append(i, TS + i, b"model-a", b'{"event_id":"%s-%d","pad":"%s"}' % (tag, base + i, b"x" * 200), [])
    buf = b.build()
    struct.pack_into(">q", buf, 0, base)  # the broker assigns the base offset (outside the CRC)
    return bytes(buf)


def marker(offset: int, pid: int, *, abort: bool) -> bytes:
    """A transaction marker (control batch) as the broker writes it: key (version 0, type 0=abort 1=commit)."""
    b = DefaultRecordBatchBuilder(2, 0, True, pid, 0, 0, 1 << 20)
    b.append(0, TS, struct.pack(">hh", 0, 0 if abort else 1), struct.pack(">hi", 0, 0), [])
    buf = b.build()
    struct.pack_into(">q", buf, 0, offset)
    attrs_at = 21
    struct.pack_into(">h", buf, attrs_at, struct.unpack_from(">h", buf, attrs_at)[0] | DefaultRecordBatch.CONTROL_MASK)
    struct.pack_into(">I", buf, 17, calc_crc32c(memoryview(buf)[attrs_at:]))
    return bytes(buf)


def fetcher(*tps: TopicPartition, **overrides: object) -> tuple[Fetcher, SubscriptionState]:
    """A Fetcher configured like the collector's consumer, its partitions assigned at offset 0, no network."""
    config = consumer_config(Settings(kafka_bootstrap_servers="127.0.0.1:9"), **overrides)
    subs = SubscriptionState()
    subs.assign_from_user(list(tps))
    for tp in tps:
        subs.seek(tp, 0)
    f = Fetcher(SimpleNamespace(_manager=SimpleNamespace(_net=None)), subs,
                **{k: v for k, v in config.items() if k in Fetcher.DEFAULT_CONFIG})
    return f, subs


def deliver(f: Fetcher, tp: TopicPartition, offset: int, data: bytes, *, error_code: int = 0,
            aborted: list[tuple[int, int]] | None = None) -> None:
    """Hand the fetcher one partition's fetch response, where its network callback would."""
    pd = PartitionData(partition_index=tp.partition, error_code=error_code, high_watermark=1000, records=data,
                       aborted_transactions=[Aborted(producer_id=p, first_offset=o) for p, o in aborted or []])
    f._completed_fetches.append(CompletedFetch(tp, offset, 12, pd, None))


def offsets(records: dict[TopicPartition, list]) -> dict[int, list[int]]:  # type: ignore[type-arg]
    return {tp.partition: [r.offset for r in rs] for tp, rs in records.items()}


def guarded(f: Fetcher) -> Fetcher:
    guard_fetcher(SimpleNamespace(_fetcher=f))  # type: ignore[arg-type]  # the guard only touches the fetcher
    return f


# -- codecs ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", list(CODEC_IDS))
def test_every_kafka_codec_decodes_in_this_install(codec: str) -> None:
    f, _ = fetcher(GOOD)
    deliver(f, GOOD, 0, batch(0, 5, codec) + batch(5, 5, codec))
    records, _ = f.fetched_records()
    assert offsets(records) == {0: list(range(10))}
    assert records[GOOD][7].value.startswith(b'{"event_id":"e-7"')
    if codec != "none":  # it really was compressed, so the codec's library did the decoding
        assert DefaultRecordBatch(batch(0, 5, codec)).compression_type == CODEC_IDS[codec]


def test_the_codec_libraries_are_plain_dependencies_and_the_image_installs_them() -> None:
    """A plain `pip install driftline` (no extra) brings every codec library kafka-python looks for."""
    plain = {re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() for r in importlib.metadata.requires("driftline") or []
             if "extra ==" not in r}
    assert {"python-snappy", "lz4", "zstandard"} <= plain
    assert kafka.codec.has_snappy() and kafka.codec.has_lz4() and kafka.codec.has_zstd()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install \.(\s|$)", dockerfile, re.M), "the image must install the project's own dependencies"


# -- undecodable batches ---------------------------------------------------------------------------------------

def test_unguarded_fetcher_raises_without_a_partition_then_cannot_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the guard exists: kafka-python's error names no partition, and leaves a dead generator in line.

    `fetched_records` would loop forever on that generator (take() returns [] without draining it);
    shown here by its state rather than by running the loop.
    """
    f, subs = fetcher(BAD)
    deliver(f, BAD, 0, batch(0, 3, "zstd"))
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)  # as on an install without `zstandard`
    with pytest.raises(Exception) as raised:
        f.fetched_records()
    assert type(raised.value).__name__ == "UnsupportedCodecError" and "predictions" not in str(raised.value)
    stuck = f._next_partition_records
    assert stuck and stuck.take(10) == [] and stuck, "kept in line, yielding nothing, never drained"
    assert subs.assignment[BAD].position.offset == 0


def test_a_batch_of_an_unavailable_codec_names_its_partition_and_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    f, subs = fetcher(GOOD, BAD)
    guarded(f)
    bad = batch(3, 4, "zstd")
    deliver(f, GOOD, 0, batch(0, 5))
    deliver(f, BAD, 0, batch(0, 3) + bad + batch(7, 2))
    monkeypatch.setattr(kafka.codec, "has_zstd", lambda: False)  # as on an install without `zstandard`
    seen: dict[int, list[int]] = {}
    error: UndecodableBatch | None = None
    for _ in range(4):
        try:
            records, _ = f.fetched_records()
        except UndecodableBatch as exc:
            error = exc
            continue
        for p, offs in offsets(records).items():
            seen.setdefault(p, []).extend(offs)
    assert error is not None
    assert (error.topic, error.partition, error.offset, error.next_offset) == ("predictions", 1, 3, 7)
    assert error.raw == bad and error.reason == CODEC_UNAVAILABLE
    assert "zstd" in error.describe() and "offsets 3..6 skipped (4 records)" in error.describe()
    # The records before the bad batch, and the other partition, are delivered; the bad partition waits at 3.
    assert seen == {0: [0, 1, 2, 3, 4], 1: [0, 1, 2]}
    assert subs.assignment[BAD].position.offset == 3
    # Seeking past it (what the collector does), the partition reads on from the broker's next answer.
    subs.seek(BAD, error.next_offset)
    deliver(f, BAD, 7, batch(7, 2))
    records, _ = f.fetched_records()
    assert offsets(records) == {1: [7, 8]}


def test_without_a_seek_the_same_batch_fails_again_instead_of_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    data = batch(0, 3, "snappy")
    monkeypatch.setattr(kafka.codec, "has_snappy", lambda: False)
    f, _ = fetcher(BAD)
    guarded(f)
    for _ in range(2):  # each fetch of offset 0 answers with the same batch, and fails the same way
        deliver(f, BAD, 0, data)
        with pytest.raises(UndecodableBatch) as raised:
            f.fetched_records()
        assert (raised.value.offset, raised.value.next_offset) == (0, 3)
        assert f.fetched_records() == ({}, False)  # nothing left in line: the fetcher would fetch afresh


def test_corrupt_compressed_data_with_a_valid_crc() -> None:
    """A gzip batch whose compressed payload is garbage (a buggy producer; the CRC was computed over it)."""
    buf = bytearray(batch(10, 3, "gzip"))
    buf[61:] = b"\x1f\x8b" + bytes(range(40))
    struct.pack_into(">i", buf, 8, len(buf) - 12)
    struct.pack_into(">I", buf, 17, calc_crc32c(memoryview(buf)[21:]))
    f, subs = fetcher(BAD)
    subs.seek(BAD, 10)
    guarded(f)
    deliver(f, BAD, 10, bytes(buf))
    with pytest.raises(UndecodableBatch) as raised:
        f.fetched_records()
    e = raised.value
    assert (e.offset, e.next_offset, e.reason, e.raw) == (10, 13, CORRUPT, bytes(buf))


def test_a_crc_mismatch_is_corrupt() -> None:
    buf = bytearray(batch(0, 3))
    buf[-5] ^= 0xFF  # a flipped bit in the last record's value
    f, _ = fetcher(BAD)
    guarded(f)
    deliver(f, BAD, 0, bytes(buf))
    with pytest.raises(UndecodableBatch) as raised:
        f.fetched_records()
    assert type(raised.value.cause).__name__ == "CorruptRecordError" and raised.value.reason == CORRUPT
    assert (raised.value.offset, raised.value.next_offset) == (0, 3)


def test_a_batch_larger_than_the_fetch_is_too_large() -> None:
    """Only part of a batch arrived (a broker honouring the fetch size strictly): its header still tells where it ends."""
    whole = batch(20, 6)
    f, subs = fetcher(BAD)
    subs.seek(BAD, 22)
    guarded(f)
    deliver(f, BAD, 22, whole[:200])
    with pytest.raises(UndecodableBatch) as raised:
        f.fetched_records()
    e = raised.value
    assert (e.offset, e.next_offset, e.reason, e.raw) == (22, 26, TOO_LARGE, whole[:200])
    assert "200 of them received" in e.detail


def test_broker_errors_stay_kafka_pythons() -> None:
    f, _ = fetcher(BAD)
    guarded(f)
    deliver(f, BAD, 0, b"", error_code=TopicAuthorizationFailedError.errno)
    with pytest.raises(TopicAuthorizationFailedError):
        f.fetched_records()


def test_locate_reads_headers_only() -> None:
    middle = batch(2, 3, "zstd")
    data = batch(0, 2) + middle + batch(5, 1)
    assert locate(data, 3)[:2] == (5, middle)
    assert locate(data, 5)[0] == 6
    assert locate(data, 6) is None and locate(b"", 0) is None and locate(b"\x00" * 30, 0) is None


# -- transactions ----------------------------------------------------------------------------------------------

TXN = (batch(0, 3, pid=7, transactional=True, tag=b"committed") + marker(3, 7, abort=False)
       + batch(4, 2, pid=8, transactional=True, tag=b"aborted") + marker(6, 8, abort=True)
       + batch(7, 2, tag=b"plain"))


def test_the_collector_reads_committed_only() -> None:
    assert consumer_config(Settings(kafka_bootstrap_servers="127.0.0.1:9"))["isolation_level"] == "read_committed"
    # KafkaConsumer hands its config to its Fetcher; the fetch requests carry the level (Fetch v4+).
    consumer = KafkaConsumer(**consumer_config(Settings(kafka_bootstrap_servers="127.0.0.1:9")),
                             api_version=(2, 8))
    try:
        assert consumer._fetcher._isolation_level == 1  # READ_COMMITTED
    finally:
        consumer.close()


def test_read_committed_skips_aborted_records_and_markers_given_the_brokers_list() -> None:
    f, _ = fetcher(GOOD)
    deliver(f, GOOD, 0, TXN, aborted=[(8, 4)])
    records, _ = f.fetched_records()
    assert offsets(records) == {0: [0, 1, 2, 7, 8]}
    assert all(b"aborted" not in r.value for r in records[GOOD])


def test_what_decides_it_is_the_brokers_aborted_list() -> None:
    """Read uncommitted, aborted records come through; read committed without the broker's list (tansu 0.6.0
    sends none) they come through too: kafka-python drops the markers but cannot know the batch was aborted."""
    f, _ = fetcher(GOOD, isolation_level="read_uncommitted")
    deliver(f, GOOD, 0, TXN, aborted=[(8, 4)])
    assert offsets(f.fetched_records()[0]) == {0: [0, 1, 2, 4, 5, 7, 8]}
    f, _ = fetcher(GOOD)
    deliver(f, GOOD, 0, TXN, aborted=[])
    assert offsets(f.fetched_records()[0]) == {0: [0, 1, 2, 4, 5, 7, 8]}
