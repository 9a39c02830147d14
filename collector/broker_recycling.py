"""Keeping the embedded default's broker a buffer, not a store: swap it for an empty one when it grows.

Why: the local broker (tansu, memory storage) keeps every event it was ever sent, and serves fetches more
slowly as its log grows; at 17,700 events/s the collector fell behind for good after about 6 minutes
(docs/evidence.md). Kafka's answers, retention and the DeleteRecords API, are not there: tansu 0.6.0
implements DeleteRecords as `todo!()` in its memory and SQLite engines (the connection drops) and has no
retention. What remains is to drop the whole log once nothing in it is needed:

1. the gate holds new produce requests (collector/produce_gate.py), so the log end stops moving;
2. the collector reads every partition to that end, until polls come back empty, and commits it all;
3. a new, empty broker starts behind the gate (the topics created), the old one is killed;
4. the gate lets produce requests through again; those it held are resent by their producers.
The collector meets the new broker as a new incarnation of each partition (new topic ids), which it already
handles after any broker restart (collector/incarnations.py): stored offsets go on from the old log's end,
and the loss it records is the old log's unread events, zero here. If step 2 does not finish (the store is
failing, a stop began) nothing is swapped: the gate opens and the next check tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from collector.local_broker import LocalBroker
from driftline import metrics

log = logging.getLogger(__name__)

CHECK_EVERY_S = 2.0
DRAIN_TIMEOUT_S = 30.0


class BrokerRecycling:
    """When the local broker is due for replacement, and the replacement itself around the collector's drain."""

    def __init__(self, broker: LocalBroker, topics: list[str], partitions: int, max_mb: float) -> None:
        self.broker, self.topics, self.partitions, self.max_mb = broker, topics, partitions, max_mb
        self.replaced = 0
        self._next_check = time.monotonic() + CHECK_EVERY_S

    def due(self) -> bool:
        """True when the broker's memory passed `max_mb` (read every CHECK_EVERY_S at most)."""
        now = time.monotonic()
        if self.max_mb <= 0 or now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY_S
        memory = self.broker.memory_mb()
        if memory is not None:
            metrics.LOCAL_BROKER_MEMORY.set(memory * 2**20)
        return memory is not None and memory > self.max_mb

    def run(self, drain: Callable[[float], bool]) -> bool:
        """Hold produce, let `drain` read and commit everything, swap the broker, release; True if swapped."""
        started = last = time.monotonic()
        memory = self.broker.memory_mb()
        steps: dict[str, float] = {}

        def lap(step: str) -> None:
            nonlocal last
            now = time.monotonic()
            steps[step], last = round(now - last, 3), now

        try:
            if not self.broker.hold_produce():
                log.warning("local broker not replaced: it did not answer every produce request it was given")
                return False
            lap("hold_s")
            if not drain(DRAIN_TIMEOUT_S):
                log.warning("local broker not replaced: the collector could not read and commit all it holds; "
                            "trying again later", extra={"memory_mb": memory})
                return False
            lap("drain_s")
            try:
                self.broker.replace(self.topics, self.partitions)
            except Exception:  # a broker that would not start: keep collecting from the old one, try again later
                log.exception("local broker not replaced: the new one did not start")
                return False
            lap("replace_s")
        finally:
            self.broker.release()
        self.replaced += 1
        metrics.LOCAL_BROKER_REPLACEMENTS.inc()
        log.info("local broker replaced by an empty one: everything it held was committed",
                 extra={"memory_mb_before": round(memory or 0), "produce_held_s": round(time.monotonic() - started, 3),
                        "replacements": self.replaced, **steps})
        return True
