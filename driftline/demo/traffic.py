"""The demo's traffic: three models logging through `PredictionLogger`, with a healthy phase and an incident phase.

The phases are aligned to the detection windows (the first event is sent at
a window boundary, the incident starts and the traffic ends on one), so each
window the detectors judge is wholly healthy or wholly in the incident:

- `churn-classifier`: the churn traffic of `driftline simulate`
  (`driftline.traffic.churn_event`), and in the incident newer customers too
  (shorter tenure); its accuracy falls from 0.9 to 0.65, which shows only
  once the labels arrive, `LABEL_LAG_S` after each prediction;
- `delivery-eta`: a delivery-time regressor whose traffic never changes;
- `fraud-scorer`: in the incident its feature pipeline loses the join with the
  account store, and two features arrive as null in a third of the events.

`reference_rows` draws each model's training sample from the same healthy
distributions, for `driftline reference upload`.
"""

from __future__ import annotations

import csv
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driftline.demo.config import BROKEN, CLASSIFIER, REGRESSOR
from driftline.producer import PredictionLogger
from driftline.traffic import churn_event

log = logging.getLogger(__name__)

Features = dict[str, float | str | None]
Event = tuple[Features, float | str, dict[str, float] | None, float | str]
"""(features, prediction, class probabilities or None, true label)."""


def classifier_event(rng: random.Random, incident: bool) -> Event:
    features, predicted, proba, label = churn_event(rng, drifted=incident)
    if incident:  # a campaign brings many new customers
        features["tenure_months"] = round(max(0.0, rng.gauss(8.0, 6.0)), 1)
    return features, predicted, proba, label


REGIONS = (("north", 0.3), ("south", 0.25), ("east", 0.2), ("west", 0.15), ("center", 0.1))
REGION_MINUTES = {"north": 2.0, "south": 0.0, "east": 1.0, "west": 3.0, "center": 5.0}


def regressor_event(rng: random.Random, incident: bool) -> Event:
    """Delivery time in minutes; the model's error is the same all along (`incident` changes nothing)."""
    region = rng.choices([r for r, _ in REGIONS], [w for _, w in REGIONS])[0]
    distance = round(abs(rng.gauss(6.0, 3.0)) + 0.5, 2)
    items = float(rng.randint(1, 8))
    hour = float(rng.randint(8, 22))
    expected = 10.0 + 3.2 * distance + 1.5 * items + (8.0 if 17 <= hour <= 19 else 0.0) + REGION_MINUTES[region]
    actual = round(max(5.0, expected + rng.gauss(0.0, 4.0)), 2)
    predicted = round(expected + rng.gauss(0.0, 2.0), 2)
    return {"distance_km": distance, "items": items, "hour_of_day": hour, "region": region}, predicted, None, actual


MERCHANTS = (("grocery", 0.35), ("online", 0.25), ("fuel", 0.15), ("electronics", 0.15), ("travel", 0.1))


def broken_event(rng: random.Random, incident: bool) -> Event:
    """Card transactions; in the incident the account-store join fails for a third of them (nulls)."""
    features: Features = {
        "amount": round(2.718281828 ** rng.gauss(3.5, 1.0), 2),
        "merchant_category": rng.choices([m for m, _ in MERCHANTS], [w for _, w in MERCHANTS])[0],
        "account_age_days": float(round(abs(rng.gauss(700.0, 400.0)))),
        "velocity_1h": float(rng.choices(range(7), [40, 25, 15, 9, 6, 3, 2])[0]),
    }
    if incident and rng.random() < 0.35:
        features["account_age_days"] = None
        features["velocity_1h"] = None
    label = "1" if rng.random() < 0.06 else "0"
    predicted = label if rng.random() < 0.92 else ("0" if label == "1" else "1")
    p1 = rng.uniform(0.6, 0.97) if predicted == "1" else rng.uniform(0.01, 0.4)
    return features, predicted, {"0": round(1 - p1, 4), "1": round(p1, 4)}, label


GENERATORS: dict[str, Callable[[random.Random, bool], Event]] = {
    CLASSIFIER: classifier_event, REGRESSOR: regressor_event, BROKEN: broken_event}
INCIDENT = {CLASSIFIER: "its traffic drifts (its accuracy falls, which the late labels will show)",
            REGRESSOR: "nothing changes (it stays healthy)",
            BROKEN: "its feature pipeline breaks: account_age_days and velocity_1h arrive as null"}


