"""Where the rows of a detection come from: the reference and the current window, as SQL.

Every statistic is one query over `sides`: the reference rows (side 0) and
the current window's rows (side 1), UNION ALL'd, so ClickHouse reads both in
one scan and aggregates them with `-If(side = 0/1)` combinators. All values
travel as query parameters; the only text pasted into SQL is what this
module writes itself.

The columns a detector can analyse are expressions over a row: a feature
(`features[name]`), the model's prediction, or its label (target). A
feature's expression reads the value as a number or as a category; a value
of the other JSON type reads as NULL and is counted as missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from detectors.config import PREDICTION_COLUMN, TARGET_COLUMN, ModelSpec, Task
from detectors.summaries import ColumnType

TS = "DateTime64(3, 'UTC')"


@dataclass(frozen=True)
class Window:
    """A half-open time range [start, end)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds need a time zone")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    def shifted(self, by: timedelta) -> "Window":
        return Window(self.start - by, self.end - by)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


@dataclass(frozen=True)
class Column:
    """One analysed column: its name in results, its role, its type and its SQL over a row."""

    name: str
    role: str  # feature | prediction | target
    type: ColumnType
    sql: str


@dataclass
class Query:
    """SQL text and the parameters it needs; helpers add parameters under unique names."""

    parameters: dict[str, Any] = field(default_factory=dict)

    def param(self, value: Any, type_: str, hint: str = "p") -> str:
        name = f"{hint}{len(self.parameters)}"
        self.parameters[name] = value
        return f"{{{name}:{type_}}}"


def value_sql(raw: str, column_type: ColumnType) -> str:
    """A Variant(Float64, String) read as a number (numeric) or as a category string."""
    if column_type is ColumnType.NUMERIC:
        return f"variantElement({raw}, 'Float64')"
    # A category sent as a JSON number (class 3) is the category "3".
    return f"if(isNull({raw}), NULL, toString({raw}))"


def columns_for(model: ModelSpec, q: Query, *, prediction: bool, target: bool) -> list[Column]:
    """The features of `model` (in registry order), then prediction and target if asked for."""
    out = []
    for name, feature in model.features.items():
        raw = f"features[{q.param(name, 'String', 'f')}]"
        out.append(Column(name, "feature", feature.type, value_sql(raw, feature.type)))
    output_type = ColumnType.NUMERIC if model.task is Task.REGRESSION else ColumnType.CATEGORICAL
    if prediction:
        out.append(Column(PREDICTION_COLUMN, "prediction", output_type, value_sql("prediction", output_type)))
    if target:
        out.append(Column(TARGET_COLUMN, "target", output_type, value_sql("label", output_type)))
    return out


@dataclass(frozen=True)
class Segment:
    """A slice of the rows: a categorical feature equal to a value; the empty segment is all rows."""

    key: str = ""
    value: str = ""

    @property
    def label(self) -> str:
        return f"{self.key}={self.value}" if self.key else ""


ALL_ROWS = Segment()


def _segment_filter(segment: Segment, q: Query) -> str:
    if not segment.key:
        return ""
    key = q.param(segment.key, "String", "sk")
    value = q.param(segment.value, "String", "sv")
    return f" AND {value_sql(f'features[{key}]', ColumnType.CATEGORICAL)} = {value}"


def label_horizon(model: ModelSpec) -> timedelta:
    """How long after a window's end its predictions' labels still join it: the model's `label_horizon`.

    A label joins by event_id whatever its own ts says (a label sent days late, stamped with its send time,
    still lands in its prediction's window) as long as it arrives before window end + horizon. The bound
    keeps the label scan of an old window (a backfill) from reading every label since; labels arriving later
    are counted by `late_labels_sql`, never dropped silently.
    """
    return model.label_horizon


def expected_label_wait(model: ModelSpec) -> timedelta:
    """How long labels are normally still coming after a window: twice the label delay plus a window, at least 1h.

    Used where waiting longer has a cost: alert evaluation holds a window without a verdict this long, and
    the streaming concept drift looks predictions up this far back. Not a limit on joins (`label_horizon`).
    """
    return max(model.label_delay * 2 + model.window, timedelta(hours=1))


def labelled_window_ids_sql(model_param: str, start: str, end: str, labels_where: str) -> str:
    """The event ids of a model's predictions in [start, end) that may have a label matching `labels_where`.

    The set a window's labels are looked up by. Why not every id of the window: ClickHouse builds an IN
    set in memory, and a 10M-row window's ids took 1.3 GB (docs/evidence.md) even when no label had
    arrived. The ids are first narrowed to those whose hash is among the matching labels' hashes (a set
    of UInt64, one per label), so both sets grow with the labels, not the window. Exact: a hash match
    only lets an id into the set, the caller's `event_id IN` compares the ids themselves.
    """
    return (f"(SELECT event_id FROM predictions WHERE model = {model_param} AND ts >= {start} AND ts < {end} "
            f"AND cityHash64(event_id) IN (SELECT cityHash64(event_id) FROM labels "
            f"WHERE model = {model_param} AND {labels_where}))")


