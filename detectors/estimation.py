"""Estimated performance of a window before its labels arrive: what ClickHouse returns and what is stored.

Run with the drift stage (a window's estimate needs only its predictions).
Classifiers (CBPE): one query counts the reference's labelled rows per
(class, score rounded to `estimated.SCORE_STEP`, predicted the class, labelled
the class), and one per segment counts the window's rows the same way
without labels; the calibration is fitted once per run on the whole
reference and applied to every segment. Regressors (DLE): one loss model is
fitted per run on a bounded sample of the whole reference
(`estimation.sample_rows`, `detectors.sample.sample_frames`) and predicts on
a bounded sample of each segment's window.

The baseline of each estimate is the reference's realized value, and
`degraded` follows the performance rule (`performance.max_drop`), so an
estimate can warn of a drop hours before labels confirm it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from scipy.stats import norm

from detectors import estimated
from detectors.aggregates import DETECTOR_SETTINGS
from detectors.config import PREDICTION_COLUMN, TARGET_COLUMN, ModelSpec, Task
from detectors.performance import verdict
from detectors.sample import sample_frames
from detectors.sources import ALL_ROWS, Query, Segment, Window, production_rows, reference_rows
from detectors.summaries import ColumnType


@dataclass
class EstimateRow:
    metric: str
    method: str  # cbpe | dle
    value: float | None
    sampling_error: float | None
    ci_low: float | None
    ci_high: float | None
    baseline: float | None
    max_drop: float
    degraded: bool
    status: str  # ok | degraded | no_data | insufficient_data | no_calibration | no_baseline
    prediction_rows: int
    estimated_rows: int  # rows the estimate stands on: scored rows (CBPE), the window sample (DLE)
    detail: str = ""  # why there is no estimate (no_calibration)


@dataclass
class Fitted:
    """What a run fits once on the whole reference: calibrators or a loss model, the baselines, or why not."""

    method: str
    calibrators: dict[str, estimated.Calibrator]
    loss_model: estimated.LossModel | None
    baseline: dict[str, float | None]
    problem: str = ""  # non-empty: no_calibration, with the reason
    current: pd.DataFrame | None = None  # DLE: the whole window's sample, drawn with the reference's


def _groups_sql(model: ModelSpec, rows: str, q: Query, *, labelled: bool) -> str:
    """Rows counted per (class, rounded score, predicted the class, labelled the class); bounded by classes x steps."""
    classes = f"[{q.param(model.positive_label, 'String', 'pos')}]" if model.task is Task.BINARY else "mapKeys(proba)"
    is_label = "toString(label) = cls" if labelled else "0"
    digits = round(-math.log10(estimated.SCORE_STEP))
    return (f"SELECT cls, round(proba[cls], {digits}) AS s, toString(prediction) = cls AS is_pred, "
            f"{is_label} AS is_label, count() AS n FROM ({rows}) ARRAY JOIN {classes} AS cls "
            f"WHERE mapContains(proba, cls){' AND label IS NOT NULL' if labelled else ''} "
            f"GROUP BY cls, s, is_pred, is_label")


def _groups(client: Client, sql: str, q: Query) -> dict[str, estimated.ScoreGroups]:
    by_class: dict[str, list[tuple[float, bool, bool, int]]] = {}
    for cls, s, is_pred, is_label, n in client.query(sql, parameters=q.parameters,
                                                      settings=DETECTOR_SETTINGS).result_rows:
        by_class.setdefault(str(cls), []).append((float(s), bool(is_pred), bool(is_label), int(n)))
    return {cls: estimated.ScoreGroups.from_rows(rows) for cls, rows in by_class.items()}


def _fit_cbpe(client: Client, model: ModelSpec, window: Window) -> Fitted:
    q = Query()
    rows = reference_rows(model, window, ALL_ROWS, q, with_labels=True, select="prediction, proba, label")
    reference = _groups(client, _groups_sql(model, rows, q, labelled=True), q)
    spec = model.estimation
    usable = {cls: g for cls, g in reference.items() if g.rows >= spec.min_rows
              and g.of_class.sum() > 0 and g.of_other.sum() > 0}
    if model.task is Task.BINARY:
        baseline = estimated.binary_realized(reference[model.positive_label]) if model.positive_label in reference else {}
    else:
        baseline = estimated.multiclass_realized(reference)
    if spec.calibration == "none":  # the scores are taken as probabilities: no labels needed but for the baseline
        classes = [model.positive_label] if model.task is Task.BINARY else list(reference)
        return Fitted("cbpe", {cls: estimated.fit_calibrator(None, "none") for cls in classes}, None, baseline)
    if (model.positive_label not in usable) if model.task is Task.BINARY else not usable:
        found = reference.get(model.positive_label)
        why = (f"the reference has {found.rows if found else 0} labelled rows with proba[{model.positive_label!r}] "
               if model.task is Task.BINARY else "no class of the reference has enough labelled rows with a proba ")
        return Fitted("cbpe", {}, None, baseline,
                      problem=why + f"(both classes needed, at least estimation.min_rows={spec.min_rows})")
    return Fitted("cbpe", {cls: estimated.fit_calibrator(g, "isotonic") for cls, g in usable.items()}, None, baseline)


def _feature_names(model: ModelSpec) -> tuple[list[str], list[str]]:
    numeric = [n for n, f in model.features.items() if f.type is ColumnType.NUMERIC]
    return numeric, [n for n, f in model.features.items() if f.type is ColumnType.CATEGORICAL]


def _fit_dle(client: Client, model: ModelSpec, window: Window) -> Fitted:
    reference, current = sample_frames(client, model, window, model.estimation.sample_rows, target=True)
    labelled = reference.dropna(subset=[PREDICTION_COLUMN, TARGET_COLUMN])
    if len(labelled) < max(model.estimation.min_rows, 2):
        return Fitted("dle", {}, None, {}, problem=f"the reference sample has {len(labelled)} rows with a numeric "
                                                   f"prediction and label (estimation.min_rows={model.estimation.min_rows})")
    numeric, categorical = _feature_names(model)
    loss = estimated.fit_loss_model(labelled, numeric, categorical, PREDICTION_COLUMN, TARGET_COLUMN)
    return Fitted("dle", {}, loss, {"mae": loss.reference_mae, "rmse": loss.reference_rmse},
                  current=current.drop(columns=[TARGET_COLUMN]))


def fit(client: Client, model: ModelSpec, window: Window) -> Fitted:
    """Calibrate (classifiers) or fit the loss model (regressors) on the reference of `window`."""
    return _fit_dle(client, model, window) if model.task is Task.REGRESSION else _fit_cbpe(client, model, window)


def _window_rows(client: Client, model: ModelSpec, window: Window, segment: Segment) -> int:
    q = Query()
    sql = production_rows(model, window, segment, q, with_labels=False, select="count()")
    return int(client.query(sql, parameters=q.parameters).result_rows[0][0])


def _estimates(client: Client, model: ModelSpec, window: Window, segment: Segment,
               fitted: Fitted) -> tuple[dict[str, estimated.Estimate], int]:
    """metric -> (value, standard error), and the number of rows estimated on."""
    if fitted.loss_model is not None:
        if segment == ALL_ROWS and fitted.current is not None:
            current = fitted.current
        else:  # the segment's own sample; the loss model was fitted on the whole reference
            _, current = sample_frames(client, model, window, model.estimation.sample_rows, segment=segment,
                                       reference=False)
        scored = int(current[PREDICTION_COLUMN].notna().sum()) if len(current) else 0
        return estimated.dle_estimates(fitted.loss_model, current), scored
    q = Query()
    rows = production_rows(model, window, segment, q, with_labels=False, select="prediction, proba")
    groups = _groups(client, _groups_sql(model, rows, q, labelled=False), q)
    if model.task is Task.BINARY:
        own = groups.get(model.positive_label)
        if own is None or not own.rows:
            return {}, 0
        return estimated.binary_estimates(own, fitted.calibrators[model.positive_label]), own.rows
    scored = sum(int(g.predicted.sum()) for cls, g in groups.items() if cls in fitted.calibrators)
    return estimated.multiclass_estimates(groups, fitted.calibrators), scored


def estimate(client: Client, model: ModelSpec, window: Window, segment: Segment, fitted: Fitted) -> list[EstimateRow]:
    """Every estimated metric of one segment of `window`, with its status; no labels of the window are read."""
    spec = model.estimation
    predictions = _window_rows(client, model, window, segment)
    values: dict[str, estimated.Estimate] = {}
    scored = 0
    if predictions and not fitted.problem:
        values, scored = _estimates(client, model, window, segment, fitted)
    z = float(norm.ppf(0.5 + model.performance.confidence / 2))
    out = []
    for metric in model.estimated_metrics:
        value, se = values.get(metric, (None, None))
        baseline = fitted.baseline.get(metric)
        status, degraded = verdict(metric, value, baseline, model.performance.max_drop, predictions=predictions,
                                   enough=scored >= spec.min_rows, unusable="no_calibration" if fitted.problem else "")
        if status in ("no_data", "no_calibration", "insufficient_data"):
            value = se = None
        lo = hi = None
        if value is not None and se is not None and np.isfinite(se):
            lo, hi = value - z * se, value + z * se
            if fitted.method == "cbpe":
                lo, hi = max(lo, 0.0), min(hi, 1.0)
            else:
                lo = max(lo, 0.0)
        out.append(EstimateRow(metric, fitted.method, value, se, lo, hi, baseline, model.performance.max_drop,
                               degraded, status, predictions, scored,
                               fitted.problem if status == "no_calibration" else ""))
    return out
