"""`PredictionLogger`: what a model service calls to send Driftline its events.

It writes the v1 contracts exactly (the same msgspec types the collector
decodes), keys predictions by model so one model's events stay ordered in
one partition, and checks names before sending so that a typo fails in the
model service, where it can be fixed, rather than as a dead letter.

Values come straight from models and frames: numpy and pandas scalars
(integers, floats, bool_, NaN/NA/None, Timestamp) are converted by
`driftline.values` (NaN and NA are null; proba classes take their text form,
so `model.classes_` can key `proba` as they are).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
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
from driftline.values import class_name, plain, timestamp


class PredictionLogger:
    """Logs predictions, labels and metrics to Kafka. Thread-safe (kafka-python's producer is)."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_predictions: str = "predictions",
        topic_labels: str = "labels",
        topic_metrics: str = "metrics",
        **producer_config: object,
    ) -> None:
        from kafka import KafkaProducer

        config: dict[str, object] = {"acks": "all", "linger_ms": 20, "retries": 5}
        config.update(producer_config)
        self._producer = KafkaProducer(bootstrap_servers=bootstrap_servers.split(","), **config)
        self._topics = {EventKind.PREDICTION: topic_predictions, EventKind.LABEL: topic_labels, EventKind.METRIC: topic_metrics}
        self._validators = {kind: EventValidator(kind, max_event_bytes=1 << 30) for kind in EventKind}

    def _send(self, kind: EventKind, event: PredictionEvent | LabelEvent | MetricEvent, key: str) -> None:
        payload = encode_event(event)
        self._validators[kind].validate(payload)  # raises ContractError before anything is sent
        self._producer.send(self._topics[kind], key=key.encode(), value=payload)

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

    def log_label(self, model: str, event_id: str, label: Any, *, ts: Any = None) -> None:
        """Send the ground truth for an earlier prediction."""
        self._send(EventKind.LABEL, LabelEvent(event_id=event_id, model=model, ts=_ts(ts),
                                               label=_output(label, "label")), model)

    def log_metrics(self, model: str, instance: str, metrics: Mapping[str, float], *, ts: Any = None) -> None:
        """Send infrastructure metrics (latency, rps, errors, cpu, memory, ...) of one instance."""
        event = MetricEvent(model=model, instance=instance, ts=_ts(ts),
                            metrics={k: float(v) for k, v in metrics.items()})
        self._send(EventKind.METRIC, event, model)

    def flush(self, timeout: float | None = None) -> None:
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        self._producer.close(timeout=timeout)

    def __enter__(self) -> "PredictionLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


__all__ = ["PredictionLogger", "ContractError"]
