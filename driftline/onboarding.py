"""`driftline init`: a model's registry entry from the frame it was trained or validated on.

Why: typing every feature into models.yaml by hand, and guessing which columns the reference upload reads
as the prediction, the probabilities and the label, cost a new user an hour. Here the frame says it:
column types follow Evidently's rule (so the entry agrees with the drift report attached to alert emails),
the output columns are found by their usual names (or named by the caller), and every choice is printed
with its reason, so that a wrong guess is seen and corrected, never silently monitored.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from driftline.names import is_identifier

PREDICTION_NAMES = ("prediction", "pred", "y_pred", "predicted")
LABEL_NAMES = ("label", "target", "y", "y_true", "actual")
SCORE_NAMES = ("score", "y_pred_proba", "y_score", "probability")
PROBA_PREFIX = "proba_"
FEW_VALUES = 5  # Evidently's NUMBER_UNIQUE_AS_CATEGORICAL: an integer column with at most this many values is categorical
MAX_CLASSES = 50  # more distinct integral labels than this: a regression target, not classes


class InitError(ValueError):
    """The frame cannot describe a model as given (a column that is missing, a task it cannot have)."""


@dataclass
class Inferred:
    """What `infer` decided, with the reason for each decision (printed by `driftline init`)."""

    name: str
    task: str
    features: dict[str, str]
    prediction: str | None
    label: str | None
    proba: dict[str, str]  # class -> column
    score: str | None
    positive_label: str | None
    rows: int
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it is not a feature

    def entry(self, reference: str, owner: str | None = None) -> dict[str, Any]:
        """The models.yaml entry: only what differs from the registry's defaults, so it stays short."""
        entry: dict[str, Any] = {"name": self.name, "task": self.task}
        if owner:
            entry["owner"] = owner
        if self.positive_label is not None and self.positive_label != "1":
            entry["positive_label"] = self.positive_label
        entry["features"] = dict(self.features)
        columns: dict[str, Any] = {}
        if self.prediction and self.prediction != "prediction":
            columns["prediction"] = self.prediction
        if self.label and self.label != "label":
            columns["label"] = self.label
        if self.score:
            columns["score"] = self.score
        if self.proba and any(column != f"{PROBA_PREFIX}{cls}" for cls, column in self.proba.items()):
            columns["proba"] = dict(self.proba)
        entry["reference"] = {"upload": reference, **({"columns": columns} if columns else {})}
        return entry


