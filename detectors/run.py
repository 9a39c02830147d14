"""One detection: a model, a window, a stage; every segment; results written and the run recorded.

Stages: `drift` computes drift and data quality (they share the same scans),
then the estimated performance (CBPE/DLE, which needs no labels);
`performance` computes the metrics once the label delay has passed. A run
that fails is recorded with its error and status `error`; it never raises
past `run_stage`, so one broken model cannot stop the others.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass, field

from clickhouse_connect.driver.client import Client

from detectors import aggregates, drift, estimation, multivariate, performance, quality, states
from detectors.config import ModelSpec
from detectors.results import (
    DRIFT_COLUMNS,
    ESTIMATED_COLUMNS,
    MULTIVARIATE_COLUMNS,
    PERFORMANCE_COLUMNS,
    QUALITY_COLUMNS,
    ResultKey,
    drift_rows,
    estimated_rows,
    multivariate_rows,
    performance_rows,
    quality_rows,
    record_run,
    replace_window,
)
from detectors.sources import (
    ALL_ROWS,
    TS,
    Column,
    Query,
    Segment,
    Window,
    column_sides_sql,
    columns_for,
    label_horizon,
    late_labels_sql,
    sides_sql,
    value_sql,
)
from detectors.summaries import ColumnType
from driftline import metrics

log = logging.getLogger(__name__)

STAGES = ("drift", "performance")


@dataclass
class RunResult:
    model: str
    stage: str
    window: Window
    status: str  # ok | no_data | insufficient_data (performance: too few labels yet) | error
    run_id: uuid.UUID
    duration_s: float
    rows_scanned: int = 0
    drifted_columns: list[str] = field(default_factory=list)
    dataset_drifted: bool = False
    multivariate_drifted: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    degraded_metrics: list[str] = field(default_factory=list)
    error: str = ""
    drift_path: str = ""  # drift stage, all rows: states | states+raw | raw (see detectors/states.py)
    late_labels: int = 0  # performance stage: labels of the window's predictions past the label horizon


def _model_version(client: Client, model: ModelSpec, window: Window) -> str:
    rows = client.query(
        f"SELECT model_version, count() AS c FROM predictions WHERE model = {{m:String}} "
        f"AND ts >= {{s:{TS}}} AND ts < {{e:{TS}}} GROUP BY model_version ORDER BY c DESC, model_version LIMIT 1",
        parameters={"m": model.name, "s": window.start, "e": window.end},
    ).result_rows
    return str(rows[0][0]) if rows else ""


def segments_of(client: Client, model: ModelSpec, window: Window) -> list[Segment]:
    """All rows, then the most frequent values of each segment key in the window."""
    out = [ALL_ROWS]
    for key in model.segments:
        q = Query()
        value = value_sql(f"features[{q.param(key, 'String', 'k')}]", ColumnType.CATEGORICAL)
        rows = client.query(
            f"SELECT {value} AS v, count() AS c FROM predictions WHERE model = {q.param(model.name, 'String', 'm')} "
            f"AND ts >= {q.param(window.start, TS, 't')} AND ts < {q.param(window.end, TS, 't')} AND v IS NOT NULL "
            f"GROUP BY v ORDER BY c DESC, v LIMIT {int(model.max_segments)}",
            parameters=q.parameters,
        ).result_rows
        out += [Segment(key, str(v)) for v, _ in rows]
    return out


def _expected_rows(model: ModelSpec, window: Window, reference_rows: int) -> float | None:
    """The reference's rate scaled to the window, when the reference is a time range of production data."""
    ref = model.reference
    if ref.range is not None:
        length = (ref.range.end - ref.range.start).total_seconds()
    elif ref.rolling is not None:
        length = (ref.rolling.length or (window.end - window.start)).total_seconds()
    else:
        return None
    return reference_rows * (window.end - window.start).total_seconds() / length if reference_rows else None


def _raw_drift(client: Client, model: ModelSpec, window: Window, segment: Segment, columns: list[Column],
               summaries: aggregates.Summaries) -> tuple[dict[str, aggregates.ColumnProfile], int, int]:
    """The raw passes of `detectors.aggregates` for `columns`: profiles, reference rows, current rows."""
    q = Query()  # each column's SQL carries parameters of its query: built again for this one
    names = {c.name for c in columns}
    columns = [c for c in columns_for(model, q, prediction=model.drift.prediction, target=model.drift.target)
               if c.name in names]
    sides, columns = column_sides_sql(model, window, segment, q, columns,
                                      with_labels=any(c.role == "target" for c in columns))
    profiles, ref_rows, cur_rows = aggregates.profile(client, sides, q, columns)
    summaries.rows_scanned += ref_rows + cur_rows
    plans = drift.plan_columns(model, profiles)
    needs = drift.needs_of(model, plans)
    if cur_rows and ref_rows:
        distinct = aggregates.pooled_distinct_counts(client, sides, q, profiles, needs)
        summaries.rows_scanned += (ref_rows + cur_rows) * (bool(distinct) + 1)
        aggregates.histograms(client, sides, q, profiles, needs, distinct, summaries)
        aggregates.refine(client, sides, q, profiles, drift.unsettled_by_bins(plans, summaries), summaries)
        aggregates.exact_cdf(client, sides, q, profiles, needs.exact_cdf, summaries)
    return profiles, ref_rows, cur_rows


