"""A new model version in the stream: the old version's alerts resolve, and the new version is compared with its own
reference (`reference: {upload: train, per_version: true}`), not with the old one's."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

import numpy as np
import pandas as pd

from alerts.evaluate import Evaluator
from collector.replay import write_events
from detectors.reference import upload
from detectors.run import run_stage
from driftline.contracts import EventKind, PredictionEvent, encode_event
from tests.integration.alerting import UTC, alert_config, hour, registry_of, tag

DAY = dt.datetime(2026, 6, 2, tzinfo=UTC)


def sample(rng: np.random.Generator, n: int, x1_mean: float) -> pd.DataFrame:
    return pd.DataFrame({"x1": rng.normal(x1_mean, 1.0, n), "x2": rng.normal(10.0, 2.0, n),
                         "c": rng.choice(["web", "app", "store"], n)})


@pytest.mark.slow
def test_new_version_resolves_old_alerts_and_uses_its_own_reference(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"ver-{tag()}"
    registry = registry_of(name, reference={"upload": "train", "per_version": True},
                           drift={"min_rows": 100, "prediction": False, "target": False,
                                  "methods": {"numeric": "ks", "categorical": "chisquare"}})
    model = registry.get(name)
    rng = np.random.default_rng(3)
    sample(rng, 2000, 0.0).to_csv(tmp_path / "v1.csv", index=False)  # version 1 trained on x1 around 0
    sample(rng, 2000, 3.0).to_csv(tmp_path / "v2.csv", index=False)  # version 2 retrained on x1 around 3
    upload(store, model, "train", tmp_path / "v1.csv", show_progress=False, model_version="1")
    upload(store, model, "train", tmp_path / "v2.csv", show_progress=False, model_version="2")

    # Hours 0-1: version 1 sees x1 around 3 (drift). Hour 2 on: version 2, same data, which is what it trained on.
    events = []
    for h, version in ((0, "1"), (1, "1"), (2, "2"), (3, "2")):
        frame = sample(rng, 600, 3.0)
        for i, row in enumerate(frame.itertuples(index=False)):
            events.append(encode_event(PredictionEvent(
                event_id=f"{name}-{h}-{i}", model=name, model_version=version,
                ts=hour(DAY, h).start + dt.timedelta(seconds=5 * i + 1),
                features={"x1": row.x1, "x2": row.x2, "c": row.c}, prediction=0.0)))
    assert write_events(store, EventKind.PREDICTION, events, source=name)[1] == 0

    config = alert_config(name, channels={f"owners-{name}": {"type": "email", "to": ["o@example.com"],
                                                            "attach_report": False}},
                          rules=[{"name": "x1-drift", "when": {"feature_drift": {"features": ["x1"]}},
                                  "for": 1, "clear_for": 3}])
    evaluator = Evaluator(store, registry, config, catchup_windows=24)
    queued = []
    for h in range(4):
        assert run_stage(store, model, hour(DAY, h), "drift").status == "ok"
        queued += evaluator.evaluate(name, now=hour(DAY, h).end + dt.timedelta(minutes=1)).queued

    verdicts = store.query(
        "SELECT toHour(window_start), model_version, drifted FROM drift_results FINAL WHERE model = {m:String} "
        "AND column = 'x1' ORDER BY window_start", parameters={"m": name}).result_rows
    assert verdicts == [(0, "1", 1), (1, "1", 1), (2, "2", 0), (3, "2", 0)]

    events_ = store.query("SELECT event, model_version, detail FROM alert_events WHERE model = {m:String} "
                          "AND event IN ('fired', 'resolved') ORDER BY at, event", parameters={"m": name}).result_rows
    assert events_ == [("fired", "1", ""), ("resolved", "1", "model version 2 replaced 1")]
    assert [(d.event, d.kind) for d in queued] == [("firing", "email"), ("resolved", "email")]
    states = store.query("SELECT model_version, status FROM alert_states FINAL WHERE model = {m:String} "
                         "ORDER BY model_version", parameters={"m": name}).result_rows
    assert states == [("1", "inactive"), ("2", "inactive")]
