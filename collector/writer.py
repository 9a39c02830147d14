"""The writer thread: takes finished batches in order and makes them durable.

Writing runs beside polling: while ClickHouse parses one batch (its C++ code
releases the GIL) the consumer decodes the next. Batches are written strictly
in order by this one thread, so the checkpoint protocol's "everything past
the commit belongs to an unfinished batch" holds. A store outage is retried
with exponential backoff after rolling back the batch's partial writes; the
bounded queue turns a slow store into backpressure on the consumer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from collector.batch import Batch
from collector.checkpoint import Fenced, OffsetStore
from collector.sink import ClickHouseSink, StoreUnavailable
from collector.stats import CollectorStats
from driftline import metrics

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0


@dataclass(frozen=True)
class Committed:
    """Offsets made durable, for the consumer thread to report to Kafka."""

    offsets: dict[tuple[str, int], int]


class BatchWriter:
    def __init__(self, sink: ClickHouseSink, offsets: OffsetStore, stats: CollectorStats, depth: int = 1,
                 guard: Callable[[Batch], None] | None = None) -> None:
        self._sink = sink
        self._guard = guard  # raises Fenced when a batch's partitions belong to another collector now
        self.fenced: Fenced | None = None
        self._offsets = offsets
        self._stats = stats
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=depth)
        self.committed: queue.SimpleQueue[Committed] = queue.SimpleQueue()
        self._stop_retrying = threading.Event()
        self._failed: BaseException | None = None
        self._abandoned = False
        self._thread = threading.Thread(target=self._run, name="driftline-writer", daemon=True)
        self._thread.start()

    # -- called from the consumer thread -------------------------------------

    def full(self) -> bool:
        return self._queue.full()

    def submit(self, batch: Batch, timeout: float | None = None) -> None:
        self._raise_if_failed()
        self._queue.put(batch, timeout=timeout)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted batch is durable; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            self._raise_if_failed()
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float) -> bool:
        """Finish what is queued (within timeout) and stop the thread."""
        done = self.drain(timeout)
        self._stop_retrying.set()
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=5)
        return done

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise RuntimeError("the batch writer stopped") from self._failed

    # -- the thread ------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self._abandoned:
                    continue  # never write past a batch given up on: its offsets would be committed over it
                if not self._write_with_retry(batch):
                    self._abandoned = True
            except BaseException as exc:  # noqa: BLE001 - surfaced to the consumer thread
                self._failed = exc
                log.exception("batch writer failed")
                return
            finally:
                self._queue.task_done()

    def _write_with_retry(self, batch: Batch) -> bool:
        """True once the batch is durable; False if stopping made us give up on it."""
        delay = BACKOFF_START_S
        attempt = 0
        starts = {tp: r.first_offset for tp, r in batch.ranges.items()}
        while True:
            attempt += 1
            started = time.perf_counter()
            guard = (lambda: self._guard(batch)) if self._guard is not None else None
            try:
                if attempt > 1:
                    metrics.WRITE_RETRIES.inc()
                    # Undo whatever the failed attempt wrote before writing the batch again
                    # (only while the partitions are ours: the rows past the offset may be the new owner's).
                    if guard is not None:
                        guard()
                    self._offsets.rollback(starts)
                rejected = self._sink.write(batch, guard)
                flush_ms = (time.perf_counter() - started) * 1000
                if guard is not None:
                    guard()
                self._offsets.commit(batch, rejected, flush_ms)
            except Fenced as exc:
                # A zombie: we stalled long enough for the group to move these partitions. Whatever of the
                # batch we wrote, the new owner rolled back (or will, from the checkpoint we did not write).
                self.fenced = exc
                log.error("fenced: partitions moved to another collector while this batch was being written; "
                          "dropping it and stopping", extra={"partitions": [f"{t}/{p}" for t, p in exc.partitions]})
                return False
            except Exception as exc:
                # A sink outage, or the rollback/checkpoint failing: the same outage seen from another call.
                self._stats.store_errors += 1
                metrics.STORE_ERRORS.inc()
                error = str(exc) if isinstance(exc, StoreUnavailable) else type(exc).__name__
                if self._stop_retrying.is_set() or self._stop_retrying.wait(delay):
                    log.error("stopping with a batch unwritten; it is replayed from the checkpoint at the next start",
                              extra={"attempt": attempt, "error": error})
                    return False
                log.error("ClickHouse write failed, retrying", extra={"attempt": attempt, "retry_in_s": delay, "error": error})
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._stats.record_batch(batch, rejected, flush_ms)
            self.committed.put(Committed({tp: r.next_offset for tp, r in batch.ranges.items()}))
            return True
