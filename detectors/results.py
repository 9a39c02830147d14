"""Writing detector results: one insert per table per run, replacing what an earlier run wrote.

The result tables are ReplacingMergeTrees keyed on (model, segment, window,
column/check/metric), so re-running a window replaces its rows (queries read
them with FINAL). A recompute after a configuration change can produce fewer
rows (a feature removed); rows of the same window from other runs are then
deleted, so a window never shows a mix of two configurations.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from detectors.drift import DriftOutcome
from detectors.estimation import EstimateRow
from detectors.multivariate import MultivariateRow
from detectors.performance import PerformanceRow
from detectors.quality import QualityRow
from detectors.sources import TS, Window

DRIFT_COLUMNS = [
    "model", "model_version", "segment", "window_start", "window_end", "column", "column_role", "column_type",
    "method", "statistic", "p_value", "adjusted_p_value", "score", "threshold", "effect_method", "effect_size",
    "effect_threshold", "drifted", "status", "exact", "reference_rows", "current_rows", "run_id",
]
QUALITY_COLUMNS = [
    "model", "model_version", "segment", "window_start", "window_end", "column", "check", "value", "threshold",
    "failed", "status", "rows", "run_id",
]
PERFORMANCE_COLUMNS = [
    "model", "model_version", "segment", "window_start", "window_end", "metric", "value", "baseline", "ci_low",
    "ci_high", "max_drop", "degraded", "status", "labelled_rows", "prediction_rows", "run_id",
]
ESTIMATED_COLUMNS = [
    "model", "model_version", "segment", "window_start", "window_end", "metric", "method", "value",
    "sampling_error", "ci_low", "ci_high", "baseline", "max_drop", "degraded", "status", "prediction_rows",
    "estimated_rows", "detail", "run_id",
]
MULTIVARIATE_COLUMNS = [
    "model", "model_version", "segment", "window_start", "window_end", "method", "value", "lower", "upper",
    "drifted", "status", "reference_rows", "current_rows", "sample_rows", "run_id",
]
RUN_COLUMNS = [
    "run_id", "model", "stage", "window_start", "window_end", "trigger", "started_at", "finished_at",
    "duration_ms", "rows_scanned", "status", "error",
]

DATASET_COLUMN = "__dataset__"


@dataclass(frozen=True)
class ResultKey:
    model: str
    model_version: str
    segment: str
    window: Window
    run_id: uuid.UUID

    def prefix(self) -> list[Any]:
        return [self.model, self.model_version, self.segment, self.window.start, self.window.end]


def drift_rows(key: ResultKey, outcome: DriftOutcome) -> list[list[Any]]:
    rows = [
        [*key.prefix(), r.column, r.role, r.column_type, r.method, r.statistic, r.p_value, r.adjusted_p_value,
         r.score, r.threshold, r.effect_method, r.effect_size, r.effect_threshold, int(r.drifted), r.status,
         int(r.exact), r.reference_rows, r.current_rows, key.run_id]
        for r in outcome.columns
    ]
    d = outcome.dataset
    if d is not None:
        rows.append([*key.prefix(), DATASET_COLUMN, "dataset", "", "drift_share", d.share, None, None, d.share,
                     d.threshold, "", float(d.drifted_count), None, int(d.drifted), d.status, 1, 0, d.columns,
                     key.run_id])
    return rows


def quality_rows(key: ResultKey, rows: Sequence[QualityRow]) -> list[list[Any]]:
    return [[*key.prefix(), r.column, r.check, r.value, r.threshold, int(r.failed), r.status, r.rows, key.run_id]
            for r in rows]


def performance_rows(key: ResultKey, rows: Sequence[PerformanceRow]) -> list[list[Any]]:
    return [[*key.prefix(), r.metric, r.value, r.baseline, r.ci_low, r.ci_high, r.max_drop, int(r.degraded),
             r.status, r.labelled_rows, r.prediction_rows, key.run_id] for r in rows]


def estimated_rows(key: ResultKey, rows: Sequence[EstimateRow]) -> list[list[Any]]:
    return [[*key.prefix(), r.metric, r.method, r.value, r.sampling_error, r.ci_low, r.ci_high, r.baseline,
             r.max_drop, int(r.degraded), r.status, r.prediction_rows, r.estimated_rows, r.detail, key.run_id]
            for r in rows]
def multivariate_rows(key: ResultKey, rows: Sequence[MultivariateRow]) -> list[list[Any]]:
    return [[*key.prefix(), r.method, r.value, r.lower, r.upper, int(r.drifted), r.status, r.reference_rows,
             r.current_rows, r.sample_rows, key.run_id] for r in rows]


def replace_window(client: Client, table: str, columns: list[str], rows: list[list[Any]],
                   model: str, window: Window, run_id: uuid.UUID) -> None:
    """Insert this run's rows of a window, then drop the window's rows left by other runs.

    The DELETE (a lightweight delete: a mutation of every part it touches) runs only when another run left
    rows: a window's first run, the scheduler's common case, costs one cheap primary-key count instead.
    """
    if rows:
        client.insert(table, rows, column_names=columns)
    where = (f"model = {{m:String}} AND window_start = {{s:{TS}}} AND window_end = {{e:{TS}}} "
             f"AND run_id != {{r:UUID}}")
    parameters = {"m": model, "s": window.start, "e": window.end, "r": str(run_id)}
    if client.query(f"SELECT count() FROM {table} WHERE {where}", parameters=parameters).result_rows[0][0]:
        client.command(f"DELETE FROM {table} WHERE {where}", parameters=parameters)


def record_run(client: Client, *, run_id: uuid.UUID, model: str, stage: str, window: Window, trigger: str,
               started_at: dt.datetime, rows_scanned: int, status: str, error: str = "") -> None:
    finished = dt.datetime.now(dt.timezone.utc)
    client.insert("detector_runs", [[
        run_id, model, stage, window.start, window.end, trigger, started_at, finished,
        (finished - started_at).total_seconds() * 1000, rows_scanned, status, error[:4000],
    ]], column_names=RUN_COLUMNS)
