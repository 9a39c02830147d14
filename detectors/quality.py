"""Data-quality checks of one window, from the same profile and summaries as drift, plus two counts.

Per feature: missing-value share, share of values outside the reference's
range (numeric), share of categories the reference never had (categorical).
Per model: the dead-letter rate (events of this model the collector could not
accept) and the volume against what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from detectors.aggregates import DETECTOR_SETTINGS, ColumnProfile, Summaries
from detectors.config import ModelSpec
from detectors.sources import Window
from detectors.summaries import ColumnType


@dataclass
class QualityRow:
    column: str
    check: str
    value: float | None
    threshold: float
    failed: bool
    status: str  # ok | failed | no_data | insufficient_data | no_expectation
    rows: int


DEAD_LETTERS_SQL = r"""
    SELECT count() FROM (
        SELECT if(isValidJSON(raw), JSONExtractString(raw, 'model'),
                  extract(raw, '"model"\\s*:\\s*"([^"\\\\]*)"')) AS model,
               parseDateTime64BestEffortOrNull(extract(raw, '"ts"\\s*:\\s*"([^"\\\\]*)"'), 3, 'UTC') AS event_ts,
               coalesce(event_ts, received_at) AS at
        FROM dead_letters
    ) WHERE model = {m:String} AND at >= {s:DateTime64(3, 'UTC')} AND at < {e:DateTime64(3, 'UTC')}"""
"""Dead letters of a model in a window. The model is the top-level `model` where the dead letter is JSON (a name
inside `features` does not count); for broken JSON, the first `"model": "..."` in the bytes (the HTTP API refuses
such events from team-limited tokens, so one team cannot place them on another's model). The event's own `ts`
places it in its window (backfills), else the time it was received."""


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _row(column: str, check: str, value: float | None, threshold: float, rows: int, *, above: bool = True,
         min_rows: int = 1) -> QualityRow:
    if value is None:
        return QualityRow(column, check, None, threshold, False, "no_data", rows)
    if rows < min_rows:
        return QualityRow(column, check, value, threshold, False, "insufficient_data", rows)
    failed = value > threshold if above else value < threshold
    return QualityRow(column, check, value, threshold, failed, "failed" if failed else "ok", rows)


def column_checks(model: ModelSpec, profiles: dict[str, ColumnProfile], summaries: Summaries) -> list[QualityRow]:
    spec = model.quality
    out = []
    for name, p in profiles.items():
        if p.column.role != "feature":
            continue
        rows = p.current_rows
        out.append(_row(name, "missing_share", _share(rows - p.current_count, rows), spec.max_missing_share, rows,
                        min_rows=spec.min_rows))
        if p.column.type is ColumnType.NUMERIC:
            value = _share(summaries.out_of_range.get(name, 0), p.current_count) if p.reference_count else None
            out.append(_row(name, "out_of_range_share", value, spec.max_out_of_range_share, rows,
                            min_rows=spec.min_rows))
        elif name in summaries.counts:
            counts = summaries.counts[name]
            unseen = sum(c for k, c in counts.current.items() if counts.reference.get(k, 0) == 0)
            value = _share(unseen, p.current_count) if p.reference_count else None
            out.append(_row(name, "unseen_category_share", value, spec.max_unseen_share, rows,
                            min_rows=spec.min_rows))
    return out


def model_checks(
    client: Client, model: ModelSpec, window: Window, current_rows: int, expected_rows: float | None
) -> list[QualityRow]:
    """Dead-letter rate and volume; `expected_rows` comes from config or the reference's rate."""
    spec = model.quality
    dead = int(client.query(DEAD_LETTERS_SQL, parameters={"s": window.start, "e": window.end, "m": model.name},
                            settings=DETECTOR_SETTINGS).result_rows[0][0])
    total = current_rows + dead
    out = [_row("", "dead_letter_rate", _share(dead, total), spec.max_dead_letter_rate, total, min_rows=spec.min_rows)]
    expected = spec.expected_rows if spec.expected_rows is not None else expected_rows
    if not expected:
        out.append(QualityRow("", "volume_ratio", None, spec.min_volume_ratio, False, "no_expectation", current_rows))
        return out
    ratio = current_rows / expected
    low = ratio < spec.min_volume_ratio
    high = spec.max_volume_ratio is not None and ratio > spec.max_volume_ratio
    out.append(QualityRow("", "volume_ratio", ratio, spec.min_volume_ratio, low or high,
                          "failed" if low or high else "ok", current_rows))
    return out