def labels_sql(model_param: str, start: str, end: str, until: str) -> str:
    """The latest label of each prediction of [start, end), among labels that arrived in [start, until) (by ts)."""
    arrived = f"ts >= {start} AND ts < {until}"
    return (
        f"(SELECT event_id, argMax(label, ts) AS label FROM labels "
        f"WHERE model = {model_param} AND {arrived} "
        f"AND event_id IN {labelled_window_ids_sql(model_param, start, end, arrived)} "
        f"GROUP BY event_id)"
    )


def late_labels_sql(model: ModelSpec, window: Window, q: Query) -> str:
    """Count of labels of the window's predictions that arrived at or after window end + horizon (not joined)."""
    model_p = q.param(model.name, "String", "m")
    start = q.param(window.start, TS, "t")
    end = q.param(window.end, TS, "t")
    until = q.param(window.end + label_horizon(model), TS, "t")
    late = f"ts >= {until}"
    return (f"SELECT count() FROM labels WHERE model = {model_p} AND {late} "
            f"AND event_id IN {labelled_window_ids_sql(model_p, start, end, late)}")


ROW = "features, prediction, proba, label"
"""The columns of a row when no expressions are asked for."""
NO_LABEL_ROW = "features, prediction, proba, CAST(NULL AS Variant(Float64, String)) AS label"


def production_rows(
    model: ModelSpec, window: Window, segment: Segment, q: Query, *, with_labels: bool, select: str = ROW
) -> str:
    """`select` over the predictions of `model` in `window` (joined to their labels, if asked)."""
    model_p = q.param(model.name, "String", "m")
    start = q.param(window.start, TS, "t")
    end = q.param(window.end, TS, "t")
    where = f"p.model = {model_p} AND p.ts >= {start} AND p.ts < {end}{_segment_filter(segment, q)}"
    if with_labels:
        until = q.param(window.end + label_horizon(model), TS, "t")
        labels = labels_sql(model_p, start, end, until)
        source = f"predictions AS p LEFT JOIN {labels} AS l ON l.event_id = p.event_id"
    else:
        # Read the table itself (a `SELECT *` subquery here would make every pass read every feature).
        source = "predictions AS p"
        select = select.replace(ROW, NO_LABEL_ROW)
    return f"SELECT {select} FROM {source} WHERE {where}"


def reference_rows(
    model: ModelSpec, window: Window, segment: Segment, q: Query, *, with_labels: bool, select: str = ROW
) -> str:
    """`select` over the reference of `model` for a current `window`: the uploaded sample or a fixed/rolling range."""
    ref = model.reference
    if ref.upload is not None:
        model_p = q.param(model.name, "String", "m")
        name_p = q.param(ref.upload, "String", "r")
        return (f"SELECT {select} FROM reference_rows AS p "
                f"WHERE model = {model_p} AND reference = {name_p}{_segment_filter(segment, q)}")
    if ref.range is not None:
        span = Window(ref.range.start, ref.range.end)
    else:
        assert ref.rolling is not None
        start = window.start - ref.rolling.offset
        span = Window(start, start + (ref.rolling.length or (window.end - window.start)))
    return production_rows(model, span, segment, q, with_labels=with_labels, select=select)


def sides_sql(model: ModelSpec, window: Window, segment: Segment, q: Query, *, with_labels: bool) -> str:
    """Reference (side 0) and current (side 1) rows in one relation: side, features, prediction, proba, label."""
    ref = reference_rows(model, window, segment, q, with_labels=with_labels, select=f"0 AS side, {ROW}")
    cur = production_rows(model, window, segment, q, with_labels=with_labels, select=f"1 AS side, {ROW}")
    return f"({ref} UNION ALL {cur})"


def column_sides_sql(
    model: ModelSpec, window: Window, segment: Segment, q: Query, columns: list[Column], *, with_labels: bool
) -> tuple[str, list[Column]]:
    """Reference and current rows as (side, c0, c1, ...): each column's value computed inside each branch.

    Computing `features['x']` where the table is read lets ClickHouse read only the Map bucket holding
    `x`; passing the whole map up through the UNION made every pass read every feature (measured: the
    profile pass of 2 x 1M rows and 22 features took 2.5 s that way, 1.5 s this way). The returned
    columns refer to the aliases.
    """
    select = ", ".join(f"{c.sql} AS c{i}" for i, c in enumerate(columns))
    ref = reference_rows(model, window, segment, q, with_labels=with_labels, select=f"0 AS side, {select}")
    cur = production_rows(model, window, segment, q, with_labels=with_labels, select=f"1 AS side, {select}")
    aliased = [Column(c.name, c.role, c.type, f"c{i}") for i, c in enumerate(columns)]
    return f"({ref} UNION ALL {cur})", aliased
