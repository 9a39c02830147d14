"""Performance decay once labels arrive: metrics of the window against the reference's, in one query.

Predictions join their labels by event id (the latest label wins, so a
corrected label replaces the first one). The same query groups by side, so
the reference baseline is computed exactly like the window's. Each metric
carries its labelled-row count and a confidence interval:

- accuracy, precision, recall: Wilson score interval;
- roc_auc: Hanley & McNeil (1982) standard error;
- log_loss, mae, mape: normal interval of the mean of per-row losses;
- rmse: the square root of the interval of the mean squared error;
- r2: derived from the mean squared error interval and the label variance;
- f1: no closed form; reported without an interval.

Higher-is-better metrics are degraded when they fall more than `max_drop`
(absolute) below the baseline; error metrics (log_loss, mae, rmse, mape) when
they rise more than `max_drop` relative to the baseline.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client
from scipy.stats import norm

from detectors.aggregates import DETECTOR_SETTINGS, finite_or_none
from detectors.config import ModelSpec, Task
from detectors.sources import Query, expected_label_wait
from driftline.timestamps import as_utc

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse", "mape"})
EPS = 1e-15


@dataclass
class PerformanceRow:
    metric: str
    value: float | None
    baseline: float | None
    ci_low: float | None
    ci_high: float | None
    max_drop: float
    degraded: bool
    status: str  # ok | degraded | insufficient_data | no_data | no_baseline
    labelled_rows: int
    prediction_rows: int


def _classification_sql(model: ModelSpec, q: Query) -> str:
    pos = q.param(model.positive_label, "String", "pos")
    y = "toString(label)"
    p = "toString(prediction)"
    score = f"if(mapContains(proba, {pos}), proba[{pos}], NULL)"
    true_p = f"if(mapContains(proba, {y}), proba[{y}], NULL)"
    return f"""
        count() AS rows, countIf(label IS NOT NULL) AS labelled,
        countIf(label IS NOT NULL AND {y} = {p}) AS correct,
        countIf(label IS NOT NULL AND {y} = {pos} AND {p} = {pos}) AS tp,
        countIf(label IS NOT NULL AND {y} != {pos} AND {p} = {pos}) AS fp,
        countIf(label IS NOT NULL AND {y} = {pos} AND {p} != {pos}) AS fn,
        arrayAUC(groupArrayIf(assumeNotNull({score}), label IS NOT NULL AND {score} IS NOT NULL),
                 groupArrayIf({y} = {pos}, label IS NOT NULL AND {score} IS NOT NULL)) AS auc,
        countIf(label IS NOT NULL AND {score} IS NOT NULL AND {y} = {pos}) AS auc_pos,
        countIf(label IS NOT NULL AND {score} IS NOT NULL AND {y} != {pos}) AS auc_neg,
        avgIf(-log(greatest(assumeNotNull({true_p}), {EPS})), label IS NOT NULL AND {true_p} IS NOT NULL) AS ll,
        stddevSampIf(-log(greatest(assumeNotNull({true_p}), {EPS})), label IS NOT NULL AND {true_p} IS NOT NULL) AS ll_sd,
        countIf(label IS NOT NULL AND {true_p} IS NOT NULL) AS ll_n"""


def _class_counts_sql() -> str:
    """Per-class tp/fp/fn for macro precision/recall/F1 (multiclass); bounded by the number of classes."""
    return """
        SELECT side, cls,
               countIf(y = cls AND p = cls) AS tp, countIf(y != cls AND p = cls) AS fp, countIf(y = cls AND p != cls) AS fn
        FROM (SELECT side, toString(label) AS y, toString(prediction) AS p FROM {sides} WHERE label IS NOT NULL)
        ARRAY JOIN arrayDistinct([y, p]) AS cls
        GROUP BY side, cls"""


def _regression_sql() -> str:
    y = "variantElement(label, 'Float64')"
    p = "variantElement(prediction, 'Float64')"
    ok = f"{y} IS NOT NULL AND {p} IS NOT NULL"
    return f"""
        count() AS rows, countIf({ok}) AS labelled,
        avgIf(abs({y} - {p}), {ok}) AS mae, stddevSampIf(abs({y} - {p}), {ok}) AS mae_sd,
        avgIf(pow({y} - {p}, 2), {ok}) AS mse, stddevSampIf(pow({y} - {p}, 2), {ok}) AS mse_sd,
        avgIf(abs(({y} - {p}) / {y}), {ok} AND {y} != 0) AS mape,
        stddevSampIf(abs(({y} - {p}) / {y}), {ok} AND {y} != 0) AS mape_sd,
        countIf({ok} AND {y} != 0) AS mape_n,
        varPopIf({y}, {ok}) AS y_var"""


def _wilson(successes: int, n: int, z: float) -> tuple[float | None, float | None]:
    if n == 0:
        return None, None
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean_ci(mean: float | None, sd: float | None, n: int, z: float) -> tuple[float | None, float | None]:
    if mean is None or sd is None or n < 2 or math.isnan(sd):
        return None, None
    half = z * sd / math.sqrt(n)
    return mean - half, mean + half


def hanley_mcneil_se(auc: float, n_pos: float, n_neg: float) -> float | None:
    """Standard error of an AUC over n_pos positives and n_neg negatives (Hanley & McNeil, 1982)."""
    if n_pos <= 0 or n_neg <= 0:
        return None
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def _hanley_mcneil(auc: float | None, n_pos: int, n_neg: int, z: float) -> tuple[float | None, float | None]:
    se = hanley_mcneil_se(auc, n_pos, n_neg) if auc is not None else None
    if auc is None or se is None:
        return None, None
    return max(0.0, auc - z * se), min(1.0, auc + z * se)


def is_degraded(metric: str, value: float, baseline: float, max_drop: float) -> bool:
    """Higher-is-better metrics: more than `max_drop` below the baseline; error metrics: `max_drop` relatively above."""
    if metric in LOWER_IS_BETTER:
        return value > baseline * (1 + max_drop)
    return baseline - value > max_drop


def verdict(metric: str, value: float | None, baseline: float | None, max_drop: float, *, predictions: int,
            enough: bool, unusable: str = "") -> tuple[str, bool]:
    """(status, degraded) of one metric: no_data, `unusable` (a status naming why not), insufficient_data,
    no_baseline, then degraded or ok by `is_degraded`; only a verdict is ever degraded."""
    if predictions == 0:
        return "no_data", False
    if unusable:
        return unusable, False
    if not enough or value is None:
        return "insufficient_data", False
    if baseline is None:
        return "no_baseline", False
    degraded = is_degraded(metric, value, baseline, max_drop)
    return ("degraded" if degraded else "ok"), degraded


def _div(a: float, b: float) -> float | None:
    return a / b if b else None


def _metrics(model: ModelSpec, r: dict[str, Any], classes: list[tuple[Any, ...]], z: float) -> dict[str, tuple[float | None, float | None, float | None]]:
    """metric -> (value, ci_low, ci_high) for one side."""
    out: dict[str, tuple[float | None, float | None, float | None]] = {}
    n = int(r["labelled"])
    if model.task is Task.REGRESSION:
        mae, mse = finite_or_none(r["mae"]), finite_or_none(r["mse"])
        out["mae"] = (mae, *_mean_ci(mae, finite_or_none(r["mae_sd"]), n, z))
        lo, hi = _mean_ci(mse, finite_or_none(r["mse_sd"]), n, z)
        out["rmse"] = (math.sqrt(mse) if mse is not None else None,
                       math.sqrt(max(lo, 0.0)) if lo is not None else None, math.sqrt(hi) if hi is not None else None)
        mape = finite_or_none(r["mape"])
        out["mape"] = (mape, *_mean_ci(mape, finite_or_none(r["mape_sd"]), int(r["mape_n"]), z))
        var = finite_or_none(r["y_var"])
        if mse is not None and var:
            out["r2"] = (1 - mse / var, 1 - hi / var if hi is not None else None, 1 - lo / var if lo is not None else None)
        else:
            out["r2"] = (None, None, None)
        return out
    correct = int(r["correct"])
    out["accuracy"] = (_div(correct, n), *_wilson(correct, n, z))
    if model.task is Task.BINARY:
        tp, fp, fn = int(r["tp"]), int(r["fp"]), int(r["fn"])
        precision, recall = _div(tp, tp + fp), _div(tp, tp + fn)
        out["precision"] = (precision, *_wilson(tp, tp + fp, z))
        out["recall"] = (recall, *_wilson(tp, tp + fn, z))
        f1 = _div(2 * precision * recall, precision + recall) if precision is not None and recall is not None else None
        out["f1"] = (f1, None, None)
        auc = finite_or_none(r["auc"]) if int(r["auc_pos"]) and int(r["auc_neg"]) else None
        out["roc_auc"] = (auc, *_hanley_mcneil(auc, int(r["auc_pos"]), int(r["auc_neg"]), z))
    else:
        per_class = [(int(tp), int(fp), int(fn)) for _, _, tp, fp, fn in classes]
        precisions = [tp / (tp + fp) if tp + fp else 0.0 for tp, fp, _ in per_class]
        recalls = [tp / (tp + fn) if tp + fn else 0.0 for tp, _, fn in per_class]
        precision = sum(precisions) / len(precisions) if precisions else None
        recall = sum(recalls) / len(recalls) if recalls else None
        out["precision"], out["recall"] = (precision, None, None), (recall, None, None)
        f1s = [2 * p * q / (p + q) if p + q else 0.0 for p, q in zip(precisions, recalls, strict=True)]
        out["f1"] = (sum(f1s) / len(f1s) if f1s else None, None, None)
    ll = finite_or_none(r["ll"])
    out["log_loss"] = (ll, *_mean_ci(ll, finite_or_none(r["ll_sd"]), int(r["ll_n"]), z))
    return out


def compute(client: Client, model: ModelSpec, sides: str, q: Query) -> list[PerformanceRow]:
    """All of the model's metrics for the window (side 1) against the reference (side 0)."""
    body = _regression_sql() if model.task is Task.REGRESSION else _classification_sql(model, q)
    result = client.query(f"SELECT side, {body} FROM {sides} GROUP BY side", parameters=q.parameters,
                          settings=DETECTOR_SETTINGS)
    by_side = {row[0]: dict(zip(result.column_names, row, strict=True)) for row in result.result_rows}
    classes: dict[int, list[tuple[Any, ...]]] = {0: [], 1: []}
    if model.task is Task.MULTICLASS:
        for row in client.query(_class_counts_sql().replace("{sides}", sides), parameters=q.parameters,
                                settings=DETECTOR_SETTINGS).result_rows:
            classes[int(row[0])].append(row)
    z = float(norm.ppf(0.5 + model.performance.confidence / 2))
    empty = {"rows": 0, "labelled": 0}
    cur, ref = by_side.get(1, empty), by_side.get(0, empty)
    cur_metrics = _metrics(model, cur, classes[1], z) if int(cur["labelled"]) else {}
    ref_metrics = _metrics(model, ref, classes[0], z) if int(ref["labelled"]) else {}
    spec = model.performance
    rows = []
    for metric in model.metrics:
        value, lo, hi = cur_metrics.get(metric, (None, None, None))
        baseline = ref_metrics.get(metric, (None, None, None))[0]
        labelled, predictions = int(cur["labelled"]), int(cur["rows"])
        status, degraded = verdict(metric, value, baseline, spec.max_drop, predictions=predictions,
                                   enough=labelled >= spec.min_rows)
        rows.append(PerformanceRow(metric, value, baseline, lo, hi, spec.max_drop, degraded, status, labelled, predictions))
    return rows


