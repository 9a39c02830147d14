"""`driftline init`'s inference from a frame (driftline/onboarding.py): types, roles, task, and the registry file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from detectors.config import load_registry
from driftline.onboarding import InitError, add_to_registry, infer, starter_alerts

rng = np.random.default_rng(3)
N = 600


def frame(**extra: object) -> pd.DataFrame:
    base = {"amount": rng.gamma(2, 40, N), "age": rng.integers(18, 90, N), "channel": rng.choice([1, 2, 3], N),
            "country": rng.choice(["DE", "FR"], N), "is_new": rng.random(N) < 0.5,
            "seen_at": pd.date_range("2026-01-01", periods=N, freq="min"), "order_id": [f"o-{i}" for i in range(N)]}
    base.update(extra)  # type: ignore[arg-type]
    return pd.DataFrame(base)


def test_features_are_typed_as_evidently_types_them_and_times_and_ids_are_left_out() -> None:
    got = infer(frame(prediction=rng.integers(0, 2, N).astype(float), label=rng.integers(0, 2, N).astype(float)), "m")
    assert got.features == {"amount": "numeric", "age": "numeric", "channel": "categorical", "country": "categorical",
                            "is_new": "categorical"}
    assert set(got.skipped) == {"seen_at", "order_id"}
    assert got.task == "binary_classification" and got.positive_label is None  # 0.0/1.0 labels: the default "1"
    assert got.prediction == "prediction" and got.label == "label"
    assert any("training sample" in w for w in got.warnings)  # labels, and not said to be held out
    assert not infer(frame(prediction=0.0, label=1.0), "m", held_out=True).warnings


def test_the_task_follows_the_outputs() -> None:
    regression = infer(frame(y_pred=rng.normal(size=N), target=rng.normal(size=N)), "eta")
    assert (regression.task, regression.prediction, regression.label) == ("regression", "y_pred", "target")
    words = infer(frame(prediction=rng.choice(["no", "yes"], N), label=rng.choice(["no", "yes"], N)), "m")
    assert words.task == "binary_classification" and words.positive_label == "yes"  # scikit-learn's classes_[1]
    three = infer(frame(prediction=rng.integers(0, 3, N), proba_a=0.2, proba_b=0.3, proba_c=0.5), "m")
    assert three.task == "multiclass_classification" and three.proba == {"a": "proba_a", "b": "proba_b", "c": "proba_c"}
    scored = infer(frame(prediction=rng.integers(0, 2, N), y_pred_proba=rng.random(N)), "m")
    assert scored.task == "binary_classification" and scored.score == "y_pred_proba"
    assert infer(frame(prediction=rng.integers(0, 2, N)), "m", task="regression").task == "regression"


def test_named_columns_must_exist_and_small_frames_are_warned_about() -> None:
    with pytest.raises(InitError, match="label column 'truth'"):
        infer(frame(prediction=0), "m", label="truth")
    with pytest.raises(InitError, match="model name"):
        infer(frame(prediction=0), "bad name")
    with pytest.raises(InitError, match="no label, prediction"):
        infer(frame(), "m")
    small = infer(frame(prediction=0).head(50), "m")
    assert any("multivariate drift needs at least 500" in w for w in small.warnings)
    assert any("data quality needs at least 100" in w for w in small.warnings)


def test_an_entry_is_appended_keeping_the_file_and_a_clash_or_a_bad_result_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    first = infer(frame(prediction=rng.integers(0, 2, N), label=rng.integers(0, 2, N)), "fraud")
    add_to_registry(path, first.entry("reference", owner="risk"))
    written = "# our models\n" + path.read_text()
    path.write_text(written)
    second = infer(frame(pred=rng.normal(size=N), actual=rng.normal(size=N)), "eta")
    add_to_registry(path, second.entry("train-1"))
    text = path.read_text()
    assert text.startswith(written)  # the comment and the first entry as they were
    registry = load_registry(path)
    assert [m.name for m in registry.models] == ["fraud", "eta"]
    eta = registry.get("eta")
    assert eta.reference.columns.prediction == "pred" and eta.reference.columns.label == "actual"
    with pytest.raises(InitError, match="already has a model named 'eta'"):
        add_to_registry(path, second.entry("train-1"))
    bad = second.entry("train-1") | {"name": "eta2", "window": "not a duration"}
    with pytest.raises(Exception):
        add_to_registry(path, bad)
    assert path.read_text() == text


def test_the_starter_alerts_file_is_valid_and_names_the_model(tmp_path: Path) -> None:
    from driftline.cli_alerts import load_alert_config
    from driftline.config import load_settings

    models = tmp_path / "models.yaml"
    add_to_registry(models, infer(frame(prediction=0.0, label=1.0), "churn").entry("reference"))
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(starter_alerts("churn", "binary_classification"))
    config, _ = load_alert_config(load_settings(alerts_file=alerts), registry=load_registry(models))
    assert config.rules == () or list(config.rules) == []
    assert "model: churn" in alerts.read_text() and "metric: accuracy" in alerts.read_text()