def write_references(folder: Path, rows: int = 2000, seed: int = 11) -> dict[str, Path]:
    """One training sample per model, as CSV (features, prediction, label, proba_<class>); returns the files."""
    rng = random.Random(seed)
    out = {}
    for model, generate in GENERATORS.items():
        path = folder / f"{model}.csv"
        with path.open("w", newline="") as f:
            writer = None
            for _ in range(rows):
                features, predicted, proba, label = generate(rng, False)
                row = {**features, "prediction": predicted, "label": label,
                       **{f"proba_{k}": v for k, v in (proba or {}).items()}}
                if writer is None:
                    writer = csv.DictWriter(f, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
        out[model] = path
    return out


@dataclass(frozen=True)
class Plan:
    rate: float = 20.0  # predictions per second, per model
    window_s: float = 10.0
    healthy_windows: int = 3
    incident_windows: int = 3
    label_lag_s: float = 4.0
    metrics_every_s: float = 5.0
    seed: int = 7

    @property
    def duration_s(self) -> float:
        """From the first prediction to the last label."""
        return (self.healthy_windows + self.incident_windows) * self.window_s + self.label_lag_s


@dataclass
class TrafficStats:
    """What has been sent; read by the progress view while the simulator runs."""

    phase: str = "starting"  # starting, waiting, healthy, incident, labels, done
    predictions: dict[str, int] = field(default_factory=lambda: {m: 0 for m in GENERATORS})
    labels: int = 0
    metrics: int = 0
    started_at: float | None = None  # wall clock of the first prediction
    incident_at: float | None = None
    last_window_end: float | None = None  # wall clock: the end of the last window with traffic
    ended_at: float | None = None  # wall clock of the last label

    @property
    def sent(self) -> int:
        return sum(self.predictions.values()) + self.labels + self.metrics


def _next_boundary(now: float, window_s: float) -> float:
    return (int(now // window_s) + 1) * window_s


def run(logger: PredictionLogger, plan: Plan, stop: threading.Event, stats: TrafficStats,
        on_phase: Callable[[str], None] | None = None) -> TrafficStats:
    """Send the plan's traffic until it is over (or `stop`); labels follow their predictions by `label_lag_s`."""
    rng = random.Random(plan.seed)
    stats.phase = "waiting"
    start = _next_boundary(time.time(), plan.window_s)  # the first window is wholly traffic
    if stop.wait(max(0.0, start - time.time())):
        return stats
    incident_at = start + plan.healthy_windows * plan.window_s
    end = incident_at + plan.incident_windows * plan.window_s
    stats.started_at, stats.last_window_end, stats.phase = start, end, "healthy"
    if on_phase:
        on_phase("healthy")
    pending: deque[tuple[float, str, str, float | str]] = deque()  # (due, model, event_id, label)
    gap = 1.0 / plan.rate
    due = start
    next_metrics = start
    while not stop.is_set():
        now = time.time()
        if now >= end and not pending:
            break
        if now < end:
            incident = now >= incident_at
            if incident and stats.phase == "healthy":
                stats.incident_at, stats.phase = now, "incident"
                if on_phase:
                    on_phase("incident")
            for model, generate in GENERATORS.items():
                features, predicted, proba, label = generate(rng, incident)
                event_id = logger.log_prediction(model, features, predicted, proba=proba,
                                                 latency_ms=round(abs(rng.gauss(30.0, 6.0)), 2))
                pending.append((now + plan.label_lag_s, model, event_id, label))
                stats.predictions[model] += 1
            if now >= next_metrics:
                for model in GENERATORS:
                    logger.log_metrics(model, f"{model}-0:8080", {
                        "latency_p99_ms": round(abs(rng.gauss(60.0, 8.0)), 1), "rps": plan.rate,
                        "error_rate": round(abs(rng.gauss(0.01, 0.003)), 4),
                        "cpu_utilization": round(min(1.0, abs(rng.gauss(0.5, 0.08))), 3)})
                    stats.metrics += 1
                next_metrics = now + plan.metrics_every_s
        elif stats.phase != "labels":
            stats.phase = "labels"
            if on_phase:
                on_phase("labels")
        while pending and pending[0][0] <= now:
            _, model, event_id, label = pending.popleft()
            logger.log_label(model, event_id, label)
            stats.labels += 1
        if now < end:
            due = max(due + gap, now - 0.5)  # keep the rate; after a stall, catch up half a second at most
            wake = min(due, end)
        else:
            wake = pending[0][0] if pending else now
        stop.wait(max(0.0, wake - time.time()))
    logger.flush(timeout=30)
    stats.ended_at = time.time()
    if not stop.is_set():
        stats.phase = "done"
        if on_phase:
            on_phase("done")
    return stats
