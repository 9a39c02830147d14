"""`driftline reference upload`: a training sample becomes a model's reference, from CSV or Parquet.

The file is read in chunks (memory stays flat for large samples) and typed by
the registry: numeric features must parse as numbers; categorical features,
predictions and labels take the value model's stored form (driftline/values.py),
the same events get, so a CSV's "1.0", Parquet's 1.0 and an event's 1 are one
category or class. Probabilities come from `proba_<class>` columns, from the
registry's `reference.columns` mapping, or (binary) from one score column;
columns the model does not use are reported, not dropped silently. A binary
model's labels must hold positive_label and one other class at most.
An upload replaces any earlier reference of the same name for the model.
Every problem is reported with the column (and row), and nothing is written
unless the whole file is valid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from detectors.config import ModelSpec, Task, versioned_reference
from detectors.reference_file import ReferenceError, ReferenceFile
from detectors.summaries import ColumnType
from driftline.contracts import MAX_STRING_VALUE
from driftline.names import validate_identifier
from driftline.progress import Progress
from driftline.values import ValueTypeError, class_name, number_text, stored

log = logging.getLogger(__name__)

INGEST_COLUMNS = [
    "model", "reference", "row", "numbers", "categories", "prediction_number", "prediction_category", "proba",
    "label_number", "label_category",
]


@dataclass
class UploadResult:
    model: str
    reference: str
    rows: int
    columns: dict[str, str] = field(default_factory=dict)
    """How the file's columns were read: column -> feature | prediction | label | proba[<class>] | score."""
    ignored: list[str] = field(default_factory=list)
    """Columns of the file the model does not use (a misnamed probability column shows up here)."""


@dataclass
class Layout:
    """Which column of the file holds what: the registry's `reference.columns`, overridden by the caller."""

    prediction: str | None
    label: str | None
    proba: dict[str, str]  # class (text form) -> column
    score: str | None  # binary: probability of positive_label
    ignored: list[str]

    def roles(self, model: ModelSpec) -> dict[str, str]:
        out = {name: "feature" for name in model.features}
        if self.prediction:
            out[self.prediction] = "prediction"
        if self.label:
            out[self.label] = "label"
        out.update({column: f"proba[{cls}]" for cls, column in self.proba.items()})
        if self.score:
            out[self.score] = f"score (proba[{model.positive_label}])"
        return out


@dataclass
class Classes:
    """The classes seen in the prediction and label columns during validation (at most a few kept)."""

    prediction: dict[str, int] = field(default_factory=dict)
    label: dict[str, int] = field(default_factory=dict)

    def add(self, role: str, name: str | None, row: int) -> None:
        if name is None:
            return
        seen = self.prediction if role == "prediction" else self.label
        if name not in seen and len(seen) <= _MAX_CLASSES_KEPT:
            seen[name] = row


_MAX_CLASSES_KEPT = 50


def _number(value: Any, column: str, row: int, declared: str = "numeric") -> float | None:
    """A value of a numeric column: any float spelling (`nan` and empty cells are missing), booleans as 1/0."""
    if isinstance(value, str):
        if value.strip() == "":
            return None
        _bounded(value, column, row)
        form = stored(value)
        if isinstance(form, str):
            try:
                form = float(value)
            except ValueError:
                raise ReferenceError(f"column {column!r}, row {row}: {value!r} is not a number (declared "
                                     f"{declared})") from None
            if math.isnan(form):
                return None
            if math.isinf(form):
                raise ReferenceError(f"column {column!r}, row {row}: infinite values are not allowed")
        return form
    try:
        form = stored(value)
    except ValueError:
        raise ReferenceError(f"column {column!r}, row {row}: infinite values are not allowed") from None
    except ValueTypeError as exc:
        raise ReferenceError(f"column {column!r}, row {row}: {exc} (declared {declared})") from None
    if isinstance(form, str):
        raise ReferenceError(f"column {column!r}, row {row}: {value!r} is not a number (declared {declared})")
    return form


def _bounded(value: str, column: str, row: int) -> None:
    if len(value) > MAX_STRING_VALUE:
        raise ReferenceError(f"column {column!r}, row {row}: a value of {len(value):,} characters; values may have "
                             f"at most {MAX_STRING_VALUE:,} (as in events)")


def _category(value: Any, column: str, row: int) -> float | str | None:
    """A categorical value or class in its stored form: "1.0", 1, 1.0 and True are one category."""
    if isinstance(value, str):
        if value == "":
            return None
        _bounded(value, column, row)
    try:
        return stored(value)
    except ValueError:
        raise ReferenceError(f"column {column!r}, row {row}: infinite values are not allowed") from None
    except ValueTypeError as exc:
        raise ReferenceError(f"column {column!r}, row {row}: {exc}") from None


def _output(value: Any, output_type: ColumnType, column: str, row: int, declared: str) -> tuple[float | None, str | None]:
    if output_type is ColumnType.NUMERIC:
        return _number(value, column, row, declared), None
    form = _category(value, column, row)
    return (form, None) if isinstance(form, float) else (None, form)


