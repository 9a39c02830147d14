"""The drain's freshness check: a partition's log end counts only from a fetch sent after the stop began."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from kafka.structs import TopicPartition

from collector.fetch_times import track_fetch_times

TP, OTHER = TopicPartition("predictions", 0), TopicPartition("predictions", 1)


def completed(tp: TopicPartition, error_code: int = 0) -> SimpleNamespace:
    return SimpleNamespace(topic_partition=tp, partition_data=SimpleNamespace(error_code=error_code))


def test_a_log_end_carries_the_send_time_of_the_fetch_that_reported_it() -> None:
    calls: list[str] = []

    def parse(c: SimpleNamespace) -> str:
        if c.topic_partition == OTHER and c.partition_data.error_code == 99:
            raise RuntimeError("undecodable")
        calls.append("parse")
        return "records"

    fetcher = SimpleNamespace(_handle_fetch_response=lambda *a: calls.append("handle"), _parse_fetched_data=parse)
    times = track_fetch_times(SimpleNamespace(_fetcher=fetcher))  # type: ignore[arg-type]
    assert times.sent_at(TP) is None  # no answer yet: the log end is unknown

    fetcher._handle_fetch_response(1, {TP: 10, OTHER: 3}, 100.0, object())
    assert times.sent_at(TP) is None  # answered but not parsed: the high watermark is not set yet
    assert fetcher._parse_fetched_data(completed(TP)) == "records"
    assert times.sent_at(TP) == 100.0 and calls == ["handle", "parse"]

    with pytest.raises(RuntimeError):
        fetcher._parse_fetched_data(completed(OTHER, error_code=99))
    assert times.sent_at(OTHER) is None  # a failed parse set no log end

    fetcher._handle_fetch_response(1, {TP: 12, OTHER: 3}, 105.0, object())
    fetcher._parse_fetched_data(completed(TP))
    fetcher._parse_fetched_data(completed(OTHER, error_code=1))  # the broker's error: no log end from it
    assert times.sent_at(TP) == 105.0 and times.sent_at(OTHER) is None
