"""`PredictionLogger`: what a model service calls to send Driftline its events.

It writes the v1 contracts exactly (the same msgspec types the collector
decodes), keys predictions by model so one model's events stay ordered in
one partition, and checks names before sending so that a typo fails in the
model service, where it can be fixed, rather than as a dead letter.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping

from driftline.contracts import (
    ContractError,
    EventKind,
    EventValidator,
    LabelEvent,
    MetricEvent,
    PredictionEvent,
    encode_event,
)


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
        features: Mapping[str, float | int | str | None],
        prediction: float | int | str,
        *,
        model_version: str = "1",
        proba: Mapping[str, float] | None = None,
        latency_ms: float | None = None,
        event_id: str | None = None,
        ts: dt.datetime | None = None,
    ) -> str:
        """Send one prediction; returns its event_id (keep it to send the label later)."""
        event_id = event_id or uuid.uuid4().hex
        event = PredictionEvent(
            event_id=event_id,
            model=model,
            model_version=model_version,
            ts=ts or dt.datetime.now(dt.timezone.utc),
            features={k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v) for k, v in features.items()},
            prediction=float(prediction) if isinstance(prediction, int) and not isinstance(prediction, bool) else prediction,
            proba=dict(proba) if proba is not None else None,
            latency_ms=latency_ms,
        )
        self._send(EventKind.PREDICTION, event, model)
        return event_id

    def log_label(self, model: str, event_id: str, label: float | int | str, *, ts: dt.datetime | None = None) -> None:
        """Send the ground truth for an earlier prediction."""
        value = float(label) if isinstance(label, int) and not isinstance(label, bool) else label
        self._send(EventKind.LABEL, LabelEvent(event_id=event_id, model=model, ts=ts or dt.datetime.now(dt.timezone.utc), label=value), model)

    def log_metrics(self, model: str, instance: str, metrics: Mapping[str, float], *, ts: dt.datetime | None = None) -> None:
        """Send infrastructure metrics (latency, rps, errors, cpu, memory, ...) of one instance."""
        event = MetricEvent(model=model, instance=instance, ts=ts or dt.datetime.now(dt.timezone.utc),
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


__all__ = ["PredictionLogger", "ContractError"]