def _probability(value: Any, column: str, row: int) -> float | None:
    p = _number(value, column, row, "a probability")
    if p is not None and not 0.0 <= p <= 1.0:
        raise ReferenceError(f"column {column!r}, row {row}: {p} is not a probability (0 to 1)")
    return p


def _rows(model: ModelSpec, reference: str, frame: pd.DataFrame, first_row: int, layout: Layout,
          classes: Classes, negative: str | None) -> list[list[Any]]:
    output_type = ColumnType.NUMERIC if model.task is Task.REGRESSION else ColumnType.CATEGORICAL
    declared = model.task.value
    prediction, label, score, positive = layout.prediction, layout.label, layout.score, model.positive_label
    out = []
    records = frame.to_dict("records")
    for offset, rec in enumerate(records):
        row = first_row + offset
        numbers: dict[str, float] = {}
        categories: dict[str, str] = {}
        for name, feature in model.features.items():
            if feature.type is ColumnType.NUMERIC:
                value = _number(rec.get(name), name, row, "numeric")
                if value is not None:
                    numbers[name] = value
            else:
                form = _category(rec.get(name), name, row)
                if isinstance(form, float):
                    numbers[name] = form  # stored as events store it: one Variant form per value
                elif form is not None:
                    categories[name] = form
        pred_n, pred_c = _output(rec.get(prediction), output_type, prediction, row, declared) if prediction else (None, None)
        label_n, label_c = _output(rec.get(label), output_type, label, row, declared) if label else (None, None)
        if output_type is ColumnType.CATEGORICAL:
            classes.add("prediction", pred_c if pred_n is None else number_text(pred_n), row)
            classes.add("label", label_c if label_n is None else number_text(label_n), row)
        proba = {cls: p for cls, col in layout.proba.items() if (p := _probability(rec.get(col), col, row)) is not None}
        if score is not None and (p := _probability(rec.get(score), score, row)) is not None:
            proba[positive] = p
            if negative is not None:
                proba[negative] = 1.0 - p
        out.append([model.name, reference, row, numbers, categories, pred_n, pred_c, proba, label_n, label_c])
    return out


def _layout(model: ModelSpec, columns: list[str], *, prediction_column: str | None, label_column: str | None,
            score_column: str | None, path: Path) -> Layout:
    """Which columns hold what; a column named by the registry or the caller must exist."""
    declared = model.reference.columns
    present = set(columns)
    prediction = prediction_column or declared.prediction
    label = label_column or declared.label
    score = score_column or declared.score
    for what, name, explicit in (("prediction", prediction, prediction_column or "prediction" in declared.model_fields_set),
                                 ("label", label, label_column or "label" in declared.model_fields_set),
                                 ("score", score, score is not None)):
        if explicit and name not in present:
            raise ReferenceError(f"{path}: the {what} column {name!r} is not in the file (it has "
                                 f"{', '.join(columns)})")
    if score is not None and model.task is not Task.BINARY:
        raise ReferenceError(f"{path}: a single score column is for binary models; {model.name!r} is "
                             f"{model.task.value} (map each class: reference.columns.proba)")
    proba: dict[str, str] = {}
    prefix = declared.proba_prefix
    for column in columns:
        if column.startswith(prefix) and column not in model.features and len(column) > len(prefix):
            proba[class_name(column[len(prefix):], what=f"class of column {column!r}")] = column
    for cls, column in declared.proba.items():
        if column not in present:
            raise ReferenceError(f"{path}: the probability column {column!r} of class {cls!r} (reference.columns."
                                 f"proba) is not in the file")
        proba[cls] = column
    if score is not None and model.positive_label in proba:
        raise ReferenceError(f"{path}: both {score!r} (score) and {proba[model.positive_label]!r} give the "
                             f"probability of {model.positive_label!r}; keep one")
    used = {*model.features, *proba.values(), *(c for c in (prediction, label, score) if c)}
    layout = Layout(prediction if prediction in present else None, label if label in present else None, proba,
                    score, sorted(c for c in columns if c not in used))
    return layout


