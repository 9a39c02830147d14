"""The math of estimated performance: CBPE for classifiers, direct loss estimation (DLE) for regressors.

Confidence-based performance estimation (CBPE, as NannyML names it): once a
classifier's score is calibrated on labelled reference rows, the calibrated
probability `p` of a window's row is the chance that its label is the
positive class. Each row then adds `p` to the expected true positives (if
predicted positive) or false negatives (if not), and `1 - p` to false
positives or true negatives; accuracy, precision, recall and F1 follow from
the expected counts, and the expected ROC AUC is the area under the ROC curve
of expected counts (the positives and negatives expected above each score
threshold). It assumes the labels given the score behave as in the reference
(no concept shift): a shift of the inputs is what it sees, a change of
P(y | x) is invisible to it.

Everything here works on groups, not rows: ClickHouse returns rows counted
per (score rounded to `SCORE_STEP`, predicted class, label), so memory is
bounded by the number of score steps however large a window is. The isotonic
calibration fitted on weighted groups is the one fitted on the rows with
their scores rounded.

Each estimate carries a standard error: how far the realized value is
expected to fall from it if the calibration holds (the labels drawn as
independent Bernoulli(p)). Accuracy and precision are sums of such draws;
recall and F1 take the delta method; ROC AUC takes Hanley & McNeil's
formula with the expected numbers of positives and negatives.

DLE: a gradient-boosted model of the absolute and the squared error of the
model, fitted on a bounded sample of the reference (features and the
prediction as inputs), predicts each row's expected loss in a window sample;
their means are the estimated MAE and MSE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from threadpoolctl import threadpool_limits

from detectors.performance import hanley_mcneil_se

SCORE_STEP = 1e-4
"""Scores are grouped rounded to this step: at most 10,001 groups per class and side."""

Calibrator = Callable[[np.ndarray], np.ndarray]
Estimate = tuple[float | None, float | None]
"""(value, standard error)."""


@dataclass(frozen=True)
class ScoreGroups:
    """Rows of one class counted per rounded score: predicted as that class or not, labelled as it or not.

    `score` ascends; the four count arrays align with it. A window's rows have no labels: only the
    `pred_*` sums matter there.
    """

    score: np.ndarray
    pred_label: np.ndarray  # predicted the class, labelled the class
    pred_other: np.ndarray  # predicted the class, labelled another
    rest_label: np.ndarray  # predicted another, labelled the class
    rest_other: np.ndarray  # predicted another, labelled another (or no label)

    @classmethod
    def from_rows(cls, rows: list[tuple[float, bool, bool, int]]) -> "ScoreGroups":
        """From (score, is_predicted, is_label, count) tuples in any order, merged per score."""
        by_score: dict[float, list[int]] = {}
        for score, is_pred, is_label, count in rows:
            cell = by_score.setdefault(float(score), [0, 0, 0, 0])
            cell[(0 if is_pred else 2) + (0 if is_label else 1)] += int(count)
        scores = sorted(by_score)
        counts = np.array([by_score[s] for s in scores], dtype=float).reshape(len(scores), 4)
        return cls(np.array(scores, dtype=float), *counts.T)

    @property
    def predicted(self) -> np.ndarray:
        return self.pred_label + self.pred_other

    @property
    def rest(self) -> np.ndarray:
        return self.rest_label + self.rest_other

    @property
    def rows(self) -> int:
        return int((self.predicted + self.rest).sum())

    @property
    def of_class(self) -> np.ndarray:
        return self.pred_label + self.rest_label

    @property
    def of_other(self) -> np.ndarray:
        return self.pred_other + self.rest_other


def fit_calibrator(reference: ScoreGroups | None, method: str) -> Calibrator:
    """P(label is the class | score) from the reference's labelled groups: isotonic (increasing, clipped) or identity."""
    if method == "none":
        return lambda s: np.clip(np.asarray(s, dtype=float), 0.0, 1.0)
    if method != "isotonic":
        raise ValueError(f"unknown calibration {method!r} (isotonic, none)")
    if reference is None:
        raise ValueError("isotonic calibration needs the reference's groups")
    weight = reference.of_class + reference.of_other
    keep = weight > 0
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(reference.score[keep], reference.of_class[keep] / weight[keep], sample_weight=weight[keep])
    return lambda s: np.asarray(iso.predict(np.asarray(s, dtype=float)), dtype=float)


