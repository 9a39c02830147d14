"""Synthetic v1 events for benchmarks, tests and (later) the demo's traffic simulator.

Payloads are built as bytes with msgspec, exactly as `PredictionLogger`
would send them, so a benchmark measures the collector and not the
generator's JSON encoder.
"""

from __future__ import annotations

import datetime as dt
import random

from driftline.contracts import LabelEvent, MetricEvent, PredictionEvent, encode_event

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def prediction_payload(i: int, model: str, n_features: int = 20, rng: random.Random | None = None,
                       categorical_every: int = 10) -> bytes:
    """One prediction; every `categorical_every`-th feature is a category, the rest numbers."""
    rng = rng or random
    features: dict[str, float | str | None] = {}
    for f in range(n_features):
        if categorical_every and f % categorical_every == categorical_every - 1:
            features[f"f{f}"] = rng.choice(("a", "b", "c"))
        else:
            features[f"f{f}"] = round(rng.gauss(0.0, 1.0), 6)
    p = rng.random()
    return encode_event(PredictionEvent(
        event_id=f"{model}-{i}", model=model, model_version="1", ts=EPOCH + dt.timedelta(seconds=i),
        features=features, prediction=round(p, 6), proba={"0": round(1 - p, 6), "1": round(p, 6)},
        latency_ms=round(rng.uniform(1, 20), 3),
    ))


def label_payload(i: int, model: str, rng: random.Random | None = None) -> bytes:
    rng = rng or random
    return encode_event(LabelEvent(event_id=f"{model}-{i}", model=model, ts=EPOCH + dt.timedelta(seconds=i, hours=6),
                                   label=float(rng.random() < 0.5)))


def metric_payload(i: int, model: str, rng: random.Random | None = None) -> bytes:
    rng = rng or random
    return encode_event(MetricEvent(model=model, instance=f"pod-{i % 4}:8080", ts=EPOCH + dt.timedelta(seconds=i),
                                    metrics={"latency_p99_ms": round(rng.uniform(5, 50), 3), "rps": round(rng.uniform(10, 100), 3),
                                             "errors": float(rng.random() < 0.01)}))