def _check_classes(model: ModelSpec, layout: Layout, classes: Classes, path: Path) -> str | None:
    """Refuse labels that contradict the binary task; return the negative class (for a single score column)."""
    if model.task is not Task.BINARY:
        return None
    positive = model.positive_label
    for role, seen in (("label", classes.label), ("prediction", classes.prediction)):
        column = layout.label if role == "label" else layout.prediction
        if len(seen) > 2:
            shown = ", ".join(repr(c) for c in list(seen)[:6])
            raise ReferenceError(
                f"{path}: column {column!r} ({role}) holds more than two classes ({shown}, ...) but model "
                f"{model.name!r} is binary with positive_label {positive!r}: expected {positive!r} and one other "
                "class" + (" (scores belong in a score or proba column)" if role == "prediction" else ""))
    together = {*classes.label, *classes.prediction}
    if classes.label and positive not in classes.label and (positive not in together or len(together) > 2):
        # A sample whose labels are all negative is possible (its predictions then name the positive class);
        # labels that could never be positive_label, or that name a third class beside the predictions, are not.
        shown = ", ".join(repr(c) for c in sorted(classes.label))
        raise ReferenceError(
            f"{path}: column {layout.label!r} (label) holds the classes {shown}, none of them positive_label "
            f"{positive!r} of model {model.name!r}: expected {positive!r} and one other class (1, 1.0, \"1\" and "
            "true are one class; set positive_label to the class that is positive)")
    if len(together) > 2:
        raise ReferenceError(
            f"{path}: columns {layout.label!r} (label) and {layout.prediction!r} (prediction) hold "
            f"{len(together)} classes together ({', '.join(repr(c) for c in sorted(together)[:6])}); model "
            f"{model.name!r} is binary: expected {positive!r} and one other class")
    others = {c for c in (*classes.label, *classes.prediction) if c != positive}
    return others.pop() if len(others) == 1 else None


def _batches(model: ModelSpec, reference: str, path: Path, layout_options: dict[str, Any],
             classes: Classes, negative: str | None, found: list[Layout]) -> Iterator[list[list[Any]]]:
    """The file's rows, typed and validated, one chunk at a time."""
    sample = ReferenceFile(path)
    columns = sample.columns
    missing = [name for name in model.features if name not in set(columns)]
    if missing:
        raise ReferenceError(f"{path}: model {model.name!r} needs feature column(s) {', '.join(missing)}; "
                             f"the file has {', '.join(sorted(columns))}")
    layout = _layout(model, columns, path=path, **layout_options)
    found.append(layout)
    row = 0
    for frame in sample.chunks([c for c in columns if c not in set(layout.ignored)]):
        yield _rows(model, reference, frame, row, layout, classes, negative)
        row += len(frame)


def upload(client: Client, model: ModelSpec, reference: str, path: Path, *, prediction_column: str | None = None,
           label_column: str | None = None, score_column: str | None = None, show_progress: bool = True,
           model_version: str | None = None) -> UploadResult:
    """Validate the whole file, then replace the reference `reference` of `model` with it.

    The file is read twice, a chunk at a time: once to validate every row and collect the classes
    (nothing is written if one is bad, or if the labels contradict the model's task), once to insert.
    Memory holds one chunk, however large the sample. Column names default to the registry's
    `reference.columns` (docs/reference.md: Detectors).
    """
    validate_identifier(reference, what="reference name")
    if model_version is not None:
        validate_identifier(model_version, what="model version")
        reference = versioned_reference(reference, model_version)
    if not path.exists():
        raise ReferenceError(f"{path}: no such file")
    options = {"prediction_column": prediction_column, "label_column": label_column, "score_column": score_column}
    classes = Classes()
    found: list[Layout] = []
    chunks = rows = 0
    for batch in _batches(model, reference, path, options, classes, None, found):
        chunks, rows = chunks + 1, rows + len(batch)
    if rows == 0:
        raise ReferenceError(f"{path}: the file has no rows")
    layout = found[0]
    negative = _check_classes(model, layout, classes, path)
    client.command("DELETE FROM reference_rows WHERE model = {m:String} AND reference = {r:String}",
                   parameters={"m": model.name, "r": reference})
    progress = Progress(chunks, f"upload {model.name}/{reference}") if show_progress else None
    for batch in _batches(model, reference, path, options, Classes(), negative, []):
        client.insert("reference_ingest", batch, column_names=INGEST_COLUMNS)
        if progress is not None:
            progress.advance()
    result = UploadResult(model.name, reference, rows, layout.roles(model), layout.ignored)
    log.info("reference uploaded", extra={"model": model.name, "reference": reference, "rows": rows,
                                          "columns": result.columns, "ignored_columns": result.ignored})
    if layout.ignored:
        log.warning("reference columns ignored", extra={"model": model.name, "reference": reference,
                                                        "ignored_columns": layout.ignored})
    return result


def stored_references(client: Client, model: str) -> list[dict[str, Any]]:
    """The references stored for `model`: name, rows, when uploaded (the API's and the CLI's list)."""
    return client.query(
        "SELECT reference, count() AS rows, max(uploaded_at) AS uploaded_at FROM reference_rows "
        "WHERE model = {m:String} GROUP BY reference ORDER BY reference", parameters={"m": model}).named_results()


def delete_reference(client: Client, model: str, reference: str) -> int:
    """Remove reference `reference` of `model`; returns the rows it had (0: there was none)."""
    rows = int(client.query("SELECT count() FROM reference_rows WHERE model = {m:String} AND reference = {r:String}",
                            parameters={"m": model, "r": reference}).result_rows[0][0])
    if rows:
        client.command("DELETE FROM reference_rows WHERE model = {m:String} AND reference = {r:String}",
                       parameters={"m": model, "r": reference})
    return rows
