"""A model service that logs at a steady rate through PredictionLogger until told to stop (a separate process).

Run as `python -m tests.integration.steady_logger BOOTSTRAP RATE OUT STOPFILE [PROGRESS]`: logs predictions of
two models, alternately, RATE per second, until STOPFILE exists; meanwhile PROGRESS holds the wall time of the
latest acknowledgement (so a test can wait until a new broker acknowledges); then flushes (60 s) and writes OUT: per event
its id, model, the wall time it was logged and the wall time a broker first acknowledged it (so a test
can tell which broker incarnation held it), and what flush/close reported. It never restarts: the broker
behind BOOTSTRAP may come and go meanwhile, which is the point.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from driftline.producer import DeliveryError, PredictionLogger

MODELS = ("fraud", "churn")


def main(bootstrap: str, rate: float, out: Path, stop_file: Path, progress: Path | None = None) -> None:
    errors: list[str] = []
    logger = PredictionLogger(bootstrap, on_error=lambda e: errors.append(str(e)), retry_backoff_s=0.2,
                              replace_after_s=5.0, max_block_ms=2000, request_timeout_ms=2000,
                              delivery_timeout_ms=4000)
    acked_at: dict[int, float] = {}  # sequence number -> first acknowledgement (the logger numbers events 1, 2, ...)
    acked = logger._acked  # noqa: SLF001 - a test harness: the logger has no public per-event acknowledgement

    latest = [0.0]

    def first_ack(seq: int) -> None:
        latest[0] = acked_at.setdefault(seq, time.time())
        acked(seq)

    logger._acked = first_ack  # type: ignore[method-assign]  # noqa: SLF001
    events: list[tuple[str, str, float]] = []
    period = 1.0 / rate
    next_at = time.monotonic()
    i = 0
    while not stop_file.exists():
        model = MODELS[i % len(MODELS)]
        event_id = logger.log_prediction(model, {"amount": float(i % 97), "country": ["DE", "FR", "US"][i % 3]},
                                         i % 2, proba={0: 0.4, 1: 0.6})
        events.append((event_id, model, time.time()))
        i += 1
        if progress is not None and i % max(1, int(rate / 10)) == 0:
            progress.with_suffix(".tmp").write_text(str(latest[0]))
            progress.with_suffix(".tmp").replace(progress)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    undelivered = logger.flush(60)
    logger.close(5)
    out.write_text(json.dumps({"events": [(*e, acked_at.get(i + 1)) for i, e in enumerate(events)],
                               "undelivered": undelivered, "errors": errors,
                               "resent": logger.resent, "producers_replaced": logger.replaced}))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]),
         Path(sys.argv[5]) if len(sys.argv) > 5 else None)