def _state_drift(client: Client, model: ModelSpec, window: Window, segment: Segment, columns: list[Column],
                 summaries: aggregates.Summaries) -> tuple[dict[str, aggregates.ColumnProfile], int, int, list[Column]] | None:
    """The columns the window states can serve, summarised from them; None when states cannot be used.

    Returns (profiles, reference rows, current rows, the columns left for the raw passes).
    """
    why = states.usable(model, window, segment)
    sides = None if why else states.read(client, model, window, columns)
    if sides is None:
        log.debug("window states not used", extra={"model": model.name, "reason": why or "states incomplete"})
        return None
    profiles = states.profiles(sides, columns)
    plans = drift.plan_columns(model, profiles)
    needs = drift.needs_of(model, plans)
    raw = states.needs_raw(plans, needs)
    served = {name: p for name, p in profiles.items() if name not in raw}
    if sides.reference_rows and sides.current_rows:
        raw |= states.histograms(sides, served, needs, summaries)
        raw |= drift.unsettled_by_bins(plans, summaries)
    for name in raw:  # summarised from raw rows after all: drop what the states gave
        del profiles[name]
        for found in (summaries.counts, summaries.fine, summaries.cdf, summaries.out_of_range):
            found.pop(name, None)
        for key in [key for key in summaries.bins if key[0] == name]:
            del summaries.bins[key]
    return profiles, sides.reference_rows, sides.current_rows, [c for c in columns if c.name not in profiles]


def _drift_segment(client: Client, model: ModelSpec, window: Window, segment: Segment, result: RunResult) -> tuple[drift.DriftOutcome, list[quality.QualityRow]]:
    """Drift and quality of one segment: from the window states where they serve, raw passes for the rest."""
    columns = columns_for(model, Query(), prediction=model.drift.prediction, target=model.drift.target)
    summaries = aggregates.Summaries()
    served = _state_drift(client, model, window, segment, columns, summaries)
    if served is None:
        profiles: dict[str, aggregates.ColumnProfile] = {}
        raw_columns, path = columns, "raw"
    else:
        profiles, ref_rows, cur_rows, raw_columns = served
        path = "states+raw" if raw_columns else "states"
    if raw_columns or served is None:  # (a model without columns still counts its rows)
        raw_profiles, ref_rows, cur_rows = _raw_drift(client, model, window, segment, raw_columns, summaries)
        profiles |= raw_profiles
    profiles = {c.name: profiles[c.name] for c in columns}  # registry order, as the raw path gives
    plans = drift.plan_columns(model, profiles)
    outcome = drift.score_columns(model, plans, summaries)
    checks = quality.column_checks(model, profiles, summaries)
    if segment == ALL_ROWS:
        checks += quality.model_checks(client, model, window, cur_rows, _expected_rows(model, window, ref_rows))
        result.drift_path = path
    result.rows_scanned += summaries.rows_scanned
    return outcome, checks


def _estimate_segments(client: Client, model: ModelSpec, version: str, window: Window, segments: list[Segment],
                       run_id: uuid.UUID) -> None:
    """Estimated performance of every segment (no labels of the window needed), after drift and quality are stored."""
    fitted = estimation.fit(client, model, window)
    out: list[list[object]] = []
    for segment in segments:
        rows = estimation.estimate(client, model, window, segment, fitted)
        out += estimated_rows(ResultKey(model.name, version, segment.label, window, run_id), rows)
    replace_window(client, "estimated_performance_results", ESTIMATED_COLUMNS, out, model.name, window, run_id)
def _multivariate(client: Client, model: ModelSpec, version: str, window: Window, result: RunResult) -> None:
    """Multivariate drift on all rows (not per segment: the classifier costs seconds); disabled: clears the window."""
    rows: list[multivariate.MultivariateRow] = []
    if model.multivariate.enabled:
        rows = multivariate.detect(client, model, window)
        result.multivariate_drifted = [r.method for r in rows if r.drifted]
        first = rows[0]  # the sample reads both sides once, the PCA pass (when there is a verdict) once more
        result.rows_scanned += (first.reference_rows + first.current_rows) * (2 if first.sample_rows else 1)
    replace_window(client, "multivariate_drift_results", MULTIVARIATE_COLUMNS,
                   multivariate_rows(ResultKey(model.name, version, ALL_ROWS.label, window, result.run_id), rows),
                   model.name, window, result.run_id)


