"""The model registry: which models Driftline watches and how, as config-as-code (`models.yaml`).

Loaded and validated as a whole at start: a bad field stops the service with
`file:line: model 'x': field: what is wrong (got value)`, instead of a
detector failing hours later. A `defaults:` block is merged under every
model, so a fleet shares one policy and a model states only what differs.

Overrides resolve like Evidently's: the feature's own method and threshold,
then the model's per-type choice, then the model's global method, then the
default rule in `detectors.select` (which follows Evidently's).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.methods.registry import get_method
from detectors.summaries import ColumnType
from driftline.privacy import PrivacySpec
from driftline.values import class_name
from driftline.yamlfile import (
    ConfigError,
    Duration,
    FieldError,
    Identifier,
    LocatedYaml,
    Strict,
    describe_validation_error,
    load_yaml,
)


PREDICTION_COLUMN = "__prediction__"
TARGET_COLUMN = "__target__"


class UnknownModel(KeyError):
    """A model name that the registry does not define."""


class Task(StrEnum):
    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"



def _check_method(method: str | None, threshold: float | None, column_type: ColumnType | None, where: str) -> None:
    if method is None:
        if threshold is not None and not 0 < threshold:
            raise ValueError(f"{where}threshold must be > 0, got {threshold}")
        return
    try:
        spec = get_method(method)
    except KeyError as exc:
        raise ValueError(str(exc.args[0])) from None
    if column_type is not None and column_type not in spec.column_types:
        allowed = ", ".join(sorted(t.value for t in spec.column_types))
        raise ValueError(f"{where}method {method!r} does not apply to {column_type.value} columns (it takes {allowed})")
    if threshold is not None:
        if spec.kind == "p_value" and not 0 < threshold < 1:
            raise ValueError(f"{where}threshold of {method!r} is a p-value and must be in (0, 1), got {threshold}")
        if spec.kind == "distance" and not threshold > 0:
            raise ValueError(f"{where}threshold of {method!r} is a distance and must be > 0, got {threshold}")


class FeatureSpec(Strict):
    """One input column of the model, read from the event's `features` map."""

    type: ColumnType
    method: str | None = Field(None, description="Drift method for this feature (overrides the model's).")
    threshold: float | None = Field(None, description="Threshold for this feature's method.")

    @model_validator(mode="after")
    def _method_fits(self) -> "FeatureSpec":
        _check_method(self.method, self.threshold, self.type, "")
        return self


