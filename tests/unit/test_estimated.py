"""The math of estimated performance (CBPE, DLE) against brute force on small arrays, and the config it reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from detectors import estimated
from detectors.config import registry_from_yaml
from driftline.yamlfile import ConfigError, LocatedYaml


def groups_of(score: np.ndarray, pred: np.ndarray, label: np.ndarray) -> estimated.ScoreGroups:
    """The groups ClickHouse would return for these rows (one tuple per row; from_rows merges them)."""
    return estimated.ScoreGroups.from_rows([(float(s), bool(p), bool(y), 1) for s, p, y in zip(score, pred, label)])


def brute_expected_auc(p: np.ndarray, score: np.ndarray) -> float:
    """Pairs (i, j) weighted p_i (1 - p_j): 1 when i scores above j, 1/2 when tied (a row tied with itself too)."""
    above = (score[:, None] > score[None, :]) + 0.5 * (score[:, None] == score[None, :])
    return float((p[:, None] * (1 - p[None, :]) * above).sum() / (p.sum() * (1 - p).sum()))


def test_groups_merge_rows_per_score() -> None:
    g = estimated.ScoreGroups.from_rows([(0.5, True, True, 2), (0.2, False, False, 3), (0.5, True, False, 1),
                                         (0.5, False, True, 4), (0.2, True, True, 1)])
    assert g.score.tolist() == [0.2, 0.5]
    assert g.pred_label.tolist() == [1, 2] and g.pred_other.tolist() == [0, 1]
    assert g.rest_label.tolist() == [0, 4] and g.rest_other.tolist() == [3, 0]
    assert g.rows == 11 and g.of_class.tolist() == [1, 6]


def test_auc_of_counted_groups_is_scikit_learns_with_ties() -> None:
    rng = np.random.default_rng(1)
    score = rng.integers(0, 30, 400) / 30  # many ties
    label = rng.random(400) < score
    g = groups_of(score, np.zeros(400, bool), label)
    assert estimated.roc_auc_from_groups(g.of_class, g.of_other) == pytest.approx(roc_auc_score(label, score), rel=1e-12)
    assert estimated.roc_auc_from_groups(np.array([3.0]), np.array([0.0])) is None  # one class only


def test_binary_estimates_equal_brute_force_over_rows() -> None:
    rng = np.random.default_rng(2)
    score = np.round(rng.random(300), 2)
    pred = score >= 0.4
    g = groups_of(score, pred, np.zeros(300, bool))
    calibrate = lambda s: np.asarray(s) ** 2  # noqa: E731 - any monotone map
    got = estimated.binary_estimates(g, calibrate)
    p = score**2
    tp, fp = p[pred].sum(), (1 - p[pred]).sum()
    fn, tn = p[~pred].sum(), (1 - p[~pred]).sum()
    assert got["accuracy"][0] == pytest.approx((tp + tn) / 300, rel=1e-12)
    assert got["precision"][0] == pytest.approx(tp / (tp + fp), rel=1e-12)
    assert got["recall"][0] == pytest.approx(tp / (tp + fn), rel=1e-12)
    assert got["f1"][0] == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)
    assert got["roc_auc"][0] == pytest.approx(brute_expected_auc(p, score), rel=1e-12)


def test_expected_auc_equals_nannyml_formula_on_distinct_scores() -> None:
    """NannyML sorts rows by score and integrates the cumulated calibrated probabilities; the same area."""
    rng = np.random.default_rng(3)
    score = rng.random(500)
    p = np.clip(score + rng.normal(0, 0.05, 500), 0, 1)
    order = np.argsort(score)[::-1]
    tps = np.r_[0, np.cumsum(p[order])]
    fps = np.r_[0, np.cumsum(1 - p[order])]
    nml = np.trapezoid(tps / tps[-1], fps / fps[-1])
    sorted_ = np.argsort(score)
    assert estimated.roc_auc_from_groups(p[sorted_], 1 - p[sorted_]) == pytest.approx(nml, rel=1e-12)


def test_standard_errors_are_the_spread_of_realized_metrics_when_the_calibration_holds() -> None:
    """Labels drawn from the calibrated probabilities: the realized metrics scatter around the estimate by its error."""
    rng = np.random.default_rng(4)
    n = 2000
    score = np.round(rng.beta(2, 2, n), 4)
    pred = score >= 0.5
    got = estimated.binary_estimates(groups_of(score, pred, np.zeros(n, bool)), lambda s: np.asarray(s))
    realized: dict[str, list[float]] = {m: [] for m in got}
    for _ in range(300):
        y = rng.random(n) < score
        tp, fp, fn = (y & pred).sum(), (~y & pred).sum(), (y & ~pred).sum()
        realized["accuracy"].append(((y == pred).sum()) / n)
        realized["precision"].append(tp / (tp + fp))
        realized["recall"].append(tp / (tp + fn))
        realized["f1"].append(2 * tp / (2 * tp + fp + fn))
        realized["roc_auc"].append(roc_auc_score(y, score))
    for metric, values in realized.items():
        value, se = got[metric]
        assert np.mean(values) == pytest.approx(value, abs=se), metric  # unbiased within one error of 300 draws' mean
        assert np.std(values) == pytest.approx(se, rel=0.2), metric  # Hanley-McNeil is approximate for the AUC


def test_isotonic_calibration_on_groups_is_the_fit_on_rows() -> None:
    rng = np.random.default_rng(5)
    score = np.round(rng.random(1000), 2)
    label = rng.random(1000) < score**2
    calibrate = estimated.fit_calibrator(groups_of(score, score > 0.5, label), "isotonic")
    rows = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score, label.astype(float))
    probe = np.linspace(-0.5, 1.5, 201)
    assert np.allclose(calibrate(probe), rows.predict(probe), atol=1e-12)
    assert np.array_equal(estimated.fit_calibrator(None, "none")(np.array([-1.0, 0.3, 2.0])), [0.0, 0.3, 1.0])
    with pytest.raises(ValueError, match="needs the reference"):
        estimated.fit_calibrator(None, "isotonic")


def test_reference_metrics_from_groups_are_the_counted_ones() -> None:
    rng = np.random.default_rng(6)
    score = np.round(rng.random(500), 3)
    label = rng.random(500) < score
    pred = score > 0.45
    got = estimated.binary_realized(groups_of(score, pred, label))
    tp, fp, fn = (label & pred).sum(), (~label & pred).sum(), (label & ~pred).sum()
    assert got["accuracy"] == pytest.approx((label == pred).mean())
    assert got["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(label, score))


def test_multiclass_accuracy_is_the_mean_calibrated_probability_of_the_predicted_class() -> None:
    rng = np.random.default_rng(7)
    classes = ["a", "b", "c"]
    proba = np.round(rng.dirichlet([1, 1, 1], 400), 4)
    pred = proba.argmax(axis=1)
    windows = {c: estimated.ScoreGroups.from_rows([(proba[i, k], pred[i] == k, False, 1) for i in range(400)])
               for k, c in enumerate(classes)}
    identity = {c: estimated.fit_calibrator(None, "none") for c in classes}
    got = estimated.multiclass_estimates(windows, identity)
    assert got["accuracy"][0] == pytest.approx(proba.max(axis=1).mean(), rel=1e-12)
    precision = [proba[pred == k, k].mean() for k in range(3)]
    recall = [proba[pred == k, k].sum() / proba[:, k].sum() for k in range(3)]
    assert got["precision"][0] == pytest.approx(np.mean(precision), rel=1e-12)
    assert got["recall"][0] == pytest.approx(np.mean(recall), rel=1e-12)
    assert estimated.multiclass_estimates({}, identity)["accuracy"] == (None, None)


def test_dle_estimates_the_error_of_a_window_whose_inputs_moved() -> None:
    rng = np.random.default_rng(8)

    def rows(n: int, sd: float, shop: str) -> pd.DataFrame:
        x = rng.normal(0, sd, n)
        noise = (0.5 + np.abs(x)) * (2 if shop == "b" else 1)
        pred = 2 * x
        return pd.DataFrame({"x": x, "shop": shop, "__prediction__": pred, "__target__": pred + rng.normal(0, noise)})

    reference = pd.concat([rows(3000, 2, "a"), rows(3000, 2, "b")], ignore_index=True)
    model = estimated.fit_loss_model(reference, ["x"], ["shop"], "__prediction__", "__target__")
    for window in (rows(3000, 0.5, "a"), rows(3000, 1.5, "b")):
        got = estimated.dle_estimates(model, window.drop(columns="__target__"))
        error = window["__target__"] - window["__prediction__"]
        assert got["mae"][0] == pytest.approx(error.abs().mean(), rel=0.06)
        assert got["rmse"][0] == pytest.approx(math.sqrt((error**2).mean()), rel=0.06)
    unseen = rows(10, 1, "z").assign(__prediction__=np.nan)
    assert estimated.dle_estimates(model, unseen) == {"mae": (None, None), "rmse": (None, None)}


def _model(**extra: object):  # type: ignore[no-untyped-def]
    raw = {"name": "m", "task": "binary_classification", "features": {"x": "numeric"},
           "reference": {"upload": "train"}} | extra
    return registry_from_yaml(LocatedYaml(Path("models.yaml"), {"models": [raw]})).models[0]


def test_estimation_config_defaults_and_refusals() -> None:
    model = _model()
    assert model.estimation.enabled and model.estimation.calibration == "isotonic"
    assert model.estimated_metrics == ("roc_auc", "accuracy", "precision", "recall", "f1")
    assert _model(task="regression").estimated_metrics == ("mae", "rmse")
    with pytest.raises(ConfigError, match="estimated metric 'mae' does not apply to binary_classification"):
        _model(estimation={"metrics": ["mae"]})
    with pytest.raises(ConfigError, match="calibration"):
        _model(estimation={"calibration": "platt"})
    with pytest.raises(ConfigError, match="sample_rows"):
        _model(estimation={"sample_rows": 10})
