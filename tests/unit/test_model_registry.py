"""The model registry: what a valid file means, and that every bad one fails at load with its line.

Each bad case is a small edit of `registry/good.yaml`; the error must name the
file and line, the model, the field and the value, so the person who broke
it can fix it without reading code.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from detectors.config import PREDICTION_COLUMN, Task, UnknownModel, load_registry, registry_from_yaml
from detectors.summaries import ColumnType
from driftline.yamlfile import ConfigError, LocatedYaml

GOOD = Path(__file__).parent / "registry" / "good.yaml"


def test_good_registry_means_what_it_says() -> None:
    registry = load_registry(GOOD)
    assert [m.name for m in registry.models] == ["churn", "eta", "fraud"]
    churn = registry.get("churn")
    assert churn.task is Task.BINARY and churn.positive_label == "yes" and churn.owner == "team-retention"
    assert churn.window == timedelta(hours=1) and churn.label_delay == timedelta(hours=6)  # from defaults
    assert churn.drift.min_rows == 200 and churn.drift.correction == "benjamini_hochberg"
    assert churn.reference.upload == "train-2026-10"
    assert churn.schedule_or_default.cron == "5 * * * *"
    # Overrides resolve feature, then type, then model, then the default rule (None).
    assert churn.method_override("income", ColumnType.NUMERIC) == ("psi", 0.2)
    assert churn.method_override("age", ColumnType.NUMERIC) == ("ks", None)
    assert churn.method_override("channel", ColumnType.CATEGORICAL) == ("chisquare", None)
    assert churn.method_override("country", ColumnType.CATEGORICAL) == (None, None)
    assert churn.method_override(PREDICTION_COLUMN, ColumnType.CATEGORICAL) == (None, None)
    assert churn.metrics == ("accuracy", "roc_auc")
    assert churn.privacy is not None and churn.privacy.drop == ("email",)
    assert set(registry.privacy_policies()) == {"churn"}
    eta = registry.get("eta")
    assert eta.window == timedelta(minutes=15) and eta.schedule_or_default.interval == timedelta(minutes=5)
    assert eta.reference.rolling is not None and eta.reference.rolling.offset == timedelta(days=7)
    assert eta.metrics == ("mae", "rmse", "mape", "r2")
    fraud = registry.get("fraud")
    assert fraud.schedule_or_default.interval == fraud.window  # default: every window
    with pytest.raises(UnknownModel, match="unknown model 'nope'.*churn, eta, fraud"):
        registry.get("nope")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# (description, old text, new text, expected fragments of the message, the text whose line is reported)
BAD = [
    ("unknown segment feature", "segments: [country]", "segments: [region]",
     ["model 'churn'", "segments.0", "segment key 'region' is not a feature"], "segments:"),
    ("segment on a numeric feature", "segments: [country]", "segments: [age]",
     ["model 'churn'", "segments.0", "must be a categorical feature"], "segments:"),
    ("wrong feature type", "      age: numeric", "      age: numbr",
     ["model 'churn'", "features.age.type", "'numbr'", "numeric", "categorical"], "age: numbr"),
    ("bad cron", '      cron: "5 * * * *"', '      cron: "61 * * * *"',
     ["model 'churn'", "schedule.cron", "invalid cron expression '61 * * * *'"], "cron:"),
    ("p-value threshold above 1", "method: chisquare}", "method: chisquare, threshold: 5}",
     ["model 'churn'", "features.channel", "p-value and must be in (0, 1), got 5"], "channel:"),
    ("negative distance threshold", "method: psi, threshold: 0.2}", "method: psi, threshold: -1}",
     ["model 'churn'", "features.income", "must be > 0, got -1"], "income:"),
    ("a threshold without the method it is for", "methods: {numeric: ks}", "methods: {numeric: ks}\n      threshold: 0.001",
     ["model 'churn'", "drift", "model-wide `method`, which is not set", "numeric_threshold"], "    drift:"),
    ("unknown method", "methods: {numeric: ks}", "methods: {numeric: kolmogorov}",
     ["model 'churn'", "drift.methods", "kolmogorov", "ks"], "methods:"),
    ("method for the wrong column type", "method: chisquare}", "method: wasserstein}",
     ["model 'churn'", "features.channel", "'wasserstein' does not apply to categorical"], "channel:"),
    ("unknown task", "task: regression", "task: regresion",
     ["model 'eta'", "task", "'regresion'"], "task: regresion"),
    ("bad duration", "offset: 7d", "offset: 7 days",
     ["model 'eta'", "reference.rolling.offset", "duration", "'7 days'"], "offset:"),
    ("metric of another task", "metrics: [accuracy, roc_auc]", "metrics: [accuracy, rmse]",
     ["model 'churn'", "performance.metrics.1", "performance metric 'rmse' does not apply to binary_classification"], "metrics:"),
    ("two references", "      upload: train-2026-10", "      upload: train-2026-10\n      rolling: {offset: 1d}",
     ["model 'churn'", "reference", "exactly one of upload, range or rolling (got upload, rolling)"], "reference:"),
    ("hostile model name", "name: fraud", "name: \"fraud'; DROP TABLE predictions; --\"",
     ["name", "does not match"], "DROP TABLE"),
    ("unknown field", "    owner: team-retention", "    ownr: team-retention",
     ["model 'churn'", "ownr", "Extra inputs are not permitted"], "ownr:"),
    ("bad default", "    min_rows: 200", "    min_rows: -3",
     ["model 'churn'", "drift.min_rows", "-3"], "min_rows:"),
    ("duplicate model", "  - name: fraud", "  - name: churn",
     ["model 'churn' is defined twice"], None),
    ("duplicate key", "      age: numeric", "      age: numeric\n      age: categorical",
     ["duplicate key 'age'"], "age: categorical"),
    ("dropping a monitored feature", "drop: [email]", "drop: [email, age]",
     ["model 'churn'", "privacy.drop.1", "feature 'age' is monitored"], "drop: [email, age]"),
    ("hashing a numeric feature", "hash: [country, event_id]", "hash: [income, event_id]",
     ["model 'churn'", "privacy.hash.0", "feature 'income' is numeric"], "hash: [income"),
    ("dropped and hashed", "drop: [email]", "drop: [email, country]",
     ["model 'churn'", "privacy", "'country' is in both drop and hash"], "privacy:"),
]


@pytest.mark.parametrize("description,old,new,fragments,line_text", BAD, ids=[b[0] for b in BAD])
def test_bad_registry_fails_at_load_naming_line_model_field_value(
    tmp_path: Path, description: str, old: str, new: str, fragments: list[str], line_text: str | None
) -> None:
    good = GOOD.read_text()
    assert good.count(old) == 1, f"the case {description!r} must edit exactly one place"
    text = good.replace(old, new)
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    if line_text is not None:
        assert f"{path}:{_line_of(text, line_text)}:" in message, message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.read_text().replace("      age: numeric", "      age: numbr").replace("task: regression", "task: x")
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    assert "model 'churn'" in str(err.value) and "model 'eta'" in str(err.value)


@pytest.mark.parametrize("text,fragment", [
    ("models: [\n  - name: x\n", "invalid YAML"),
    ("- just\n- a list\n", "must be a mapping"),
    ("modles: []\n", "unknown top-level key 'modles'"),
    ("models: {name: x}\n", "models must be a list"),
])
def test_malformed_files(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_registry(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_registry(tmp_path / "absent.yaml")


def test_a_type_s_threshold_applies_to_its_columns_and_a_feature_s_own_wins() -> None:
    doc = {"models": [{"name": "m", "task": "regression", "features": {
        "x": "numeric", "y": {"type": "numeric", "threshold": 0.2}, "c": "categorical"},
        "reference": {"rolling": {"offset": "7d"}},
        "drift": {"methods": {"numeric": "ks", "numeric_threshold": 0.001, "categorical": "chisquare"}}}]}
    model = registry_from_yaml(LocatedYaml(Path("t.yaml"), doc)).models[0]
    assert model.method_override("x", ColumnType.NUMERIC) == ("ks", 0.001)
    assert model.method_override("y", ColumnType.NUMERIC) == ("ks", 0.2)
    assert model.method_override("c", ColumnType.CATEGORICAL) == ("chisquare", None)  # the method's default


@pytest.mark.parametrize("methods, message", [
    ({"numeric_threshold": 0.01}, "numeric_threshold needs a numeric method"),
    ({"numeric": "ks", "numeric_threshold": 1.5}, "is a p-value and must be in (0, 1)"),
    ({"categorical": "jensenshannon", "categorical_threshold": -1}, "is a distance and must be > 0"),
])
def test_bad_type_thresholds_are_refused_at_load(methods: dict[str, object], message: str) -> None:
    doc = {"models": [{"name": "m", "task": "regression", "features": {"x": "numeric", "c": "categorical"},
                       "reference": {"rolling": {"offset": "7d"}}, "drift": {"methods": methods}}]}
    with pytest.raises(ConfigError, match=re.escape(message)):
        registry_from_yaml(LocatedYaml(Path("t.yaml"), doc))