def _first(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _class_name(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _integral(series: pd.Series) -> bool:
    values = series.dropna()
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return True
    if pd.api.types.is_float_dtype(values):
        return bool((values == values.round()).all())
    return False


def feature_type(series: pd.Series) -> tuple[str | None, str]:
    """(numeric | categorical | None to skip, why): Evidently's rule for features, plus two skips."""
    dtype = series.dtype
    values = series.dropna()
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return None, f"{dtype} values are times, not a feature (events carry their own timestamp)"
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical", "booleans"
    if pd.api.types.is_integer_dtype(dtype):
        n = values.nunique()
        if n <= FEW_VALUES:
            return "categorical", f"{n} distinct integers; at most {FEW_VALUES} are categories, as Evidently counts"
        return "numeric", f"integers with {n} distinct values"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric", f"{dtype} numbers"
    if len(values) >= 50 and values.nunique() == len(values):
        return None, "every value differs: an identifier, not a feature"
    return "categorical", f"{'pandas category' if isinstance(dtype, pd.CategoricalDtype) else 'text'} values"


def _task(frame: pd.DataFrame, label: str | None, prediction: str | None, proba: dict[str, str],
          score: str | None) -> tuple[str, str]:
    if proba:
        return ("binary_classification" if len(proba) == 2 else "multiclass_classification",
                f"{len(proba)} probability columns ({', '.join(proba.values())})")
    if score:
        return "binary_classification", f"one score column ({score}): the positive class's probability"
    target = label or prediction
    if target is None:
        raise InitError("no label, prediction or probability column found: name one (--label, --prediction)")
    values = frame[target].dropna()
    n = values.nunique()
    if not _integral(values) and pd.api.types.is_numeric_dtype(values):
        return "regression", f"{target} holds fractional numbers"
    if n <= 2:
        return "binary_classification", f"{target} holds {n} distinct values"
    if n <= MAX_CLASSES or not pd.api.types.is_numeric_dtype(values):
        return "multiclass_classification", f"{target} holds {n} distinct classes"
    return "regression", f"{target} holds {n} distinct whole numbers (more than {MAX_CLASSES}: a quantity)"


def infer(frame: pd.DataFrame, name: str, *, task: str | None = None, prediction: str | None = None,
          label: str | None = None, score: str | None = None, ignore: tuple[str, ...] = (),
          held_out: bool = False) -> Inferred:
    """Decide the model's entry from `frame`; `InitError` when a named column is missing or the frame is empty."""
    if not is_identifier(name):
        raise InitError(f"model name {name!r} must be letters, digits, '_', '.' or '-' (and start with a letter)")
    if frame.empty:
        raise InitError("the frame has no rows")
    columns = [str(c) for c in frame.columns]
    for given, what in ((prediction, "prediction"), (label, "label"), (score, "score"), *((c, "ignored") for c in ignore)):
        if given is not None and given not in columns:
            raise InitError(f"the {what} column {given!r} is not in the frame (columns: {', '.join(columns)})")
    reasons: list[str] = []
    prediction = prediction or _first(columns, PREDICTION_NAMES)
    label = label or _first(columns, LABEL_NAMES)
    proba = {c[len(PROBA_PREFIX):]: c for c in columns if c.startswith(PROBA_PREFIX) and len(c) > len(PROBA_PREFIX)}
    score = score or (None if proba else _first(columns, SCORE_NAMES))
    for role, column, names in (("prediction", prediction, PREDICTION_NAMES), ("label", label, LABEL_NAMES),
                                ("score", score, SCORE_NAMES)):
        if column:
            reasons.append(f"{role}: {column}")
        elif not (role == "score" and proba):
            reasons.append(f"{role}: none (no column named {', '.join(names)}; name it with --{role})")
    if proba:
        reasons.append(f"probabilities: {', '.join(f'{c} (class {k})' for k, c in proba.items())}")
    chosen_task, why = (task, "given") if task else _task(frame, label, prediction, proba, score)
    reasons.append(f"task: {chosen_task} ({why})")
    positive = None
    if chosen_task == "binary_classification":
        target = label or prediction
        classes = sorted({_class_name(v) for v in frame[target].dropna()}) if target else sorted(proba)
        if classes and not set(classes) <= {"0", "1"}:
            positive = classes[-1]  # scikit-learn's order: predict_proba(X)[:, 1] is the last sorted class
            reasons.append(f"positive_label: {positive} (the last of {classes}, as scikit-learn orders classes)")
    outputs = {c for c in (prediction, label, score, *proba.values()) if c}
    features: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for column in columns:
        if column in outputs:
            continue
        if column in ignore:
            skipped[column] = "ignored as asked"
            continue
        if not is_identifier(column):
            skipped[column] = "not a valid feature name (letters, digits, '_', '.', '-'; rename it to monitor it)"
            continue
        kind, why = feature_type(frame[column])
        if kind is None:
            skipped[column] = why
        else:
            features[column] = kind
            reasons.append(f"feature {column}: {kind} ({why})")
    if not features:
        raise InitError("no feature columns left in the frame")
    warnings = _warnings(len(frame), label, held_out)
    return Inferred(name, chosen_task, features, prediction, label, proba, score, positive, len(frame), reasons,
                    warnings, skipped)


def _warnings(rows: int, label: str | None, held_out: bool) -> list[str]:
    from detectors.config import MultivariateSpec, QualitySpec

    out = []
    if label and not held_out:
        out.append("the performance baseline comes from this frame's labels: if it is the training sample, the "
                   "model scores better on it than on anything new, and healthy windows will look degraded; "
                   "upload held-out data (the validation split) as the reference, then pass --held-out")
    for what, needed in (("multivariate drift", MultivariateSpec().min_rows), ("data quality", QualitySpec().min_rows)):
        if rows < needed:
            out.append(f"{rows} rows: {what} needs at least {needed} in the reference and gives no verdict below that")
    return out


def add_to_registry(path: Path, entry: dict[str, Any]) -> None:
    """Add `entry` to the registry file at `path` (created if missing), keeping what is there as written.

    The entry is appended as text, so comments and layout of the file survive; the result is validated as a
    whole, and the file is left as it was when it does not validate.
    """
    from detectors.config import load_registry

    block = yaml.safe_dump([entry], sort_keys=False, default_flow_style=False, allow_unicode=True)
    if path.exists():
        before = path.read_text()
        existing = yaml.safe_load(before) or {}
        names = [m.get("name") for m in existing.get("models") or [] if isinstance(m, dict)]
        if entry["name"] in names:
            raise InitError(f"{path} already has a model named {entry['name']!r}: remove it first, or choose --name")
        tops = re.findall(r"^([A-Za-z_][\w-]*):", before, flags=re.MULTILINE)
        if tops and tops[-1] != "models":
            raise InitError(f"{path}: `models:` is not the file's last key, so the entry cannot be appended; "
                            f"add it by hand:\n{block}")
        after = before if tops else before + "models:\n"
        after = after + ("" if after.endswith("\n") else "\n") + _indent(block)
    else:
        before, after = None, "models:\n" + _indent(block)
    path.write_text(after)
    try:
        load_registry(path)
    except Exception:
        if before is None:
            path.unlink()
        else:
            path.write_text(before)
        raise


def _indent(block: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in block.splitlines(keepends=True))


STARTER_ALERTS = """\
# Alert rules of {model}, written by `driftline init`: uncomment a channel, fill in its address, and its
# rules below; then `driftline alerts check` and `driftline reload` (or restart `up`).
# Every key: docs/reference.md, "Alerts". Secrets come from the environment or a file, never from here.
channels: {{}}
#  ml-owners:
#    type: email
#    to: [owner@example.com]
#    smtp_host: smtp.example.com
#    smtp_port: 587
#    security: starttls
#    username: driftline
#    password_file: /run/secrets/smtp
#  retrain:
#    type: webhook
#    url_file: /run/secrets/retrain-url
#    secret_env: DRIFTLINE_RETRAIN_SECRET
#    cooldown: 12h
rules: []
#  - name: {model}-dataset-drift
#    model: {model}
#    when: {{dataset_drift: {{}}}}      # the model's own dataset verdict
#    severity: critical
#    routes: [ml-owners, retrain]
#  - name: {model}-{metric}
#    model: {model}
#    when: {{performance_drop: {{metric: {metric}}}}}
#    routes: [ml-owners]
"""


def starter_alerts(model: str, task: str) -> str:
    return STARTER_ALERTS.format(model=model, metric="mae" if task == "regression" else "accuracy")


def write_reference_file(frame: pd.DataFrame, folder: Path) -> Path:
    """The frame as a Parquet file for the reference upload (its dtypes kept: 1.0 labels, bools, categories)."""
    path = folder / "reference.parquet"
    frame.to_parquet(path, index=False)
    return path


@dataclass
class InitResult:
    inferred: Inferred
    entry: dict[str, Any]
    models_file: Path
    alerts_file: Path | None  # the starter alerts.yaml written, None when one existed
    uploaded_rows: int
    ignored_columns: list[str]


def init_model(frame: pd.DataFrame | str | Path, name: str, *, settings: Any = None, reference: str = "reference",
               owner: str | None = None, task: str | None = None, prediction: str | None = None,
               label: str | None = None, score: str | None = None, ignore: tuple[str, ...] = (),
               held_out: bool = False) -> InitResult:
    """Monitor a new model from a frame (or a CSV/Parquet file): its entry, a starter alerts.yaml, its reference.

    The same as `driftline init`, for notebooks. Beside a running `up` on the embedded store, call
    `driftline.store.client.lend_through_service()` first (the CLI does), and reload `up` afterwards.
    """
    from detectors.config import load_registry
    from detectors.reference import upload
    from driftline.config import load_settings
    from driftline.store import connect, migrate

    settings = settings or load_settings()
    source = None if isinstance(frame, pd.DataFrame) else Path(frame)
    data = frame if isinstance(frame, pd.DataFrame) else read_frame(Path(frame))
    inferred = infer(data, name, task=task, prediction=prediction, label=label, score=score, ignore=ignore,
                     held_out=held_out)
    client = connect(settings)  # before any file is written: a store in use changes nothing
    migrate(client)
    entry = inferred.entry(reference, owner)
    add_to_registry(settings.models_file, entry)
    alerts = None
    if not settings.alerts_file.exists():
        settings.alerts_file.write_text(starter_alerts(name, inferred.task))
        alerts = settings.alerts_file
    model = load_registry(settings.models_file).get(name)
    with tempfile.TemporaryDirectory() as scratch:
        path = source if source is not None else write_reference_file(data, Path(scratch))
        result = upload(client, model, reference, path, show_progress=False)
    return InitResult(inferred, entry, settings.models_file, alerts, result.rows, list(result.ignored))


def read_frame(path: Path) -> pd.DataFrame:
    """A CSV, TSV or Parquet file as pandas reads it (the dtypes a user's own code would get)."""
    if not path.exists():
        raise InitError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    raise InitError(f"{path}: expected a .csv, .tsv or .parquet file")
