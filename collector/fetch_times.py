"""When the fetch behind each partition's known log end was sent: what "read to the log end" needs.

A clean stop of `up` reads every partition up to the log end its fetches
reported, then stops the broker. A log end is only as new as the fetch that
reported it: one sent before the stop began misses events acknowledged after
it was sent (CI seed 15357932 lost 2 events on a clean stop that way). So the
drain asks, per partition, for a log end from a fetch sent after the stop
began. kafka-python records the high watermark when it parses a fetch answer
and keeps no send time with it; `track_fetch_times` notes the send time of
each answer (`Fetcher._handle_fetch_response` gets it) and hands it to the
partition when the answer is parsed (`Fetcher._parse_fetched_data`, which
sets the high watermark). The fetcher sends no new fetch for a partition
whose answer is not parsed yet, so the two line up. Private seams, as in
collector/fetch_guard.py (kafka-python is pinned below 4).
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaConsumer
from kafka.structs import TopicPartition


class FetchTimes:
    """Per partition, the send time (time.monotonic()) of the fetch its high watermark was last set from."""

    def __init__(self) -> None:
        self._answered: dict[TopicPartition, float] = {}  # answers received, not parsed yet
        self._parsed: dict[TopicPartition, float] = {}

    def sent_at(self, tp: TopicPartition) -> float | None:
        return self._parsed.get(tp)


def track_fetch_times(consumer: KafkaConsumer) -> FetchTimes:
    fetcher: Any = consumer._fetcher  # noqa: SLF001 - see the module docstring
    times = FetchTimes()
    handle, parse = fetcher._handle_fetch_response, fetcher._parse_fetched_data

    def handled(node_id: Any, fetch_offsets: Any, send_time: float, response: Any) -> Any:
        for tp in fetch_offsets:
            times._answered[tp] = send_time
        return handle(node_id, fetch_offsets, send_time, response)

    def parsed(completed: Any) -> Any:
        part = parse(completed)  # raises for an undecodable batch (fetch_guard): its log end is not known then
        tp = completed.topic_partition
        sent = times._answered.pop(tp, None)
        if sent is not None and completed.partition_data.error_code == 0:
            times._parsed[tp] = max(sent, times._parsed.get(tp, sent))
        return part

    fetcher._handle_fetch_response = handled
    fetcher._parse_fetched_data = parsed
    return times
