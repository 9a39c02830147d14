"""Performance metrics computed in ClickHouse equal scikit-learn's on the same predictions and labels.

Predictions go through the collector's path, labels too (one label corrected
later: the latest one counts), the reference comes with its labels from an
upload; binary, multiclass and regression tasks each.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from collector.replay import write_events
from detectors.config import registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sources import Window
from driftline.contracts import EventKind, LabelEvent, PredictionEvent, encode_event
from driftline.yamlfile import LocatedYaml

WINDOW = Window(dt.datetime(2026, 8, 3, 14, tzinfo=dt.timezone.utc), dt.datetime(2026, 8, 3, 15, tzinfo=dt.timezone.utc))
N = 1500


def classification(rng: np.random.Generator, classes: list[str], accuracy: float):  # type: ignore[no-untyped-def]
    y = rng.choice(classes, N)
    proba = rng.dirichlet(np.ones(len(classes)), N)
    correct = rng.random(N) < accuracy
    # Put the largest probability on the predicted class.
    pred = np.where(correct, y, rng.choice(classes, N))
    for i, p in enumerate(pred):
        j = classes.index(p)
        top = proba[i].argmax()
        proba[i, [j, top]] = proba[i, [top, j]]
    return y, pred, proba


def load(client, model, y, pred, proba, classes, tmp_path: Path, regression: bool = False) -> None:  # type: ignore[no-untyped-def]
    ref = pd.DataFrame({"x": np.arange(N, dtype=float), "prediction": pred, "label": y})
    if proba is not None:
        for j, c in enumerate(classes):
            ref[f"proba_{c}"] = proba[:, j]
    ref.to_csv(tmp_path / "ref.csv", index=False)
    upload(client, model, "train", tmp_path / "ref.csv", show_progress=False)
    step = (WINDOW.end - WINDOW.start) / (N + 1)
    preds, labels = [], []
    for i in range(N):
        ts = WINDOW.start + step * (i + 1)
        out = float(pred[i]) if regression else str(pred[i])
        probs = {c: float(proba[i, j]) for j, c in enumerate(classes)} if proba is not None else None
        preds.append(encode_event(PredictionEvent(event_id=f"{model.name}-{i}", model=model.name, model_version="1",
                                                  ts=ts, features={"x": float(i)}, prediction=out, proba=probs)))
        truth = float(y[i]) if regression else str(y[i])
        if i == 0:  # a wrong label first, corrected later: the latest label counts
            wrong = truth + 1000.0 if regression else "wrong"
            labels.append(encode_event(LabelEvent(event_id=f"{model.name}-{i}", model=model.name, ts=ts, label=wrong)))
        labels.append(encode_event(LabelEvent(event_id=f"{model.name}-{i}", model=model.name,
                                              ts=ts + dt.timedelta(minutes=1), label=truth)))
    assert write_events(client, EventKind.PREDICTION, preds, source=f"perf-{model.name}")[1] == 0
    assert write_events(client, EventKind.LABEL, labels, source=f"perf-{model.name}-labels")[1] == 0


def spec(name: str, task: str, **extra: object):  # type: ignore[no-untyped-def]
    model = {"name": name, "task": task, "features": {"x": "numeric"}, "reference": {"upload": "train"},
             "performance": {"min_rows": 100}} | extra
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [model]})).models[0]


def metrics_of(client, name: str) -> dict[str, tuple[float, float, float | None, float | None, str, int]]:  # type: ignore[no-untyped-def]
    rows = client.query("SELECT metric, value, baseline, ci_low, ci_high, status, labelled_rows FROM performance_results "
                        "FINAL WHERE model = {m:String} AND segment = ''", parameters={"m": name}).result_rows
    return {r[0]: r[1:] for r in rows}


def test_binary_metrics_equal_sklearn(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    name = f"perf-bin-{uuid.uuid4().hex[:6]}"
    model = spec(name, "binary_classification", positive_label="1")
    y, pred, proba = classification(rng, ["0", "1"], 0.8)
    load(store, model, y, pred, proba, ["0", "1"], tmp_path)
    assert run_stage(store, model, WINDOW, "performance").status == "ok"
    got = metrics_of(store, name)
    pos = proba[:, 1]
    want = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, pos_label="1"),
        "recall": skm.recall_score(y, pred, pos_label="1"),
        "f1": skm.f1_score(y, pred, pos_label="1"),
        "roc_auc": skm.roc_auc_score(y == "1", pos),
        "log_loss": skm.log_loss(y, proba, labels=["0", "1"]),
    }
    for metric, value in want.items():
        v, baseline, lo, hi, status, labelled = got[metric]
        assert v == pytest.approx(value, rel=1e-9), metric
        assert baseline == pytest.approx(value, rel=1e-9), metric  # the reference is the same sample
        assert labelled == N and status == "ok"
        if lo is not None:
            assert lo < v < hi
    assert got["f1"][2] is None  # no closed-form interval for F1


def test_multiclass_metrics_equal_sklearn(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    name = f"perf-multi-{uuid.uuid4().hex[:6]}"
    classes = ["cat", "dog", "owl"]
    model = spec(name, "multiclass_classification")
    y, pred, proba = classification(rng, classes, 0.7)
    load(store, model, y, pred, proba, classes, tmp_path)
    assert run_stage(store, model, WINDOW, "performance").status == "ok"
    got = metrics_of(store, name)
    want = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred, average="macro"),
        "recall": skm.recall_score(y, pred, average="macro"),
        "f1": skm.f1_score(y, pred, average="macro"),
        "log_loss": skm.log_loss(y, proba, labels=classes),
    }
    for metric, value in want.items():
        assert got[metric][0] == pytest.approx(value, rel=1e-9), metric


def test_regression_metrics_equal_sklearn(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(13)
    name = f"perf-reg-{uuid.uuid4().hex[:6]}"
    model = spec(name, "regression", performance={"min_rows": 100, "max_drop": 0.1})
    y = rng.normal(50, 10, N)
    pred = y + rng.normal(0, 3, N)
    load(store, model, y, pred, None, [], tmp_path, regression=True)
    assert run_stage(store, model, WINDOW, "performance").status == "ok"
    got = metrics_of(store, name)
    want = {"mae": skm.mean_absolute_error(y, pred), "rmse": skm.root_mean_squared_error(y, pred),
            "mape": skm.mean_absolute_percentage_error(y, pred), "r2": skm.r2_score(y, pred)}
    for metric, value in want.items():
        v, baseline, lo, hi, status, labelled = got[metric]
        assert v == pytest.approx(value, rel=1e-9), metric
        assert status == "ok" and lo < v < hi
