"""Record batches the consumer cannot decode: named by partition and offset, so the collector can skip them.

Where kafka-python 3.0.12 fails on a batch (kafka/consumer/fetcher.py):
- `Fetcher._parse_fetched_data` raises when a partition's fetch data holds
  no complete batch (a batch larger than the fetch size): RecordTooLargeError
  on Fetch < v3, `KafkaError("Failed to make progress ...")` after.
- `PartitionRecords.take` raises from the lazy `_unpack_records` generator
  while decoding: CorruptRecordError (a CRC mismatch), UnsupportedCodecError
  (the codec's library is missing, or an unknown codec id), or whatever the
  codec library raises for corrupt compressed data (zlib.error, ...).
Either way the exception leaves `KafkaConsumer.poll()` with no partition
attached, so a caller cannot tell which partition to skip; and the failed
generator stays behind as the fetcher's next-in-line data, so the next
`poll()` spins forever inside `fetched_records` (take() returns nothing and
the loop never drains it; measured, see tests/unit/test_fetch_guard.py).

`guard_fetcher` wraps those two methods on one consumer's fetcher: a failure
becomes `UndecodableBatch`, naming the topic, partition, the first offset
not delivered, the offset just past the failed batch and the batch's raw
bytes, and the failed data is drained so kafka-python fetches afresh. The
exception still leaves `poll()` (kafka-python defers it behind records of
other partitions already drained in the same poll), and the collector
decides: dead-letter the batch and seek past it (collector/loop.py).
Broker-side errors of a fetch (an error code in the response: authorization,
offset out of range, leadership) are left to kafka-python as before.

This reaches into kafka-python's private fetcher; pyproject pins
kafka-python below 4 and the unit tests drive the real Fetcher class, so a
release that moves these seams fails them instead of failing silently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import CorruptRecordError, UnsupportedCodecError
from kafka.record.default_records import DefaultRecordBatch

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_HEADER = DefaultRecordBatch.HEADER_STRUCT  # the v2 batch header (61 bytes)
_LOG_OVERHEAD = 12  # base offset (int64) + batch length (int32), in front of every batch of every format

# Reasons, a fixed set: the Prometheus label of driftline_collector_undecodable_batches_total.
CODEC_UNAVAILABLE = "codec_unavailable"
CORRUPT = "corrupt"
TOO_LARGE = "too_large"


class UndecodableBatch(Exception):
    """A record batch of one partition that cannot be decoded; reading can resume at `next_offset`.

    `offset` is the first offset of the partition not yet delivered (the consumer's position), so the
    records [offset, next_offset) are the ones skipped; `raw` is the batch as it arrived (compressed,
    or as much of it as arrived when it is larger than the fetch).
    """

    def __init__(self, topic: str, partition: int, offset: int, next_offset: int, raw: bytes,
                 reason: str, detail: str, cause: BaseException) -> None:
        super().__init__(f"undecodable record batch at {topic}/{partition}@{offset}: {type(cause).__name__}: {cause}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.next_offset = next_offset
        self.raw = raw
        self.reason = reason
        self.detail = detail
        self.cause = cause

    def describe(self) -> str:
        """The dead letter's error text: what failed, and which offsets the skip covers."""
        return (f"{type(self.cause).__name__}: {self.cause}; {self.detail}; offsets {self.offset}.."
                f"{self.next_offset - 1} skipped ({self.next_offset - self.offset} records)")


def locate(data: bytes, position: int) -> tuple[int, bytes, str] | None:
    """The batch of a partition's fetch data that holds `position`: (offset after it, its bytes, a description).

    Reads batch headers only (they are never compressed), so it works on data that cannot be decoded;
    a batch cut short by the fetch size is returned with the bytes that arrived. None when no header
    reaches `position` (the data is empty or its framing is garbage).
    """
    pos = 0
    while pos + _LOG_OVERHEAD <= len(data):
        base = int.from_bytes(data[pos:pos + 8], "big", signed=True)
        length = int.from_bytes(data[pos + 8:pos + 12], "big", signed=True)
        if length <= 0:
            return None
        end = pos + _LOG_OVERHEAD + length
        magic = data[pos + 16] if pos + 16 < len(data) else None
        if magic == 2 and pos + _HEADER.size <= len(data):
            header = _HEADER.unpack_from(data, pos)
            last = base + header[6]
            codec = CODECS.get(header[5] & 0x07, f"unknown codec id {header[5] & 0x07}")
            detail = f"record batch {base}..{last}, {header[12]} records, codec {codec}, {length + _LOG_OVERHEAD} bytes"
        else:
            last = base  # message format 0/1: a (wrapper) message carries its last offset
            detail = f"message set entry at {base} (format {magic}), {length + _LOG_OVERHEAD} bytes"
        if last >= position:
            if end > len(data):
                detail += f", {len(data) - pos} of them received"
            return last + 1, bytes(data[pos:end]), detail
        pos = end
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnsupportedCodecError):
        return CODEC_UNAVAILABLE
    return CORRUPT  # CorruptRecordError, or the codec library's own error on bad compressed data


def _undecodable(topic: str, partition: int, position: int, data: bytes | None, exc: BaseException,
                 reason: str) -> UndecodableBatch:
    found = locate(data or b"", position)
    if found is None:
        # No header to read the batch's extent from: skip one offset. If the rest of the batch fails too,
        # each of its offsets is dead-lettered in turn (bounded by the batch), none is lost silently.
        return UndecodableBatch(topic, partition, position, position + 1, bytes(data or b""), reason,
                                "no readable batch header", exc)
    next_offset, raw, detail = found
    return UndecodableBatch(topic, partition, position, max(next_offset, position + 1), raw, reason, detail, exc)


def guard_fetcher(consumer: KafkaConsumer) -> None:
    """Make decoding failures of `consumer` raise `UndecodableBatch` and leave the fetcher able to go on."""
    fetcher: Any = consumer._fetcher  # noqa: SLF001 - see the module docstring
    parse: Callable[[Any], Any] = fetcher._parse_fetched_data

    def guarded_parse(completed: Any) -> Any:
        try:
            part = parse(completed)
        except Exception as exc:
            if completed.partition_data.error_code != 0:
                raise  # the broker's error for this partition: kafka-python's handling, unchanged
            tp = completed.topic_partition
            reason = _reason(exc) if isinstance(exc, (UnsupportedCodecError, CorruptRecordError)) else TOO_LARGE
            raise _undecodable(tp.topic, tp.partition, completed.fetched_offset, completed.partition_data.records,
                               exc, reason) from exc
        if part is not None:
            _guard_take(part, completed.partition_data.records)
        return part

    fetcher._parse_fetched_data = guarded_parse


def _guard_take(part: Any, data: bytes | None) -> None:
    take: Callable[..., list[Any]] = part.take

    def guarded_take(n: int | None = None) -> list[Any]:
        try:
            return take(n)
        except UndecodableBatch:
            raise
        except Exception as exc:
            position = part.next_fetch_offset  # past every record delivered (and every batch skipped) so far
            part.drain()  # else the fetcher keeps the failed generator and its next poll spins on it
            tp = part.topic_partition
            raise _undecodable(tp.topic, tp.partition, position, data, exc, _reason(exc)) from exc

    part.take = guarded_take
