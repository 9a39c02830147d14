"""Issue 15, Must-show 4: one value model from a scikit-learn model and pandas frames to the verdicts.

A LogisticRegression trained on a small seeded frame; three models whose references and labels spell the
classes as 1.0/0.0 floats (CSV), "1"/"0" strings (Parquet) and true/false (Parquet booleans), each with a
categorical feature holding floats, a boolean feature and a probability column named by the user
(`y_pred_proba`, declared in the registry). Events come straight from `predict` and `predict_proba` (numpy
scalars) through `PredictionLogger`, the real broker and the collector into chDB. Expected: no dead letters,
performance baselines equal scikit-learn's on the reference frame, and traffic drawn from the reference's
distribution shows no drift and no unseen categories. A reference that contradicts positive_label is refused
with a message naming the column.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression

from collector.loop import Collector
from detectors.config import ModelSpec, registry_from_yaml
from detectors.reference import ReferenceError, upload
from detectors.run import run_stage
from detectors.sources import Window
from driftline.producer import PredictionLogger
from driftline.yamlfile import LocatedYaml
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

WINDOW = Window(dt.datetime(2026, 9, 1, 10, tzinfo=dt.timezone.utc), dt.datetime(2026, 9, 1, 11, tzinfo=dt.timezone.utc))
N_REF = 1000
N_EVENTS = 600
RATES = [0.5, 1.5, 2.5, 10.0]

SPELLINGS = {
    # name: (positive_label as the registry states it, label spelling, reference file type)
    "floats": (1.0, lambda y: float(y), "csv"),
    "strings": ("1", lambda y: str(int(y)), "parquet"),
    "booleans": (True, lambda y: bool(y), "parquet"),
}


def frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Features (numeric x, categorical floats `rate`, boolean `flag`) and a label that depends on all three."""
    x = rng.normal(0.0, 1.0, n)
    rate = rng.choice(RATES, n, p=[0.4, 0.3, 0.2, 0.1])
    flag = rng.random(n) < 0.35
    logit = 1.2 * x + 0.8 * flag - 0.3 * rate + 0.2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return pd.DataFrame({"x": x, "rate": rate, "flag": flag, "y": y})


def inputs(df: pd.DataFrame) -> np.ndarray:
    return df[["x", "rate", "flag"]].to_numpy(dtype=float)


def spec(name: str, positive_label: object) -> ModelSpec:
    model = {"name": name, "task": "binary_classification", "positive_label": positive_label,
             "features": {"x": "numeric", "rate": "categorical", "flag": "categorical"},
             "reference": {"upload": "train", "columns": {"score": "y_pred_proba", "label": "y_true"}},
             "performance": {"metrics": ["accuracy", "roc_auc"], "min_rows": 100},
             "multivariate": {"enabled": False}}
    return registry_from_yaml(LocatedYaml(Path("models.yaml"), {"models": [model]})).models[0]


def write_reference(ref: pd.DataFrame, pred: np.ndarray, score: np.ndarray, spelling: str, path: Path) -> Path:
    _, spell, kind = SPELLINGS[spelling]
    out = pd.DataFrame({"x": ref["x"], "rate": ref["rate"], "flag": ref["flag"],
                        "prediction": [spell(p) for p in pred], "y_true": [spell(y) for y in ref["y"]],
                        "y_pred_proba": score, "customer_id": np.arange(len(ref))})
    if spelling == "floats":
        out["y_true"] = out["y_true"].astype(float)  # pandas reads it back as 1.0/0.0, as in the issue
    file = path / f"ref-{spelling}.{kind}"
    out.to_csv(file, index=False) if kind == "csv" else out.to_parquet(file, index=False)
    return file


