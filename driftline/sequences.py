"""Sender sequence numbers: how Driftline counts exactly the events a model service sent and it never stored.

A broker may acknowledge an event and then lose it (an in-memory broker killed
before the collector read it). The producer cannot see that, and offsets
cannot either: the new broker's log starts over. So `PredictionLogger` numbers
its events 1, 2, 3, ... per logger (one `sender` id per logger instance) and
sends the number in a Kafka header. The collector records, in the same insert
as each batch's checkpoint, which numbers it stored (as rows or dead letters),
so a number is on record exactly when its event is. A sender's missing events
are then `highest number stored - distinct numbers stored`, exact whatever
happened in between: resends, duplicates, broker restarts, collector crashes.

Not covered: events after a sender's highest stored number (the sender's last
events, until a later one arrives) and events of producers that send no
header (librdkafka, Kafka Connect: their losses are counted from log ends,
collector/incarnations.py, a lower bound). Numbers of records whose batch
could not be decoded at all are counted missing too (those records are
counted as undecodable as well).
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # PredictionLogger imports this module: model services need no ClickHouse client
    from clickhouse_connect.driver.client import Client

HEADER = "driftline-seq"
"""Kafka header key; the value is b"<sender> <number>" (ASCII)."""

_SENDER = re.compile(rb"[A-Za-z0-9._:/@-]{1,128}")
_MAX_NUMBER = (1 << 64) - 1


def new_sender_id() -> str:
    """One id per logger instance: host and pid (for the operator reading `db status`) plus a random part."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:60] or "host"
    return f"{host}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


def header_value(sender: str, number: int) -> bytes:
    return b"%s %d" % (sender.encode(), number)


def parse(value: bytes | None) -> tuple[str, int] | None:
    """(sender, number) from a header value, or None for anything not written by `header_value`.

    Headers come from any producer, so a malformed one is not an error: its event is simply not counted.
    """
    if not value or len(value) > 160:
        return None
    sender, _, number = value.partition(b" ")
    if not number.isdigit() or _SENDER.fullmatch(sender) is None:
        return None
    n = int(number)
    if not 0 < n <= _MAX_NUMBER:
        return None
    return sender.decode(), n


_PER_SENDER = """
    SELECT sender, groupBitmapMerge(numbers) AS stored, bitmapMax(groupBitmapMergeState(numbers)) AS highest,
           min(first_seen) AS first, max(last_seen) AS last
    FROM sender_sequences GROUP BY sender"""


@dataclass(frozen=True)
class SenderGap:
    sender: str
    stored: int  # distinct sequence numbers stored (as rows or dead letters)
    highest: int  # the highest number stored
    first_seen: str
    last_seen: str

    @property
    def missing(self) -> int:
        """Numbers below the highest that were never stored: events lost (or still in flight)."""
        return self.highest - self.stored


def sender_gaps(client: Client, *, only_missing: bool = True, limit: int = 100) -> list[SenderGap]:
    """Per sender, most recent first: its stored and missing events (only senders missing some, by default)."""
    having = "HAVING highest > stored" if only_missing else ""
    rows = client.query(f"{_PER_SENDER} {having} ORDER BY last DESC LIMIT {{limit:UInt32}}",
                        parameters={"limit": limit}).result_rows
    return [SenderGap(str(s), int(n), int(h), str(f), str(la)) for s, n, h, f, la in rows]


def missing_total(client: Client) -> tuple[int, int]:
    """(senders on record, events they sent that were never stored), for /metrics."""
    senders, missing = client.query(f"SELECT count(), sum(highest - stored) FROM ({_PER_SENDER})").result_rows[0]
    return int(senders), int(missing or 0)
