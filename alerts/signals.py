"""What a rule looks at: one value per window (and per subject) read from the detector results.

Every condition becomes a series of `Observation`s, oldest first, that the
lifecycle steps through. A value of None means "no verdict" (no data, too
few rows, no reference): the lifecycle holds the alert as it is.

- dataset_drift: the share of drifted features (the `__dataset__` row);
- feature_drift: 1.0 when the feature drifted in that window, else 0.0, one
  subject per feature;
- multivariate_drift: 1.0 when the rule's method (or, with `any`, either
  method) drifted in that window, else 0.0; None when no method gave a
  verdict (too few rows, no reference);
- performance_drop: how far the metric fell below its reference baseline
  (absolute for scores, relative for errors, as the detector judges it);
  windows still waiting for labels stop the series, so a verdict is never
  taken before its labels had a chance to arrive;
- quality: 1.0 when the check failed on any column, else 0.0;
- infra: the metric of the metrics topic aggregated over the window;
- concept_drift: windows of label arrival (ingested_at), the order the
  streaming detectors read: 1.0 when a (listed) detector fired on a row of
  the window, 0.0 when the window's labels went through without a firing,
  None when no label arrived in it. A window is judged only once the
  stream's cursor has passed its end, so a verdict never changes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from alerts.config import Rule
from detectors.config import ModelSpec
from detectors.performance import LOWER_IS_BETTER
from detectors.results import DATASET_COLUMN
from detectors.schedule import last_complete_window, window_containing, windows_between
from detectors.sources import TS, Window, expected_label_wait
from driftline.timestamps import as_utc

UTC = dt.timezone.utc
JUDGED = ("ok", "drifted")
PERFORMANCE_FINAL = ("ok", "degraded", "no_data", "no_baseline")


@dataclass(frozen=True)
class Observation:
    window: Window
    model_version: str
    subject: str  # feature, metric or check; "" for model-level conditions
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)


def _window(start: dt.datetime, end: dt.datetime) -> Window:
    return Window(as_utc(start), as_utc(end))


def observe(client: Client, rule: Rule, model: ModelSpec, since: dt.datetime, now: dt.datetime,
            grace: dt.timedelta = dt.timedelta(0)) -> list[Observation]:
    """Observations of windows ending after `since`, oldest first (infra windows once `grace` has passed)."""
    kind = rule.when.kind
    base = {"m": model.name, "since": since}
    if kind == "dataset_drift":
        rows = client.query(
            f"SELECT window_start, window_end, model_version, score, status, current_rows FROM drift_results FINAL "
            f"WHERE model = {{m:String}} AND segment = '' AND column = {{c:String}} AND window_end > {{since:{TS}}} "
            f"ORDER BY window_start", parameters={**base, "c": DATASET_COLUMN}).result_rows
        assert rule.when.dataset_drift is not None
        shares = {"rule_share": rule.when.dataset_drift.thresholds(model.drift.share).fire,
                  "model_share": model.drift.share}
        return [Observation(_window(s, e), v, "", score if status in JUDGED else None, {"status": status, **shares})
                for s, e, v, score, status, _rows in rows]
    if kind == "feature_drift":
        assert rule.when.feature_drift is not None
        rows = client.query(
            f"SELECT window_start, window_end, model_version, column, drifted, status, method, score, threshold, "
            f"p_value FROM drift_results FINAL WHERE model = {{m:String}} AND segment = '' AND column_role = 'feature' "
            f"AND column IN {{cols:Array(String)}} AND window_end > {{since:{TS}}} ORDER BY window_start, column",
            parameters={**base, "cols": list(rule.when.feature_drift.features)}).result_rows
        return [Observation(_window(s, e), v, col, float(drifted) if status in JUDGED else None,
                            {"status": status, "method": method, "score": score, "threshold": threshold,
                             "p_value": p_value})
                for s, e, v, col, drifted, status, method, score, threshold, p_value in rows]
    if kind == "multivariate_drift":
        assert rule.when.multivariate_drift is not None
        method = rule.when.multivariate_drift.method
        rows = client.query(
            f"SELECT window_start, window_end, any(model_version), maxIf(drifted, status IN {{judged:Array(String)}}), "
            f"countIf(status IN {{judged:Array(String)}}), groupArray((method, status, value, lower, upper)) "
            f"FROM multivariate_drift_results FINAL WHERE model = {{m:String}} AND segment = '' "
            f"AND ({{method:String}} = 'any' OR method = {{method:String}}) AND window_end > {{since:{TS}}} "
            f"GROUP BY window_start, window_end ORDER BY window_start",
            parameters={**base, "judged": list(JUDGED), "method": method}).result_rows
        return [Observation(_window(s, e), v, "", float(drifted) if judged else None,
                            {"methods": {m: {"status": st, "value": value, "lower": lower, "upper": upper}
                                         for m, st, value, lower, upper in methods}})
                for s, e, v, drifted, judged, methods in rows]
    if kind == "performance_drop":
        assert rule.when.performance_drop is not None
        metric = rule.when.performance_drop.metric
        rows = client.query(
            f"SELECT window_start, window_end, model_version, value, baseline, status, labelled_rows "
            f"FROM performance_results FINAL WHERE model = {{m:String}} AND segment = '' AND metric = {{metric:String}} "
            f"AND window_end > {{since:{TS}}} ORDER BY window_start", parameters={**base, "metric": metric}).result_rows
        out = []
        horizon = expected_label_wait(model)
        # A window whose labels may still come is waited for only while no later window has its verdict: at
        # the trailing edge it holds the judgement back (its labels are late, not missing); once a later
        # window is judged, it is passed over as a window without a verdict, so one window whose labels
        # never come cannot hold back every later one (the status page says which window is waiting).
        final = [i for i, row in enumerate(rows) if row[5] in PERFORMANCE_FINAL]
        last_final = final[-1] if final else -1
        for i, (s, e, v, value, baseline, status, labelled) in enumerate(rows):
            window = _window(s, e)
            waiting = status not in PERFORMANCE_FINAL and window.end + horizon > now
            if waiting and i > last_final:
                break  # labels may still come: judge this window (and later ones) on a later pass
            drop = None
            if status in ("ok", "degraded") and value is not None and baseline is not None:
                drop = (value - baseline) / baseline if metric in LOWER_IS_BETTER and baseline else baseline - value
            out.append(Observation(window, v, metric, drop, {"status": status, "value": value, "baseline": baseline,
                                                             "labelled_rows": labelled, "passed_over": waiting}))
        return out
    if kind == "quality":
        assert rule.when.quality is not None
        rows = client.query(
            f"SELECT window_start, window_end, any(model_version), max(failed), countIf(status NOT IN ('no_data', 'insufficient_data')), "
            f"groupArrayIf(column, failed = 1), max(value), any(threshold) FROM quality_results FINAL "
            f"WHERE model = {{m:String}} AND segment = '' AND check = {{check:String}} AND window_end > {{since:{TS}}} "
            f"GROUP BY window_start, window_end ORDER BY window_start",
            parameters={**base, "check": rule.when.quality.check}).result_rows
        return [Observation(_window(s, e), v, rule.when.quality.check, float(failed) if judged else None,
                            {"columns": list(cols), "value": worst, "threshold": threshold})
                for s, e, v, failed, judged, cols, worst, threshold in rows]
    if kind == "concept_drift":
        return _concept_drift(client, rule, model, since)
    assert rule.when.infra is not None
    return _infra(client, rule, model, since, now, grace)


def _concept_drift(client: Client, rule: Rule, model: ModelSpec, since: dt.datetime) -> list[Observation]:
    assert rule.when.concept_drift is not None
    detectors = list(rule.when.concept_drift.detectors or model.concept_drift.active(model.task))
    cursor = client.query("SELECT cursor_ingested_at FROM concept_drift_state FINAL WHERE model = {m:String}",
                          parameters={"m": model.name}).result_rows
    if not cursor:
        return []
    processed = window_containing(as_utc(cursor[0][0]), model.window).start  # windows ending here are done
    windows = [w for w in windows_between(since, processed, model.window) if w.end > since]
    if not windows:
        return []
    params = {"m": model.name, "len": int(model.window.total_seconds() * 1000), "lo": windows[0].start,
              "hi": windows[-1].end, "d": detectors}
    bucket = "toStartOfInterval({col}, toIntervalMillisecond({{len:Int64}}), 'UTC')"
    labels = {as_utc(w): int(n) for w, n in client.query(
        f"SELECT {bucket.format(col='ingested_at')} AS w, count() FROM labels WHERE model = {{m:String}} "
        f"AND ingested_at >= {{lo:{TS}}} AND ingested_at < {{hi:{TS}}} GROUP BY w", parameters=params).result_rows}
    fired = {as_utc(w): (n, list(ds)) for w, n, ds in client.query(
        f"SELECT {bucket.format(col='label_ingested_at')} AS w, count(), groupUniqArray(detector) "
        f"FROM concept_drift_events FINAL WHERE model = {{m:String}} AND detector IN {{d:Array(String)}} "
        f"AND label_ingested_at >= {{lo:{TS}}} AND label_ingested_at < {{hi:{TS}}} GROUP BY w",
        parameters=params).result_rows}
    out = []
    for window in windows:
        n, which = fired.get(window.start, (0, []))
        value = 1.0 if n else (0.0 if labels.get(window.start) else None)
        out.append(Observation(window, "", "", value, {"firings": int(n), "detectors": sorted(which),
                                                        "labels": labels.get(window.start, 0)}))
    return out


AGGREGATES = {
    "avg": "avgIf(metrics[{k:String}], mapContains(metrics, {k:String}))",
    "max": "maxIf(metrics[{k:String}], mapContains(metrics, {k:String}))",
    "min": "minIf(metrics[{k:String}], mapContains(metrics, {k:String}))",
    "sum": "sumIf(metrics[{k:String}], mapContains(metrics, {k:String}))",
    "p99": "quantileIf(0.99)(metrics[{k:String}], mapContains(metrics, {k:String}))",
}


def _infra(client: Client, rule: Rule, model: ModelSpec, since: dt.datetime, now: dt.datetime,
           grace: dt.timedelta) -> list[Observation]:
    """Infra metrics have no detector: windows are the model's own, up to the last complete one."""
    infra = rule.when.infra
    assert infra is not None
    last = last_complete_window(model, "drift", now, grace)
    windows = [w for w in windows_between(max(since, last.end - model.window * 48), last.end, model.window)
               if w.end > since]
    if not windows:
        return []
    length_ms = int(model.window.total_seconds() * 1000)
    rows = client.query(
        f"SELECT toStartOfInterval(ts, toIntervalMillisecond({{len:Int64}}), 'UTC') AS w, "
        f"{AGGREGATES[infra.aggregate]}, countIf(mapContains(metrics, {{k:String}})) FROM infra_metrics "
        f"WHERE model = {{m:String}} AND ts >= {{lo:{TS}}} AND ts < {{hi:{TS}}} GROUP BY w",
        parameters={"m": model.name, "k": infra.metric, "len": length_ms, "lo": windows[0].start,
                    "hi": windows[-1].end}).result_rows
    values = {as_utc(w): (value, count) for w, value, count in rows}
    out = []
    for window in windows:
        value, count = values.get(window.start, (None, 0))
        out.append(Observation(window, "", infra.metric, value if count else None, {"samples": count}))
    return out
