"""`PredictionLogger`: what a model service calls to send Driftline its events.

It writes the v1 contracts exactly (the same msgspec types the collector
decodes), keys predictions by model so one model's events stay ordered in
one partition, and checks names before sending so that a typo fails in the
model service, where it can be fixed, rather than as a dead letter.

Values come straight from models and frames: numpy and pandas scalars
(integers, floats, bool_, NaN/NA/None, Timestamp) are converted by
`driftline.values` (NaN and NA are null; proba classes take their text form,
so `model.classes_` can key `proba` as they are).

Delivery: every event stays in a bounded in-memory spool until the broker
acknowledges it (acks=all). A send that fails (the broker restarted, was
unreachable past kafka-python's own retries, the topic was missing for a
moment) is sent again from the spool by a background thread until it is
acknowledged, so a broker that comes back gets every event. `flush()` and
`close()` return how many events are still unacknowledged when their timeout
ends, and then call `on_error` with a `DeliveryError` or, without a callback,
raise it: nothing fails silently. What the spool cannot cover: an event the
broker acknowledged and then lost (an in-memory broker killed before the
collector stored it). Each event carries its logger's sequence number in a
Kafka header (`driftline.sequences`), so Driftline counts those exactly
(`db status`, /metrics; docs/operations.md: Restarts and delivery).
Retried events may arrive out of order, and an event whose first attempt
failed after the broker wrote it can be stored twice (at least once, from
this side).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from driftline.contracts import (
    ContractError,
    EventKind,
    EventValidator,
    LabelEvent,
    MetricEvent,
    PredictionEvent,
    encode_event,
)
from driftline.sequences import HEADER, header_value, new_sender_id
from driftline.values import class_name, plain, timestamp

log = logging.getLogger(__name__)

DEFAULT_SPOOL_EVENTS = 100_000
DEFAULT_REPLACE_AFTER_S = 15.0


class DeliveryError(RuntimeError):
    """Events the broker has not acknowledged: `undelivered` of them, still spooled (flush) or dropped (close)."""

    def __init__(self, undelivered: int, message: str, last_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.undelivered = undelivered
        self.last_error = last_error


class PredictionLogger:
    """Logs predictions, labels and metrics to Kafka. Thread-safe (kafka-python's producer is).

    `spool_events` bounds the unacknowledged events kept for resending (a send past it raises
    `DeliveryError` at once, rather than growing without bound while the broker is away);
    `retry_backoff_s` is the pause between resends of failed events; `replace_after_s`: when an event has
    waited this long on the current Kafka producer (failing, or never answered), it is replaced by a new one
    (a producer that met several broker restarts can stay stuck on stale connections or metadata, every
    send to one partition expiring while others are acknowledged, where a new one is answered at once); `on_error(DeliveryError)`,
    if given, is called instead of raising when `flush()`/`close()` end with undelivered events.
    `sender` is this logger's id in `driftline db status` (host/pid/random), where events it sent and
    Driftline never stored are counted.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_predictions: str = "predictions",
        topic_labels: str = "labels",
        topic_metrics: str = "metrics",
        spool_events: int = DEFAULT_SPOOL_EVENTS,
        retry_backoff_s: float = 0.5,
        replace_after_s: float = DEFAULT_REPLACE_AFTER_S,
        on_error: Callable[[DeliveryError], None] | None = None,
        **producer_config: object,
    ) -> None:
        from kafka import KafkaProducer

        config: dict[str, object] = {"acks": "all", "linger_ms": 20, "retries": 5}
        config.update(producer_config)
        self._new_producer = lambda: KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), **config)
        self._producer = self._new_producer()
        self._topics = {EventKind.PREDICTION: topic_predictions, EventKind.LABEL: topic_labels, EventKind.METRIC: topic_metrics}
        self._validators = {kind: EventValidator(kind, max_event_bytes=1 << 30) for kind in EventKind}
        self._spool_events = spool_events
        self._retry_backoff_s = retry_backoff_s
        self._replace_after_s = replace_after_s
        # seq -> when it began waiting on the current producer (its first attempt or failure there), until acked
        self._waiting_since: dict[int, float] = {}
        self.replaced = 0  # producers replaced (informational, and for tests)
        self._on_error = on_error
        self._lock = threading.Condition()
        self._unacked: dict[int, tuple[str, bytes, bytes]] = {}  # seq -> (topic, key, payload), until acked
        self._failed: deque[int] = deque()  # seqs whose last attempt failed, waiting for a resend
        self._seq = 0  # the last sequence number given; sent in each event's header (driftline.sequences)
        self.sender = new_sender_id()
        self._last_error: BaseException | None = None
        self.resent = 0  # attempts after a failure (informational, and for tests)
        self._closed = False
        self._retrier = threading.Thread(target=self._retry_loop, name="prediction-logger-retry", daemon=True)
        self._retrier.start()

    @property
    def unacknowledged(self) -> int:
        """Events sent or waiting to be resent that the broker has not acknowledged yet."""
        with self._lock:
            return len(self._unacked)

    def _send(self, kind: EventKind, event: PredictionEvent | LabelEvent | MetricEvent, key: str) -> None:
        payload = encode_event(event)
        self._validators[kind].validate(payload)  # raises ContractError before anything is sent
        with self._lock:
            if self._closed:
                raise DeliveryError(1, "this PredictionLogger is closed")
            if len(self._unacked) >= self._spool_events:
                raise DeliveryError(1, f"{len(self._unacked)} events are waiting for the broker to acknowledge them "
                                       f"(spool_events={self._spool_events}); this event was not sent",
                                    self._last_error)
            self._seq += 1
            seq = self._seq
            self._unacked[seq] = (self._topics[kind], key.encode(), payload)
        self._attempt(seq)

    def _attempt(self, seq: int) -> bool:
        """Send one spooled event; its future acknowledges it or queues it for the retry thread.

        False when the send itself failed (it can block for max_block_ms first): the caller should not
        try more sends on this producer now."""
        with self._lock:
            entry = self._unacked.get(seq)
            if entry is not None:
                self._waiting_since.setdefault(seq, time.monotonic())
        if entry is None:
            return True
        topic, key, payload = entry
        try:
            future = self._producer.send(topic, key=key, value=payload,
                                         headers=[(HEADER, header_value(self.sender, seq))])
        except Exception as exc:  # no metadata within max_block_ms, buffer full, producer closed...
            self._failed_attempt(seq, exc)
            return False
        future.add_callback(lambda _meta: self._acked(seq))
        future.add_errback(lambda exc: self._failed_attempt(seq, exc))
        return True

    def _acked(self, seq: int) -> None:
        with self._lock:
            self._waiting_since.pop(seq, None)
            self._unacked.pop(seq, None)
            self._lock.notify_all()

    def _failed_attempt(self, seq: int, exc: BaseException) -> None:
        with self._lock:
            if seq not in self._unacked:
                return
            if self._last_error is None or type(exc) is not type(self._last_error):
                log.warning("send failed; the event stays spooled and is sent again",
                            extra={"error": str(exc), "error_type": type(exc).__name__,
                                   "unacknowledged": len(self._unacked)})
            self._last_error = exc
            self._waiting_since.setdefault(seq, time.monotonic())
            self._failed.append(seq)
            self._lock.notify_all()

    def _retry_loop(self) -> None:
        """Resend failed events after a pause, until each is acknowledged (or the logger is closed).

        It also wakes once a second without failures: a producer can hold events with neither an
        acknowledgement nor an error (waiting on a broker that refuses its producer id), and only the
        age of those events tells that it is stuck."""
        while True:
            with self._lock:
                if not self._failed and not self._closed:
                    self._lock.wait(1.0)
                if self._closed:
                    return
                failed = bool(self._failed)
            if failed:
                time.sleep(self._retry_backoff_s)
            self._replace_broken_producer()
            with self._lock:
                due, self._failed = list(self._failed), deque()
            for i, seq in enumerate(due):
                self.resent += 1
                if not self._attempt(seq):
                    # A send that failed by itself (no metadata within max_block_ms) fails the same way for the
                    # rest, each after blocking as long: queue them again and go back to checking the producer,
                    # or thousands of spooled events would hold off its replacement for hours.
                    with self._lock:
                        self._failed.extend(due[i + 1:])
                    break

    def _replace_broken_producer(self) -> None:
        """A producer in a fatal state fails every send from then on, and one stuck after a broker restart
        (an event unacknowledged on it for `replace_after_s`: failing, or never answered) may never
        recover: start a new one.

        kafka-python's idempotent producer (its default) goes fatal when a restarted broker refuses its
        producer id (`InitProducerIdResponse` error against a new in-memory tansu): without this, every
        later event would fail. The clock is per event, not "since the last acknowledgement": a producer
        stuck on one partition's stale metadata keeps being acknowledged on the others. The private
        `_transaction_manager` is read because kafka-python exposes the state nowhere else; a version
        without it simply never replaces its producer for that reason.
        """
        manager = getattr(self._producer, "_transaction_manager", None)
        fatal = manager is not None and manager.has_fatal_error()
        with self._lock:
            oldest = min(self._waiting_since.values(), default=None)
        stalled = oldest is not None and time.monotonic() - oldest > self._replace_after_s
        if not fatal and not stalled:
            return
        log.warning("the Kafka producer " + ("failed fatally" if fatal else
                    f"left an event unacknowledged for {self._replace_after_s:.0f}s")
                    + "; starting a new one for the spooled events",
                    extra={"error": str(manager.last_error) if fatal else str(self._last_error),
                           "unacknowledged": self.unacknowledged})
        try:
            fresh = self._new_producer()
        except Exception as exc:  # the broker is still away (no bootstrap connection): try again next round
            log.debug("could not start a new producer yet", extra={"error": type(exc).__name__})
            return
        with self._lock:
            self._waiting_since.clear()  # the new producer gets its own replace_after_s
        self.replaced += 1
        broken, self._producer = self._producer, fresh
        threading.Thread(target=_discard, args=(broken,), name="prediction-logger-close", daemon=True).start()

    def _report(self, undelivered: int, what: str) -> int:
        if undelivered:
            error = DeliveryError(undelivered, f"{undelivered} events not acknowledged by the broker {what}"
                                  + (f" (last error: {type(self._last_error).__name__}: {self._last_error})"
                                     if self._last_error else ""), self._last_error)
            log.error(str(error), extra={"undelivered": undelivered})
            if self._on_error is None:
                raise error
            self._on_error(error)
        return undelivered

    def log_prediction(
        self,
        model: str,
        features: Mapping[str, Any],
        prediction: Any,
        *,
        model_version: str = "1",
        proba: Mapping[Any, Any] | None = None,
        latency_ms: float | None = None,
        event_id: str | None = None,
        ts: Any = None,
    ) -> str:
        """Send one prediction; returns its event_id (keep it to send the label later)."""
        event_id = event_id or uuid.uuid4().hex
        event = PredictionEvent(
            event_id=event_id,
            model=model,
            model_version=model_version,
            ts=_ts(ts),
            features={k: plain(v) for k, v in features.items()},
            prediction=_output(prediction, "prediction"),
            proba=_proba(proba),
            latency_ms=plain(latency_ms),
        )
        self._send(EventKind.PREDICTION, event, model)
        return event_id

    def log_frame(self, model: str, frame: Any, *, prediction: str = "prediction", proba_prefix: str = "proba_",
                  label: str | None = None, features: Sequence[str] | None = None, ts: str | None = None,
                  model_version: str = "1") -> list[str]:
        """Send each row of a pandas DataFrame as a prediction (and its label, with `label`); returns the event ids.

        The frame's own columns and dtypes are sent as they are (numpy numbers, 1.0 labels, bools): the
        collector reads them the way the reference upload does, so a frame logged here and the same frame
        uploaded as the reference agree. Features: every column but the prediction, `proba_prefix<class>`,
        label and ts columns, unless listed. A missing value (NaN, None, NaT) is sent as missing.
        """
        import pandas as pd

        columns = [str(c) for c in frame.columns]
        if prediction not in columns:
            raise ValueError(f"no prediction column {prediction!r} in the frame (columns: {', '.join(columns)})")
        proba_columns = {c[len(proba_prefix):]: c for c in columns if c.startswith(proba_prefix) and c != proba_prefix}
        outputs = {prediction, label, ts, *proba_columns.values()}
        names = list(features) if features is not None else [c for c in columns if c not in outputs]
        missing = [c for c in (*names, label, ts) if c is not None and c not in columns]
        if missing:
            raise ValueError(f"column(s) {', '.join(map(repr, missing))} not in the frame")
        ids = []
        for row in frame.to_dict("records"):
            def value(column: str, row: dict[str, Any] = row) -> Any:
                v = row[column]
                return None if v is None or (pd.api.types.is_scalar(v) and pd.isna(v)) else v

            event_id = self.log_prediction(
                model, {name: value(name) for name in names}, value(prediction), model_version=model_version,
                proba={cls: value(c) for cls, c in proba_columns.items()} or None,
                ts=value(ts) if ts else None)
            if label is not None and value(label) is not None:
                self.log_label(model, event_id, value(label), ts=value(ts) if ts else None)
            ids.append(event_id)
        return ids

    def log_label(self, model: str, event_id: str, label: Any, *, ts: Any = None) -> None:
        """Send the ground truth for an earlier prediction."""
        self._send(EventKind.LABEL, LabelEvent(event_id=event_id, model=model, ts=_ts(ts),
                                               label=_output(label, "label")), model)

    def log_metrics(self, model: str, instance: str, metrics: Mapping[str, float], *, ts: Any = None) -> None:
        """Send infrastructure metrics (latency, rps, errors, cpu, memory, ...) of one instance."""
        event = MetricEvent(model=model, instance=instance, ts=_ts(ts),
                            metrics={k: float(v) for k, v in metrics.items()})
        self._send(EventKind.METRIC, event, model)

    def flush(self, timeout: float | None = None) -> int:
        """Wait until every event is acknowledged; returns how many are not when `timeout` ends (0: all sent).

        Events still unacknowledged stay spooled (and keep being resent); they are reported through
        `on_error`, or raised as `DeliveryError` without one.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._producer.flush(timeout=timeout)
        except Exception as exc:  # kafka-python raises KafkaTimeoutError when its flush times out
            log.debug("producer flush ended early", extra={"error": type(exc).__name__})
        with self._lock:
            while self._unacked and (deadline is None or time.monotonic() < deadline):
                self._lock.wait(0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic())))
            undelivered = len(self._unacked)
        return self._report(undelivered, f"within the flush timeout ({timeout}s); they stay spooled")

    def close(self, timeout: float | None = None) -> int:
        """Flush (within `timeout`), stop resending and close; returns the events dropped unacknowledged."""
        try:
            undelivered = self.flush(timeout)
        except DeliveryError as exc:
            undelivered = exc.undelivered
            raised: DeliveryError | None = exc
        else:
            raised = None
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        try:
            self._producer.close(timeout=0 if undelivered else timeout)
        except Exception as exc:  # kafka-python's close flushes and raises when that times out; reported below
            log.debug("producer close ended early", extra={"error": type(exc).__name__})
        if raised is not None:
            raise DeliveryError(undelivered, f"{undelivered} events were not acknowledged by the broker and are "
                                f"lost: the logger closed", raised.last_error) from raised
        return undelivered

    def __enter__(self) -> "PredictionLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _discard(producer: Any) -> None:
    """Stop a replaced producer for good: its pending sends fail (so their events are sent again by the new one).

    `close(timeout=0)` alone raises from its flush while sends are pending and leaves the producer's I/O
    thread running, retrying and calling back into the logger for ever.
    """
    sender = getattr(producer, "_sender", None)
    try:
        if sender is not None:
            sender.force_close()  # aborts the batches still in the accumulator: their errbacks requeue the events
            sender.join(5)
        producer.close(timeout=0)
    except Exception as exc:  # closing a broken producer is best effort; its events are requeued either way
        log.debug("closing a replaced producer failed", extra={"error": type(exc).__name__})


def _ts(ts: Any) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) if ts is None else timestamp(ts)


def _output(value: Any, what: str) -> bool | float | str:
    """A prediction or label as the contract takes it; a missing one is refused here, not dead-lettered later."""
    out = plain(value)
    if out is None:
        raise ContractError("contract", f"{what} is missing (None, NaN or NA); send the model's output")
    return out


def _proba(proba: Mapping[Any, Any] | None) -> dict[str, float] | None:
    """Class -> probability with classes in their text form (numpy ints from `model.classes_` included)."""
    if proba is None:
        return None
    out = {}
    for cls, p in proba.items():
        value = plain(p)
        if value is None or type(value) is not float:
            raise ContractError("contract", f"proba[{cls!r}] must be a number, got {p!r}")
        out[class_name(cls, what="proba class")] = value
    return out


__all__ = ["PredictionLogger", "ContractError", "DeliveryError"]