def label_gaps(client: Client, spec: ModelSpec, now: dt.datetime, windows: int = 48) -> list[dict[str, Any]]:
    """The recent windows whose performance has no verdict for want of labels, newest first, each saying
    whether its labels are still expected ("waiting for labels") or overdue ("no labels came"): an alert
    rule passes over an overdue window, so this is where an owner sees that one was never judged."""
    wait = expected_label_wait(spec)
    rows = client.query(
        "SELECT window_start, window_end, max(labelled_rows), max(prediction_rows) FROM performance_results FINAL "
        "WHERE model = {m:String} AND segment = '' AND window_end > {since:DateTime64(3, 'UTC')} "
        "GROUP BY window_start, window_end HAVING countIf(status = 'insufficient_data') > 0 "
        "ORDER BY window_end DESC", parameters={"m": spec.name, "since": now - spec.window * windows}).result_rows
    out = []
    for start, end, labelled, predictions in rows:
        start_utc, end_utc = as_utc(start), as_utc(end)
        waiting = end_utc + wait > now
        span = f"[{start_utc.isoformat()}, {end_utc.isoformat()})"
        out.append({"window_start": start_utc.isoformat(), "window_end": end_utc.isoformat(),
                    "labelled_rows": int(labelled), "prediction_rows": int(predictions),
                    "state": "waiting" if waiting else "overdue",
                    "message": (f"waiting for labels of window {span} ({labelled} of {predictions})" if waiting else
                                f"no labels came for window {span} ({labelled} of {predictions} labelled); "
                                "alert rules passed over it")})
    return out