def _feature_shorthand(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class TypeMethods(Strict):
    numeric: str | None = None
    categorical: str | None = None
    numeric_threshold: float | None = Field(None, description="Threshold for the numeric method.")
    categorical_threshold: float | None = Field(None, description="Threshold for the categorical method.")

    @model_validator(mode="after")
    def _known(self) -> "TypeMethods":
        for column_type, method, threshold in ((ColumnType.NUMERIC, self.numeric, self.numeric_threshold),
                                               (ColumnType.CATEGORICAL, self.categorical, self.categorical_threshold)):
            if threshold is not None and method is None:
                raise ValueError(f"{column_type.value}_threshold needs a {column_type.value} method")
            _check_method(method, threshold, column_type, f"{column_type.value}: ")
        return self


class EffectSize(Strict):
    """A distance that must also exceed its threshold before a significant p-value counts as drift."""

    numeric: str = "wasserstein"
    numeric_threshold: float = Field(0.1, gt=0)
    categorical: str = "jensenshannon"
    categorical_threshold: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _distances(self) -> "EffectSize":
        for method, column_type in ((self.numeric, ColumnType.NUMERIC), (self.categorical, ColumnType.CATEGORICAL)):
            _check_method(method, None, column_type, f"{column_type.value}: ")
            if get_method(method).kind != "distance":
                raise ValueError(f"effect size method {method!r} is a p-value test; name a distance")
        return self


class DriftSpec(Strict):
    method: str | None = Field(None, description="Method for every column of the model (below per-type and per-feature).")
    methods: TypeMethods = Field(default_factory=TypeMethods, description="Method per column type.")
    threshold: float | None = Field(None, description="Threshold for the model-wide method.")
    share: float = Field(0.5, gt=0, le=1, description="Dataset drift when this share of features drifts.")
    correction: Literal["none", "bonferroni", "benjamini_hochberg"] = "none"
    effect_size: EffectSize | None = Field(
        None, description="Require a distance above its threshold as well as a significant p-value."
    )
    min_rows: int = Field(100, ge=1, description="Fewer rows in reference or current: `insufficient_data`.")
    exact_max_rows: int = Field(
        200_000, ge=0,
        description="Up to this many rows per side, ECDF statistics are exact; above, they come from fine bins "
        "(bounded memory). Anderson-Darling and Cramer-von Mises are always exact.",
    )
    prediction: bool = Field(True, description="Compute drift of the model's prediction.")
    target: bool = Field(True, description="Compute drift of the labels (target drift).")
    window_states: bool = Field(
        True, description="Summarise hour-aligned windows from the mergeable window states where the method "
        "allows (false: always scan raw rows).",
    )

    @model_validator(mode="after")
    def _method_known(self) -> "DriftSpec":
        if self.threshold is not None and self.method is None:
            # It used to be accepted and ignored: two test configs believed they ran at p < 0.001 and ran at 0.05.
            raise ValueError("threshold is the threshold of the model-wide `method`, which is not set; set "
                             "methods.numeric_threshold / methods.categorical_threshold, or name a `method`")
        _check_method(self.method, self.threshold, None, "")
        return self


class QualitySpec(Strict):
    max_missing_share: float = Field(0.05, ge=0, le=1)
    max_out_of_range_share: float = Field(0.05, ge=0, le=1)
    max_unseen_share: float = Field(0.05, ge=0, le=1)
    max_dead_letter_rate: float = Field(0.01, ge=0, le=1)
    min_rows: int = Field(100, ge=1, description="Fewer rows in the window: the share checks say `insufficient_data` "
                                                 "(one missing value in 8 rows is not a 12% problem); volume is "
                                                 "still judged.")
    expected_rows: int | None = Field(None, ge=1, description="Rows expected per window; unset: the reference's rate.")
    min_volume_ratio: float = Field(0.5, ge=0)
    max_volume_ratio: float | None = Field(None, gt=0)


CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("mae", "rmse", "mape", "r2")


class PerformanceSpec(Strict):
    metrics: tuple[str, ...] | None = Field(None, description="Metrics to compute; default: all of the task's.")
    max_drop: float = Field(0.05, ge=0, description="Degraded when worse than the baseline by more than this (absolute).")
    min_rows: int = Field(100, ge=1, description="Fewer labelled rows: no verdict.")
    confidence: float = Field(0.95, gt=0, lt=1)


class ScheduleSpec(Strict):
    interval: Duration | None = None
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                CronTrigger.from_crontab(value, timezone=timezone.utc)
            except ValueError as exc:
                raise ValueError(f"invalid cron expression {value!r}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_of(self) -> "ScheduleSpec":
        if (self.interval is None) == (self.cron is None):
            raise ValueError("give exactly one of interval or cron")
        if self.interval is not None and self.interval < timedelta(seconds=1):
            raise ValueError("interval must be at least 1s")
        return self


class RangeReference(Strict):
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> "RangeReference":
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone (e.g. 2026-01-01T00:00:00Z)")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class RollingReference(Strict):
    """Production data `offset` before the current window, e.g. 7d: the same hours last week."""

    offset: Duration
    length: Duration | None = None

    @model_validator(mode="after")
    def _positive(self) -> "RollingReference":
        if self.offset <= timedelta(0):
            raise ValueError("offset must be positive")
        if self.length is not None and self.length <= timedelta(0):
            raise ValueError("length must be positive")
        return self


VERSION_SEPARATOR = "@"


def versioned_reference(name: str, model_version: str) -> str:
    """The stored name of reference `name` uploaded for one model version (`train@3`)."""
    return f"{name}{VERSION_SEPARATOR}{model_version}"


def _class_names(value: Any) -> Any:
    if isinstance(value, dict):
        return {class_name(k, what="proba class"): v for k, v in value.items()}
    return value


class UploadColumns(Strict):
    """Where an uploaded reference file keeps the model's output, when not under the documented names.

    Documented names: `prediction`, `label`, and `proba_<class>` per class. A binary model's single score
    column (scikit-learn's `predict_proba(X)[:, 1]`, often `y_pred_proba`) is `score`: the probability of
    `positive_label`. Columns the upload does not use are listed in its answer, never dropped silently.
    """

    prediction: str = Field("prediction", min_length=1, description="Column with the model's output.")
    label: str = Field("label", min_length=1, description="Column with the true label.")
    proba_prefix: str = Field("proba_", min_length=1, description="Columns `<prefix><class>`: probability of class.")
    proba: Annotated[dict[str, str], BeforeValidator(_class_names)] = Field(
        default_factory=dict, description="Class -> column with its probability (classes in any spelling: 1, 1.0, true).")
    score: str | None = Field(None, min_length=1, description="Binary models: one column with the probability of "
                                                             "positive_label.")


class ReferenceSpec(Strict):
    upload: Identifier | None = Field(None, description="Name of a reference uploaded with `driftline reference upload`.")
    range: RangeReference | None = None
    rolling: RollingReference | None = None
    per_version: bool = Field(False, description="With `upload`: each model version is compared with its own upload "
                                                 "(`reference upload --model-version V`).")
    columns: UploadColumns = Field(default_factory=UploadColumns,
                                   description="With `upload`: where the file keeps prediction, label and probabilities.")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ReferenceSpec":
        given = [k for k in ("upload", "range", "rolling") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of upload, range or rolling (got {', '.join(given) or 'none'})")
        if self.per_version and self.upload is None:
            raise ValueError("per_version applies to uploaded references only")
        if self.upload is None and self.columns != UploadColumns():  # defaults (a dumped registry) are fine
            raise ValueError("columns applies to uploaded references only")
        return self


ESTIMATED_METRICS = {
    Task.BINARY: ("roc_auc", "accuracy", "precision", "recall", "f1"),
    Task.MULTICLASS: ("accuracy", "precision", "recall", "f1"),
    Task.REGRESSION: ("mae", "rmse"),
}


class EstimationSpec(Strict):
    """Estimated performance while labels are missing: CBPE for classifiers, direct loss estimation for regressors.

    Runs with the drift stage (a window needs no labels to be estimated); the performance stage later stores
    the realized values beside the estimates, and `performance_timeline` shows one after the other.
    """

    enabled: bool = Field(True, description="Estimate every window's performance before its labels arrive.")
    metrics: tuple[str, ...] | None = Field(None, description="Metrics to estimate; default: all the task allows.")
    calibration: Literal["isotonic", "none"] = Field(
        "isotonic", description="CBPE: how the reference's labelled scores calibrate the window's scores.")
    min_rows: int = Field(100, ge=1, description="Fewer scored rows in the window, or labelled in the reference: "
                                                 "no estimate (`insufficient_data` / `no_calibration`).")
    sample_rows: int = Field(20_000, ge=100, le=1_000_000,
                             description="DLE: rows sampled from the reference (to fit) and from the window (to "
                                         "predict); bounds memory and fitting time.")


class MultivariateSpec(Strict):
    """Drift of the features' joint distribution (see `detectors.multivariate`): both methods run when enabled."""

    enabled: bool = Field(True, description="Run PCA reconstruction error and the domain classifier in the drift stage.")
    min_rows: int = Field(500, ge=10, description="Fewer rows in the reference or the window: `insufficient_data`.")
    sample_rows: int = Field(5000, ge=10, le=1_000_000,
                             description="Rows sampled per side to fit the PCA and to train the classifier.")
    pca_variance: float = Field(0.65, gt=0, lt=1, description="Share of the reference's variance the kept components explain.")
    pca_sigmas: float = Field(3.0, gt=0, description="Band half-width in standard errors of the window's mean error.")
    pca_min_change: float = Field(
        0.02, ge=0, description="The band is at least this fraction of the reference's mean error on each side, "
        "so a negligible change on a huge window is not drift.")
    classifier_auc_threshold: float = Field(0.6, gt=0.5, lt=1, description="Drift when the cross-validated AUC reaches this.")
    classifier_folds: int = Field(5, ge=2, le=20, description="Stratified folds of the cross-validation.")

    @model_validator(mode="after")
    def _enough_rows(self) -> "MultivariateSpec":
        # The guard is checked on the samples: a side smaller than min_rows must be wholly in its sample.
        if self.sample_rows < self.min_rows:
            raise ValueError(f"sample_rows ({self.sample_rows}) must be at least min_rows ({self.min_rows})")
        if self.min_rows < self.classifier_folds:
            raise ValueError(f"min_rows ({self.min_rows}) must be at least classifier_folds ({self.classifier_folds})")
        return self


class PageHinkleySpec(Strict):
    """Page-Hinkley on the error (see detectors/streaming.py); delta and lambda are in the error's units."""

    delta: float = Field(0.01, ge=0, description="Rise of the mean error too small to matter.")
    lambda_: float = Field(50.0, gt=0, alias="lambda", description="Fires when the cumulative rise exceeds this.")
    alpha: float = Field(1.0, gt=0, le=1, description="Forgetting factor of the cumulative sum (1 = none).")
    min_instances: int = Field(30, ge=1, description="Rows before a verdict (after start and after each firing).")


class AdwinSpec(Strict):
    """ADWIN on the error: cuts its window where the older and newer parts differ with confidence 1 - delta."""

    delta: float = Field(0.002, gt=0, lt=1, description="Confidence of a cut (smaller: fewer, later firings).")
    max_buckets: int = Field(5, ge=2, le=100, description="Buckets per size in the exponential histogram.")
    clock: int = Field(32, ge=1, description="Check for a cut every this many rows.")
    min_side: int = Field(10, ge=1, description="Rows each side of a cut needs at least.")


class DdmSpec(Strict):
    """DDM on the binary error: fires when the error rate rises drift_level deviations above its minimum."""

    warning_level: float = Field(2.0, gt=0, description="Deviations above the minimum: warning zone.")
    drift_level: float = Field(4.0, gt=0, description="Deviations above the minimum: fires.")
    min_instances: int = Field(1000, ge=1, description="Rows before a verdict (after start and after each firing).")

    @model_validator(mode="after")
    def _ordered(self) -> "DdmSpec":
        if self.warning_level > self.drift_level:
            raise ValueError("warning_level must not exceed drift_level")
        return self


STREAM_DETECTORS = ("page_hinkley", "adwin", "ddm")


class ConceptDriftSpec(Strict):
    """Streaming detectors on the per-prediction error of labelled rows (detectors/concept_drift.py)."""

    enabled: bool = Field(True, description="Run the streaming detectors for this model.")
    detectors: tuple[Literal["page_hinkley", "adwin", "ddm"], ...] | None = Field(
        None, description="Which to run; default: all three (regression: DDM only with `regression_tolerance`).")
    page_hinkley: PageHinkleySpec = Field(default_factory=PageHinkleySpec)
    adwin: AdwinSpec = Field(default_factory=AdwinSpec)
    ddm: DdmSpec = Field(default_factory=DdmSpec)
    regression_tolerance: float | None = Field(
        None, gt=0, description="Regression: DDM counts an absolute error above this as wrong.")
    batch_rows: int = Field(10_000, ge=1, le=1_000_000, description="Labelled rows read and processed per batch.")
    settle: Duration = Field(timedelta(seconds=30), description="Only labels ingested at least this long ago are "
                                                                "read, so rows still being inserted are not skipped.")

    @field_validator("detectors")
    @classmethod
    def _unique(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("list each detector once, at least one")
        return value

    @field_validator("settle")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("settle cannot be negative")
        return value

    def active(self, task: "Task") -> tuple[str, ...]:
        """The detectors this model runs, in a fixed order."""
        if self.detectors is not None:
            return tuple(d for d in STREAM_DETECTORS if d in self.detectors)
        if task is Task.REGRESSION and self.regression_tolerance is None:
            return ("page_hinkley", "adwin")
        return STREAM_DETECTORS


class ModelSpec(Strict):
    """One monitored model; `for_version` gives the spec a window of one model version is detected with."""

    name: Identifier
    task: Task
    owner: str | None = Field(None, description="Owning team; alerts and API scopes group by it.")
    positive_label: Annotated[str, BeforeValidator(lambda v: class_name(v, what="positive_label"))] = Field(
        "1", description="Binary tasks: the label that counts as positive (1, 1.0, \"1\" and true are one class).")
    features: dict[Identifier, Annotated[FeatureSpec, BeforeValidator(_feature_shorthand)]]
    segments: tuple[Identifier, ...] = Field((), description="Categorical features to slice results by.")
    max_segments: int = Field(20, ge=1, le=1000, description="Most frequent segment values analysed per key.")
    reference: ReferenceSpec
    window: Duration = Field(timedelta(hours=1), description="Length of a detection window.")
    schedule: ScheduleSpec | None = Field(None, description="When detection runs; default: every window.")
    label_delay: Duration = Field(timedelta(0), description="How long labels take to arrive.")
    label_horizon: Duration = Field(
        timedelta(days=7), description="How late a label may arrive and still join its prediction's window: the "
        "performance stage joins labels by event_id whose ts is before the window's end plus this; later ones are "
        "counted as past the horizon (model status, /metrics), not joined. Bounds the label scan of each window.")
    drift: DriftSpec = Field(default_factory=DriftSpec)
    quality: QualitySpec = Field(default_factory=QualitySpec)
    performance: PerformanceSpec = Field(default_factory=PerformanceSpec)
    estimation: EstimationSpec = Field(default_factory=EstimationSpec)
    multivariate: MultivariateSpec = Field(default_factory=MultivariateSpec)
    privacy: PrivacySpec | None = Field(
        None, description="Fields dropped or HMAC-hashed at ingest, before anything is stored (see driftline.privacy)."
    )
    concept_drift: ConceptDriftSpec = Field(default_factory=ConceptDriftSpec)

    @field_validator("features")
    @classmethod
    def _some_features(cls, value: dict[str, FeatureSpec]) -> dict[str, FeatureSpec]:
        if not value:
            raise ValueError("a model needs at least one feature")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "ModelSpec":
        if self.window < timedelta(seconds=1):
            raise FieldError(("window",), f"window must be at least 1s, got {self.window}")
        if self.label_delay < timedelta(0):
            raise FieldError(("label_delay",), "label_delay cannot be negative")
        if self.label_horizon < self.label_delay:
            raise FieldError(("label_horizon",), f"label_horizon ({self.label_horizon}) must be at least label_delay "
                                                 f"({self.label_delay}): labels expected later would never join")
        for i, key in enumerate(self.segments):
            feature = self.features.get(key)
            if feature is None:
                raise FieldError(("segments", i), f"segment key {key!r} is not a feature of the model")
            if feature.type is not ColumnType.CATEGORICAL:
                raise FieldError(("segments", i), f"segment key {key!r} must be a categorical feature")
        allowed = REGRESSION_METRICS if self.task is Task.REGRESSION else CLASSIFICATION_METRICS
        for i, metric in enumerate(self.performance.metrics or ()):
            if metric not in allowed:
                raise FieldError(("performance", "metrics", i),
                                 f"performance metric {metric!r} does not apply to {self.task.value}; use {', '.join(allowed)}")
        for i, metric in enumerate(self.estimation.metrics or ()):
            if metric not in ESTIMATED_METRICS[self.task]:
                raise FieldError(("estimation", "metrics", i),
                                 f"estimated metric {metric!r} does not apply to {self.task.value}; use "
                                 f"{', '.join(ESTIMATED_METRICS[self.task])}")
        self._check_privacy()
        columns = self.reference.columns
        if columns.score is not None and self.task is not Task.BINARY:
            raise FieldError(("reference", "columns", "score"), "a single score column is for binary models; give "
                                                                "multiclass probabilities as `proba: {class: column}`")
        cd = self.concept_drift
        if self.task is Task.REGRESSION and cd.detectors is not None and "ddm" in cd.detectors \
                and cd.regression_tolerance is None:
            raise FieldError(("concept_drift", "detectors"), "ddm needs a binary error: set "
                                                            "concept_drift.regression_tolerance for a regression model")
        if self.drift.method is not None:
            for name, feature in self.features.items():
                if feature.method is None and getattr(self.drift.methods, feature.type.value) is None:
                    try:
                        _check_method(self.drift.method, None, feature.type, f"feature {name!r}: ")
                    except ValueError as exc:
                        raise FieldError(("drift", "method"), str(exc)) from None
        return self

    def _check_privacy(self) -> None:
        """A dropped feature cannot be monitored (its detectors would see nothing); a hashed one must be categorical."""
        if self.privacy is None:
            return
        for i, name in enumerate(self.privacy.drop):
            if name in self.features:
                raise FieldError(("privacy", "drop", i), f"feature {name!r} is monitored; dropping it at ingest leaves "
                                                         "its detectors without data (hash it, or remove the feature)")
        for i, name in enumerate(self.privacy.hash):
            feature = self.features.get(name)
            if feature is not None and feature.type is not ColumnType.CATEGORICAL:
                raise FieldError(("privacy", "hash", i), f"feature {name!r} is {feature.type.value}; a hashed value is "
                                                         "a category token, so declare it categorical")

    @property
    def schedule_or_default(self) -> ScheduleSpec:
        return self.schedule or ScheduleSpec(interval=self.window)

    def for_version(self, model_version: str) -> "ModelSpec":
        """With a per-version reference, the spec whose reference is this version's own upload."""
        ref = self.reference
        if not ref.per_version or not model_version or ref.upload is None:
            return self
        own = ref.model_copy(update={"upload": versioned_reference(ref.upload, model_version), "per_version": False})
        return self.model_copy(update={"reference": own})

    @property
    def metrics(self) -> tuple[str, ...]:
        if self.performance.metrics:
            return self.performance.metrics
        if self.task is Task.REGRESSION:
            return REGRESSION_METRICS
        if self.task is Task.MULTICLASS:
            return ("accuracy", "precision", "recall", "f1", "log_loss")
        return CLASSIFICATION_METRICS

    @property
    def estimated_metrics(self) -> tuple[str, ...]:
        return self.estimation.metrics or ESTIMATED_METRICS[self.task]

    def method_override(self, column: str, column_type: ColumnType) -> tuple[str | None, float | None]:
        """(method, threshold) configured for a column, or (None, None) for the default rule."""
        feature = self.features.get(column)
        if feature is not None and feature.method is not None:
            return feature.method, feature.threshold
        typed = getattr(self.drift.methods, column_type.value)
        if typed is not None:
            own = feature.threshold if feature is not None else None
            return typed, own if own is not None else getattr(self.drift.methods, f"{column_type.value}_threshold")
        if self.drift.method is not None:
            return self.drift.method, self.drift.threshold
        return None, feature.threshold if feature is not None else None


class Registry(Strict):
    models: tuple[ModelSpec, ...] = ()
    unknown_models: Literal["store", "dead_letter"] = Field(
        "store", description="Events naming a model not in `models`: `store` them (counted, logged once per name "
        "with the closest registered name), or `dead_letter` them (reason `unknown_model`, naming the closest "
        "registered model) so a mistyped name never becomes a model of its own.")

    @model_validator(mode="after")
    def _unique(self) -> "Registry":
        seen: set[str] = set()
        for model in self.models:
            if model.name in seen:
                raise FieldError(("models", len(seen)), f"model {model.name!r} is defined twice")
            seen.add(model.name)
        return self

    def privacy_policies(self) -> dict[str, PrivacySpec]:
        """Model -> its privacy policy, for the collector and HTTP ingest."""
        return {m.name: m.privacy for m in self.models if m.privacy is not None and not m.privacy.empty}

    def get(self, name: str) -> ModelSpec:
        for model in self.models:
            if model.name == name:
                return model
        known = ", ".join(m.name for m in self.models) or "none"
        raise UnknownModel(f"unknown model {name!r} (registry has: {known})")


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return copy.deepcopy(override)


def registry_from_yaml(doc: LocatedYaml) -> Registry:
    """Validate a parsed registry file model by model, so each error names its model and line."""
    data = doc.data
    if not isinstance(data, dict):
        raise ConfigError(f"{doc.where(())}: the registry must be a mapping with a `models:` list")
    unknown = set(data) - {"defaults", "models", "unknown_models"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{doc.where((key,))}: unknown top-level key {key!r} (expected defaults, models, "
                          "unknown_models)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{doc.where(('defaults',))}: defaults must be a mapping")
    raw_models = data.get("models") or []
    if not isinstance(raw_models, list):
        raise ConfigError(f"{doc.where(('models',))}: models must be a list")
    problems: list[str] = []
    models: list[ModelSpec] = []
    for i, raw in enumerate(raw_models):
        name = raw.get("name") if isinstance(raw, dict) else None
        context = f"model {name!r}: " if isinstance(name, str) else f"model #{i + 1}: "
        if not isinstance(raw, dict):
            problems.append(f"{doc.where(('models', i))}: {context}each model must be a mapping")
            continue
        try:
            models.append(ModelSpec.model_validate(_merge(defaults, raw)))
        except ValidationError as exc:
            problems.append(describe_validation_error(doc, exc, prefix=("models", i), context=context, fallback=("defaults",)))
    if problems:
        raise ConfigError("\n".join(problems))
    try:
        return Registry(models=tuple(models), unknown_models=data.get("unknown_models", "store"))
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(doc, exc)) from None


def load_registry(path: Path) -> Registry:
    """The registry in `path`; `ConfigError` with every problem found, each with its line."""
    return registry_from_yaml(load_yaml(path))