@pytest.mark.slow
def test_labels_categories_booleans_and_numpy_scalars_are_one_value_model(settings, store, tmp_path: Path) -> None:
    rng = np.random.default_rng(20261202)
    train, ref = frame(rng, 2000), frame(rng, N_REF)
    clf = LogisticRegression().fit(inputs(train), train["y"])
    ref_pred, ref_score = clf.predict(inputs(ref)), clf.predict_proba(inputs(ref))[:, 1]
    tag = uuid.uuid4().hex[:6]
    models = {spelling: spec(f"values-{spelling}-{tag}", SPELLINGS[spelling][0]) for spelling in SPELLINGS}

    for spelling, model in models.items():
        answer = upload(store, model, "train", write_reference(ref, ref_pred, ref_score, spelling, tmp_path),
                        show_progress=False)
        assert answer.rows == N_REF
        assert answer.ignored == ["customer_id"]  # listed, not silently dropped
        assert answer.columns["y_pred_proba"] == "score (proba[1])" and answer.columns["y_true"] == "label"

    # Traffic drawn from the reference's distribution (resampled from its rows, so a verdict of drift could only
    # come from values read differently), straight from the model: numpy and pandas scalars.
    traffic = ref.sample(N_EVENTS, replace=True, random_state=7).reset_index(drop=True)
    pred, proba = clf.predict(inputs(traffic)), clf.predict_proba(inputs(traffic))
    assert isinstance(pred[0], np.integer) and isinstance(traffic["flag"].iloc[0], np.bool_)
    collector = Collector(settings.model_copy(update={"batch_max_seconds": 0.2}))
    runner = threading.Thread(target=collector.run, name="collector", daemon=True)
    runner.start()
    try:
        step = (WINDOW.end - WINDOW.start) / (N_EVENTS + 1)
        with PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                              topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
            for spelling, model in models.items():
                spell = SPELLINGS[spelling][1]
                for i, row in enumerate(traffic.itertuples(index=False)):
                    ts = pd.Timestamp(WINDOW.start + step * (i + 1))  # a pandas Timestamp, as frames hold them
                    event_id = logger.log_prediction(
                        model.name, {"x": row.x, "rate": row.rate, "flag": row.flag}, pred[i],
                        proba=dict(zip(clf.classes_, proba[i], strict=True)), ts=ts)
                    logger.log_label(model.name, event_id, spell(row.y), ts=ts + pd.Timedelta(minutes=1))
            logger.flush(timeout=60)
        names = [m.name for m in models.values()]
        count = "SELECT count() FROM {t:Identifier} WHERE model IN {m:Array(String)}"
        for table in ("predictions", "labels"):
            wait_for(f"{table} collected", lambda t=table: store.query(count, parameters={"t": t, "m": names})
                     .result_rows[0][0] == N_EVENTS * len(models))
    finally:
        collector.stop()
        runner.join(timeout=30)
    dead = store.query("SELECT count() FROM dead_letters WHERE topic IN {t:Array(String)}",
                       parameters={"t": list(settings.topics.values())}).result_rows[0][0]
    assert dead == 0

    for spelling, model in models.items():
        # One stored form: the reference's categories are the events' categories, classes are "0" and "1".
        def distinct(table: str, expr: str, model: ModelSpec = model) -> set[str]:
            rows = store.query(f"SELECT DISTINCT toString({expr}) FROM {table} WHERE model = {{m:String}}",
                               parameters={"m": model.name}).result_rows
            return {r[0] for r in rows}

        assert distinct("reference_rows", "features['rate']") == distinct("predictions", "features['rate']") \
            == {"0.5", "1.5", "2.5", "10"}, spelling
        assert distinct("reference_rows", "features['flag']") == distinct("predictions", "features['flag']") \
            == {"0", "1"}, spelling
        assert distinct("reference_rows", "label") == distinct("labels", "label") == {"0", "1"}, spelling
        assert distinct("predictions", "arrayJoin(mapKeys(proba))") == {"0", "1"}, spelling

        assert run_stage(store, model, WINDOW, "performance").status == "ok", spelling
        perf = dict(store.query(
            "SELECT metric, baseline FROM performance_results FINAL WHERE model = {m:String} AND segment = ''",
            parameters={"m": model.name}).result_rows)
        assert perf["accuracy"] == pytest.approx(skm.accuracy_score(ref["y"], ref_pred), rel=1e-9), spelling
        assert perf["roc_auc"] == pytest.approx(skm.roc_auc_score(ref["y"], ref_score), rel=1e-9), spelling
        assert perf["accuracy"] > 0.6

        assert run_stage(store, model, WINDOW, "drift").status == "ok", spelling
        drift = store.query(
            "SELECT column, drifted, status FROM drift_results FINAL WHERE model = {m:String} AND segment = '' "
            "AND column_role != 'dataset'", parameters={"m": model.name}).result_rows
        assert {c for c, _, _ in drift} >= {"x", "rate", "flag", "__prediction__", "__target__"}, spelling
        assert [(c, s) for c, d, s in drift if d or s not in ("ok",)] == [], spelling
        unseen = dict(store.query(
            "SELECT column, value FROM quality_results FINAL WHERE model = {m:String} AND segment = '' "
            "AND check = 'unseen_category_share'", parameters={"m": model.name}).result_rows)
        assert unseen == {"rate": 0.0, "flag": 0.0}, spelling
        calibration = store.query(
            "SELECT DISTINCT status FROM estimated_performance_results FINAL WHERE model = {m:String} AND "
            "segment = ''", parameters={"m": model.name}).result_rows
        assert ("no_calibration",) not in calibration, spelling  # the score column reached the reference


def test_a_reference_that_contradicts_positive_label_is_refused_naming_the_column(store, tmp_path: Path) -> None:
    model = spec(f"values-refused-{uuid.uuid4().hex[:6]}", "1")
    ref = frame(np.random.default_rng(3), 200)
    bad = pd.DataFrame({"x": ref["x"], "rate": ref["rate"], "flag": ref["flag"], "prediction": "1",
                        "y_true": np.where(ref["y"] == 1, "yes", "no"), "y_pred_proba": 0.5})
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ReferenceError, match=r"column 'y_true' \(label\) holds the classes 'no', 'yes'|"
                                             r"column 'y_true' \(label\) holds the classes 'yes', 'no'") as info:
        upload(store, model, "train", tmp_path / "bad.csv", show_progress=False)
    assert "positive_label '1'" in str(info.value)
    # Probabilities in the prediction column contradict the binary task: refused, naming the column.
    scores = bad.assign(y_true=ref["y"], prediction=np.round(np.linspace(0, 1, len(ref)), 3))
    scores.to_csv(tmp_path / "scores.csv", index=False)
    with pytest.raises(ReferenceError, match=r"column 'prediction' \(prediction\) holds more than two classes"):
        upload(store, model, "train", tmp_path / "scores.csv", show_progress=False)
    # A numeric feature holding text contradicts its declared type.
    bad.assign(x="high", y_true=ref["y"]).to_csv(tmp_path / "text.csv", index=False)
    with pytest.raises(ReferenceError, match=r"column 'x', row 0: 'high' is not a number \(declared numeric\)"):
        upload(store, model, "train", tmp_path / "text.csv", show_progress=False)
    stored = store.query("SELECT count() FROM reference_rows WHERE model = {m:String}",
                         parameters={"m": model.name}).result_rows[0][0]
    assert stored == 0  # nothing written by a refused upload
    # A sample without positives is possible: its predictions name the positive class, so it is accepted.
    bad.assign(y_true=0.0, prediction=ref["y"]).to_csv(tmp_path / "negatives.csv", index=False)
    assert upload(store, model, "train", tmp_path / "negatives.csv", show_progress=False).rows == len(ref)
