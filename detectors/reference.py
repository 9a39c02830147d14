"""`driftline reference upload`: a training sample becomes a model's reference, from CSV or Parquet.

The file is read in chunks (memory stays flat for large samples) and typed by
the registry: numeric features must parse as numbers, categorical ones are
kept as strings even when they look numeric. An upload replaces any earlier
reference of the same name for the model. Every problem is reported with the
column and row, and nothing is written unless the whole file is valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from detectors.config import ModelSpec, Task, versioned_reference
from detectors.summaries import ColumnType
from driftline.names import validate_identifier
from driftline.progress import Progress

CHUNK_ROWS = 50_000
INGEST_COLUMNS = [
    "model", "reference", "row", "numbers", "categories", "prediction_number", "prediction_category", "proba",
    "label_number", "label_category",
]


class ReferenceError(ValueError):
    """The file cannot become a reference; the message names the column (and row)."""


@dataclass
class UploadResult:
    model: str
    reference: str
    rows: int


def _chunks(path: Path) -> Iterator[pd.DataFrame]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    elif suffix in (".csv", ".gz", ".tsv"):
        sep = "\t" if suffix == ".tsv" else ","
        yield from pd.read_csv(path, chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False, sep=sep)
    else:
        raise ReferenceError(f"{path}: unknown file type {suffix!r} (use .csv, .tsv or .parquet)")


def _number(value: Any, column: str, row: int) -> float | None:
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ReferenceError(f"column {column!r}, row {row}: {value!r} is not a number") from None
    if math.isnan(out):
        return None
    if math.isinf(out):
        raise ReferenceError(f"column {column!r}, row {row}: infinite values are not allowed")
    return out


def _category(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text != "" else None


def _output(value: Any, output_type: ColumnType, column: str, row: int) -> tuple[float | None, str | None]:
    if output_type is ColumnType.NUMERIC:
        return _number(value, column, row), None
    return None, _category(value)


def _rows(model: ModelSpec, reference: str, frame: pd.DataFrame, first_row: int, *, prediction: str | None,
          label: str | None, proba_prefix: str) -> list[list[Any]]:
    output_type = ColumnType.NUMERIC if model.task is Task.REGRESSION else ColumnType.CATEGORICAL
    proba_columns = {c[len(proba_prefix):]: c for c in frame.columns if c.startswith(proba_prefix)}
    out = []
    records = frame.to_dict("records")
    for offset, rec in enumerate(records):
        row = first_row + offset
        numbers: dict[str, float] = {}
        categories: dict[str, str] = {}
        for name, feature in model.features.items():
            if feature.type is ColumnType.NUMERIC:
                value = _number(rec.get(name), name, row)
                if value is not None:
                    numbers[name] = value
            else:
                text = _category(rec.get(name))
                if text is not None:
                    categories[name] = text
        pred_n, pred_c = _output(rec.get(prediction), output_type, prediction or "", row) if prediction else (None, None)
        label_n, label_c = _output(rec.get(label), output_type, label or "", row) if label else (None, None)
        proba = {cls: v for cls, col in proba_columns.items() if (v := _number(rec.get(col), col, row)) is not None}
        out.append([model.name, reference, row, numbers, categories, pred_n, pred_c, proba, label_n, label_c])
    return out


def _batches(model: ModelSpec, reference: str, path: Path, *, prediction_column: str, label_column: str,
             proba_prefix: str) -> Iterator[list[list[Any]]]:
    """The file's rows, typed and validated, one chunk at a time."""
    row = 0
    prediction = label = None
    for i, frame in enumerate(_chunks(path)):
        if i == 0:
            columns = set(frame.columns)
            missing = [name for name in model.features if name not in columns]
            if missing:
                raise ReferenceError(f"{path}: model {model.name!r} needs feature column(s) {', '.join(missing)}; "
                                     f"the file has {', '.join(sorted(columns))}")
            prediction = prediction_column if prediction_column in columns else None
            label = label_column if label_column in columns else None
        yield _rows(model, reference, frame, row, prediction=prediction, label=label, proba_prefix=proba_prefix)
        row += len(frame)


def upload(client: Client, model: ModelSpec, reference: str, path: Path, *, prediction_column: str = "prediction",
           label_column: str = "label", proba_prefix: str = "proba_", show_progress: bool = True,
           model_version: str | None = None) -> UploadResult:
    """Validate the whole file, then replace the reference `reference` of `model` with it.

    The file is read twice, a chunk at a time: once to validate every row (nothing is written if one is
    bad), once to insert. Memory holds one chunk, however large the sample.
    """
    validate_identifier(reference, what="reference name")
    if model_version is not None:
        validate_identifier(model_version, what="model version")
        reference = versioned_reference(reference, model_version)
    if not path.exists():
        raise ReferenceError(f"{path}: no such file")
    options = {"prediction_column": prediction_column, "label_column": label_column, "proba_prefix": proba_prefix}
    chunks = rows = 0
    for batch in _batches(model, reference, path, **options):
        chunks, rows = chunks + 1, rows + len(batch)
    if rows == 0:
        raise ReferenceError(f"{path}: the file has no rows")
    client.command("DELETE FROM reference_rows WHERE model = {m:String} AND reference = {r:String}",
                   parameters={"m": model.name, "r": reference})
    progress = Progress(chunks, f"upload {model.name}/{reference}") if show_progress else None
    for batch in _batches(model, reference, path, **options):
        client.insert("reference_ingest", batch, column_names=INGEST_COLUMNS)
        if progress is not None:
            progress.advance()
    return UploadResult(model.name, reference, rows)