def roc_auc_from_groups(positives: np.ndarray, negatives: np.ndarray) -> float | None:
    """Area under the ROC curve of groups in ascending score order: ties within a group count half.

    With counts it is the Mann-Whitney AUC; with expected counts (p and 1 - p summed per group) it is
    the area under the expected ROC curve, CBPE's estimate.
    """
    pos, neg = np.asarray(positives, dtype=float)[::-1], np.asarray(negatives, dtype=float)[::-1]
    total_pos, total_neg = float(pos.sum()), float(neg.sum())
    if total_pos <= 0 or total_neg <= 0:
        return None
    above = np.cumsum(pos) - pos  # positives at strictly higher scores
    return float((neg * (above + pos / 2)).sum() / (total_pos * total_neg))


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def confusion_metrics(tp: float, fp: float, fn: float, tn: float) -> dict[str, float | None]:
    """accuracy, precision, recall, F1 from (expected or counted) confusion-matrix cells."""
    return {"accuracy": _ratio(tp + tn, tp + fp + fn + tn), "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}


def binary_estimates(window: ScoreGroups, calibrate: Calibrator) -> dict[str, Estimate]:
    """CBPE of a binary classifier on a window's groups of the positive class's score."""
    p = calibrate(window.score)
    var = p * (1 - p)
    n_pred, n_rest = window.predicted, window.rest
    tp, fp = float((p * n_pred).sum()), float(((1 - p) * n_pred).sum())
    fn, tn = float((p * n_rest).sum()), float(((1 - p) * n_rest).sum())
    var_tp, var_fn = float((var * n_pred).sum()), float((var * n_rest).sum())
    n, predicted = tp + fp + fn + tn, tp + fp
    values = confusion_metrics(tp, fp, fn, tn)
    out: dict[str, Estimate] = {}
    out["accuracy"] = (values["accuracy"], math.sqrt(var_tp + var_fn) / n if n else None)
    out["precision"] = (values["precision"], math.sqrt(var_tp) / predicted if predicted else None)
    positives = tp + fn
    out["recall"] = (values["recall"], math.sqrt(fn**2 * var_tp + tp**2 * var_fn) / positives**2 if positives else None)
    d = tp + predicted + fn
    out["f1"] = (values["f1"], math.sqrt((2 * (predicted + fn)) ** 2 * var_tp + (2 * tp) ** 2 * var_fn) / d**2
                 if d else None)
    counts = n_pred + n_rest
    auc = roc_auc_from_groups(p * counts, (1 - p) * counts)
    out["roc_auc"] = (auc, hanley_mcneil_se(auc, positives, n - positives) if auc is not None else None)
    return out


def binary_realized(reference: ScoreGroups) -> dict[str, float | None]:
    """The reference's own metrics from its labelled groups (the baseline of the estimates)."""
    tp, fp = float(reference.pred_label.sum()), float(reference.pred_other.sum())
    fn, tn = float(reference.rest_label.sum()), float(reference.rest_other.sum())
    out = confusion_metrics(tp, fp, fn, tn)
    out["roc_auc"] = roc_auc_from_groups(reference.of_class, reference.of_other)
    return out


def multiclass_estimates(windows: dict[str, ScoreGroups], calibrators: dict[str, Calibrator]) -> dict[str, Estimate]:
    """CBPE of a multiclass classifier: each class's score calibrated one-vs-rest.

    Accuracy is the mean calibrated probability of the predicted class over the rows scored for it;
    macro precision, recall and F1 average the classes (0 where undefined, as scikit-learn). Unlike
    NannyML, the calibrated probabilities are not renormalised to sum to 1 across classes (that needs
    every row's whole vector; the groups keep memory bounded).
    """
    correct = var = rows = 0.0
    precisions, recalls, f1s = [], [], []
    for cls, calibrate in calibrators.items():
        groups = windows.get(cls)
        if groups is None or not len(groups.score):
            precisions.append(0.0), recalls.append(0.0), f1s.append(0.0)
            continue
        p = calibrate(groups.score)
        tp = float((p * groups.predicted).sum())
        predicted = float(groups.predicted.sum())
        expected_label = float((p * (groups.predicted + groups.rest)).sum())
        correct += tp
        var += float((p * (1 - p) * groups.predicted).sum())
        rows += predicted
        values = confusion_metrics(tp, predicted - tp, expected_label - tp, 0.0)
        precisions.append(values["precision"] or 0.0)
        recalls.append(values["recall"] or 0.0)
        f1s.append(values["f1"] or 0.0)
    if not rows:
        return {m: (None, None) for m in ("accuracy", "precision", "recall", "f1")}
    macro = len(precisions)
    return {"accuracy": (correct / rows, math.sqrt(var) / rows), "precision": (sum(precisions) / macro, None),
            "recall": (sum(recalls) / macro, None), "f1": (sum(f1s) / macro, None)}


def multiclass_realized(references: dict[str, ScoreGroups]) -> dict[str, float | None]:
    """The reference's accuracy and macro precision/recall/F1 from its per-class groups."""
    correct = rows = 0.0
    precisions, recalls, f1s = [], [], []
    for groups in references.values():
        tp, fp, fn = float(groups.pred_label.sum()), float(groups.pred_other.sum()), float(groups.rest_label.sum())
        correct += tp
        rows += tp + fp
        values = confusion_metrics(tp, fp, fn, 0.0)
        precisions.append(values["precision"] or 0.0)
        recalls.append(values["recall"] or 0.0)
        f1s.append(values["f1"] or 0.0)
    if not rows:
        return {}
    macro = len(precisions)
    return {"accuracy": correct / rows, "precision": sum(precisions) / macro, "recall": sum(recalls) / macro,
            "f1": sum(f1s) / macro}


def loss_inputs(frame: pd.DataFrame, columns: list[str], categories: dict[str, list[str]]) -> pd.DataFrame:
    """The DLE model's inputs: numbers as floats (NULL as NaN), categories over the reference's levels."""
    out = pd.DataFrame(index=frame.index)
    for name in columns:
        if name in categories:
            out[name] = pd.Categorical(frame[name], categories=categories[name])
        else:
            out[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return out


@dataclass
class LossModel:
    """Expected absolute and squared error of a regressor given its inputs and its prediction."""

    columns: list[str]
    categories: dict[str, list[str]]
    absolute: HistGradientBoostingRegressor
    squared: HistGradientBoostingRegressor
    reference_abs_sd: float
    reference_sq_sd: float
    reference_mae: float
    reference_rmse: float


LEAF_ROWS = 100
"""Rows per leaf of the loss boosters: a loss is one noisy draw per row (a squared error is heavy-tailed), so a leaf
averages many. Measured on seeded windows (tests/unit/test_estimated.py's case, 4 seeds): estimated RMSE within
4.1% of realized with 100, 8.7% with scikit-learn's default of 20."""

MAX_CATEGORIES = 250
"""A categorical input with more reference levels is dropped from the loss model (the booster's limit is 255)."""


def fit_loss_model(reference: pd.DataFrame, numeric: list[str], categorical: list[str], prediction: str,
                   target: str) -> LossModel:
    """Fit on reference rows with a numeric prediction and label; `numeric`/`categorical` name the feature columns."""
    y = pd.to_numeric(reference[target], errors="coerce")
    p = pd.to_numeric(reference[prediction], errors="coerce")
    keep = y.notna() & p.notna()
    ref = reference.loc[keep]
    error = (y[keep] - p[keep]).to_numpy(dtype=float)
    categories = {}
    for name in categorical:
        levels = sorted(str(v) for v in ref[name].dropna().unique())
        if len(levels) <= MAX_CATEGORIES:
            categories[name] = levels
    columns = [*numeric, *categories, prediction]
    x = loss_inputs(ref, columns, categories)
    models = []
    # One OpenMP thread: on a busy 2-core host OpenMP's spinning threads made fitting two boosters on 5,000 rows
    # take 11 s instead of 0.8 s (measured); the scheduler runs models side by side anyway.
    with threadpool_limits(1):
        for loss in (np.abs(error), error**2):
            booster = HistGradientBoostingRegressor(categorical_features="from_dtype", random_state=0,
                                                    min_samples_leaf=LEAF_ROWS)
            models.append(booster.fit(x, loss))
    return LossModel(columns, categories, models[0], models[1], float(np.std(np.abs(error), ddof=1)),
                     float(np.std(error**2, ddof=1)), float(np.mean(np.abs(error))),
                     float(math.sqrt(np.mean(error**2))))


def dle_estimates(model: LossModel, window: pd.DataFrame) -> dict[str, Estimate]:
    """Estimated MAE and RMSE of a window sample (rows without a prediction dropped)."""
    prediction = model.columns[-1]
    rows = window.loc[pd.to_numeric(window[prediction], errors="coerce").notna()]
    n = len(rows)
    if not n:
        return {"mae": (None, None), "rmse": (None, None)}
    x = loss_inputs(rows, model.columns, model.categories)
    with threadpool_limits(1):
        mae = float(np.clip(model.absolute.predict(x), 0, None).mean())
        mse = float(np.clip(model.squared.predict(x), 0, None).mean())
    rmse = math.sqrt(mse)
    se_mse = model.reference_sq_sd / math.sqrt(n)
    return {"mae": (mae, model.reference_abs_sd / math.sqrt(n)),
            "rmse": (rmse, se_mse / (2 * rmse) if rmse > 0 else None)}
