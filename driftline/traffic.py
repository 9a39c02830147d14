"""`driftline simulate`: live traffic of a churn classifier that starts to drift, for the compose stack.

A model service would send these events through `PredictionLogger`; so does
this simulator. For the first `drift_after` seconds the traffic looks like the
training data; after that the `monthly_charges` feature shifts up, the
`contract` mix changes and the model's accuracy falls from 0.9 to 0.65, which
the detectors, the alerts and the dashboards then show. Labels follow each
prediction after `label_delay`; every `metrics_every` seconds each serving
instance reports the four golden signals under the names the service
dashboard reads.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import deque

from driftline.producer import PredictionLogger

log = logging.getLogger(__name__)
INSTANCES = ("churn-api-0:8080", "churn-api-1:8080")


@dataclasses.dataclass(frozen=True)
class TrafficSpec:
    model: str = "demo-churn"
    rate: float = 20.0  # predictions per second
    drift_after_s: float = 600.0
    label_delay_s: float = 60.0
    metrics_every_s: float = 10.0
    duration_s: float | None = None  # None: until stopped
    seed: int = 7


def churn_event(rng: random.Random, drifted: bool) -> tuple[dict[str, float | str], str, dict[str, float], str]:
    """(features, predicted class, class probabilities, true label)."""
    contract = rng.choices(["monthly", "yearly", "two_year"], [0.75, 0.15, 0.10] if drifted else [0.45, 0.30, 0.25])[0]
    features: dict[str, float | str] = {
        "tenure_months": round(max(0.0, rng.gauss(30.0, 15.0)), 1),
        "monthly_charges": round(rng.gauss(95.0 if drifted else 65.0, 15.0), 2),
        "contract": contract,
        "support_calls": float(rng.choices(range(6), [40, 25, 15, 10, 6, 4])[0]),
    }
    label = "1" if rng.random() < (0.45 if drifted else 0.25) else "0"
    right = rng.random() < (0.65 if drifted else 0.9)
    predicted = label if right else ("0" if label == "1" else "1")
    p1 = rng.uniform(0.55, 0.95) if predicted == "1" else rng.uniform(0.05, 0.45)
    return features, predicted, {"0": round(1 - p1, 4), "1": round(p1, 4)}, label


def run(logger: PredictionLogger, spec: TrafficSpec, stop: threading.Event) -> dict[str, int]:
    """Send traffic until `stop` (or `duration_s`); returns how much was sent."""
    rng = random.Random(spec.seed)
    started = time.monotonic()
    pending: deque[tuple[float, str, str]] = deque()  # (due, event_id, label)
    sent = {"predictions": 0, "labels": 0, "metrics": 0}
    next_metrics = started
    gap = 1.0 / spec.rate
    announced = False
    while not stop.is_set():
        now = time.monotonic()
        elapsed = now - started
        if spec.duration_s is not None and elapsed >= spec.duration_s:
            break
        drifted = elapsed >= spec.drift_after_s
        if drifted and not announced:
            log.info("traffic drifts from now on", extra={"model": spec.model, "after_s": round(elapsed)})
            announced = True
        features, predicted, proba, label = churn_event(rng, drifted)
        event_id = logger.log_prediction(spec.model, features, predicted, proba=proba,
                                         latency_ms=round(rng.gauss(45 if drifted else 25, 5), 2))
        pending.append((now + spec.label_delay_s, event_id, label))
        sent["predictions"] += 1
        while pending and pending[0][0] <= now:
            _, due_id, due_label = pending.popleft()
            logger.log_label(spec.model, due_id, due_label)
            sent["labels"] += 1
        if now >= next_metrics:
            for instance in INSTANCES:
                logger.log_metrics(spec.model, instance, {
                    "latency_p99_ms": round(rng.gauss(120 if drifted else 60, 10), 1),
                    "rps": round(spec.rate / len(INSTANCES), 2),
                    "error_rate": round(abs(rng.gauss(0.01, 0.004)), 4),
                    "cpu_utilization": round(min(1.0, abs(rng.gauss(0.55, 0.1))), 3),
                })
                sent["metrics"] += 1
            next_metrics = now + spec.metrics_every_s
        stop.wait(gap)
    logger.flush(timeout=30)
    return sent