LATE_LABEL_COLUMNS = ["model", "window_start", "window_end", "labels", "horizon_seconds", "run_id"]


def _late_labels(client: Client, model: ModelSpec, window: Window, run_id: uuid.UUID, result: RunResult) -> None:
    """Count the window's labels that arrived past its horizon (so were not joined) and keep the count per window.

    Cheap while the horizon has not passed: the labels table is sorted by (model, ts), so a scan from a
    future instant reads nothing. A window without any keeps no row (and loses an earlier run's).
    """
    q = Query()
    late = int(client.query(late_labels_sql(model, window, q), parameters=q.parameters,
                            settings=aggregates.DETECTOR_SETTINGS).result_rows[0][0])
    result.late_labels = late
    rows = [[model.name, window.start, window.end, late, label_horizon(model).total_seconds(), run_id]] if late else []
    replace_window(client, "late_labels", LATE_LABEL_COLUMNS, rows, model.name, window, run_id)
    if late:
        log.warning("labels arrived past the label horizon and were not joined", extra={
            "model": model.name, "window": str(window), "late_labels": late,
            "label_horizon_s": label_horizon(model).total_seconds(),
            "hint": "raise the model's label_horizon in models.yaml and backfill the window (driftline detect)"})


def run_stage(client: Client, model: ModelSpec, window: Window, stage: str, *, trigger: str = "manual") -> RunResult:
    """Compute and store one stage of one window; errors are recorded and returned, not raised."""
    run_id = uuid.uuid4()
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    result = RunResult(model.name, stage, window, "ok", run_id, 0.0)
    try:
        version = _model_version(client, model, window)
        model = model.for_version(version)  # a per-version reference: this version's own upload
        segments = segments_of(client, model, window)
        if stage == "drift":
            drift_out: list[list[object]] = []
            quality_out: list[list[object]] = []
            for segment in segments:
                key = ResultKey(model.name, version, segment.label, window, run_id)
                outcome, checks = _drift_segment(client, model, window, segment, result)
                drift_out += drift_rows(key, outcome)
                quality_out += quality_rows(key, checks)
                if segment == ALL_ROWS:
                    result.drifted_columns = [r.column for r in outcome.columns if r.drifted]
                    result.dataset_drifted = bool(outcome.dataset and outcome.dataset.drifted)
                    result.failed_checks = [f"{c.check}:{c.column}" if c.column else c.check for c in checks if c.failed]
                    if outcome.dataset is not None and outcome.dataset.status == "no_data":
                        result.status = "no_data"
            replace_window(client, "drift_results", DRIFT_COLUMNS, drift_out, model.name, window, run_id)
            replace_window(client, "quality_results", QUALITY_COLUMNS, quality_out, model.name, window, run_id)
            if model.estimation.enabled:
                _estimate_segments(client, model, version, window, segments, run_id)
            _multivariate(client, model, version, window, result)
        elif stage == "performance":
            perf_out: list[list[object]] = []
            for segment in segments:
                q = Query()
                sides = sides_sql(model, window, segment, q, with_labels=True)
                rows = performance.compute(client, model, sides, q)
                perf_out += performance_rows(ResultKey(model.name, version, segment.label, window, run_id), rows)
                if segment == ALL_ROWS:
                    result.degraded_metrics = [r.metric for r in rows if r.degraded]
                    if rows and all(r.status == "no_data" for r in rows):
                        result.status = "no_data"
                    elif rows and all(r.status == "insufficient_data" for r in rows):
                        result.status = "insufficient_data"  # labels may still come: the scheduler retries
            replace_window(client, "performance_results", PERFORMANCE_COLUMNS, perf_out, model.name, window, run_id)
            _late_labels(client, model, window, run_id, result)
        else:
            raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    except Exception as exc:  # a failing model is recorded, never fatal for the scheduler
        first_line = (str(exc).strip().splitlines() or [""])[0]
        result.status, result.error = "error", f"{type(exc).__name__}: {first_line}"[:500]
        log.exception("detector run failed", extra={"model": model.name, "stage": stage, "window": str(window)})
    result.duration_s = time.perf_counter() - t0
    try:
        record_run(client, run_id=run_id, model=model.name, stage=stage, window=window, trigger=trigger,
                   started_at=started, rows_scanned=result.rows_scanned, status=result.status, error=result.error)
    except Exception:
        log.exception("could not record the detector run", extra={"model": model.name, "stage": stage})
    metrics.detector_run(result)
    log.info("detector run", extra={"model": model.name, "stage": stage, "window": str(window),
                                    "status": result.status, "duration_s": round(result.duration_s, 3),
                                    "drifted": result.drifted_columns,
                                    "multivariate_drifted": result.multivariate_drifted, "degraded": result.degraded_metrics,
                                    "rows_scanned": result.rows_scanned, "drift_path": result.drift_path,
                                    "late_labels": result.late_labels})
    return result
