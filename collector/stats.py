"""The collector's own counters: throughput, lag and dead letters.

Per batch they are also persisted in `ingest_batches` (by the checkpoint), so
Grafana can chart them from ClickHouse; this object is the live view for
logs, the progress line of `driftline up` and Prometheus (`driftline.metrics`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from collector.batch import Batch, DeadLetter
from driftline import metrics


@dataclass
class CollectorStats:
    started: float = field(default_factory=time.monotonic)
    consumed: int = 0
    inserted: int = 0
    dead_lettered: int = 0
    batches: int = 0
    store_errors: int = 0
    last_flush_ms: float = 0.0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    dead_letters_by_kind: Counter[str] = field(default_factory=Counter)
    inserted_by_topic: Counter[str] = field(default_factory=Counter)
    kinds: dict[str, str] = field(default_factory=dict)  # topic -> event kind, for the Prometheus labels
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_batch(self, batch: Batch, rejected: list[DeadLetter], flush_ms: float) -> None:
        with self._lock:
            self.batches += 1
            self.last_flush_ms = flush_ms
            for (topic, _), (events, dead_letters) in batch.outcome(rejected).items():
                self.inserted += events
                self.inserted_by_topic[topic] += events
                self.dead_lettered += dead_letters
            for letter in batch.dead_letters + rejected:
                self.dead_letters_by_kind[letter.error_kind] += 1
        metrics.batch_written(batch, rejected, self.kinds, flush_seconds=flush_ms / 1000)

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            elapsed = max(time.monotonic() - self.started, 1e-9)
            return {
                "consumed": self.consumed,
                "inserted": self.inserted,
                "dead_lettered": self.dead_lettered,
                "batches": self.batches,
                "store_errors": self.store_errors,
                "events_per_s": round((self.inserted + self.dead_lettered) / elapsed, 1),
                "lag": sum(self.lag.values()),
                "last_flush_ms": round(self.last_flush_ms, 1),
                "inserted_by_topic": dict(self.inserted_by_topic),
                "dead_letters_by_kind": dict(self.dead_letters_by_kind),
            }
