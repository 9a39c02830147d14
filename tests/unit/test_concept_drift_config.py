"""`concept_drift` in models.yaml and the `concept_drift` alert condition: what they mean, and bad ones refused at load."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerts.config import load_alerts
from detectors.config import Task, load_registry
from driftline.yamlfile import ConfigError

REGISTRY = """\
models:
  - name: churn
    task: binary_classification
    features: {age: numeric}
    reference: {rolling: {offset: 7d}}
    concept_drift:
      detectors: [ddm, page_hinkley]
      page_hinkley: {lambda: 80, delta: 0.02}
      ddm: {drift_level: 3.5}
      batch_rows: 5000
      settle: 2m
  - name: eta
    task: regression
    features: {distance: numeric}
    reference: {rolling: {offset: 7d}}
"""

ALERTS = """\
channels:
  owners: {type: email, to: [owner@example.com]}
rules:
  - name: churn-concept
    model: churn
    when: {concept_drift: {detectors: [ddm]}}
    for: 1
    routes: [owners]
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_concept_drift_settings_mean_what_they_say(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, "models.yaml", REGISTRY))
    churn, eta = registry.get("churn").concept_drift, registry.get("eta").concept_drift
    assert churn.enabled and churn.active(Task.BINARY) == ("page_hinkley", "ddm")  # fixed order, as listed
    assert (churn.page_hinkley.lambda_, churn.page_hinkley.delta, churn.page_hinkley.alpha) == (80, 0.02, 1.0)
    assert churn.ddm.drift_level == 3.5 and churn.ddm.warning_level == 2.0
    assert churn.batch_rows == 5000 and churn.settle == timedelta(minutes=2)
    # Defaults: all three for classification; regression has no binary error for DDM without a tolerance.
    assert eta.enabled and eta.settle == timedelta(seconds=30) and eta.batch_rows == 10_000
    assert eta.active(Task.REGRESSION) == ("page_hinkley", "adwin")
    assert eta.model_copy(update={"regression_tolerance": 5.0}).active(Task.REGRESSION) == ("page_hinkley", "adwin", "ddm")
    config = load_alerts(_write(tmp_path, "alerts.yaml", ALERTS), registry)
    rule = config.rules[0]
    assert rule.when.kind == "concept_drift" and rule.when.concept_drift is not None
    assert rule.when.concept_drift.detectors == ("ddm",) and rule.thresholds().fire == 1.0


@pytest.mark.parametrize("old, new, fragments", [
    ("detectors: [ddm, page_hinkley]", "detectors: [ddm, ddm]", ["list each detector once"]),
    ("detectors: [ddm, page_hinkley]", "detectors: [cusum]", ["detectors", "cusum"]),
    ("settle: 2m", "settle: -1m", ["concept_drift.settle", "expected a duration"]),
    ("batch_rows: 5000", "batch_rows: 0", ["batch_rows"]),
    ("ddm: {drift_level: 3.5}", "ddm: {drift_level: 1.5}", ["warning_level must not exceed drift_level"]),
    ("page_hinkley: {lambda: 80, delta: 0.02}", "page_hinkley: {lamda: 80}", ["lamda", "Extra inputs"]),
])
def test_bad_concept_drift_settings_fail_at_load(tmp_path: Path, old: str, new: str, fragments: list[str]) -> None:
    assert old in REGISTRY
    with pytest.raises(ConfigError) as error:
        load_registry(_write(tmp_path, "models.yaml", REGISTRY.replace(old, new)))
    message = str(error.value)
    assert "model 'churn'" in message and "models.yaml:" in message
    for fragment in fragments:
        assert fragment in message


def test_ddm_on_a_regression_model_needs_a_tolerance(tmp_path: Path) -> None:
    text = REGISTRY + "    concept_drift: {detectors: [ddm]}\n"
    with pytest.raises(ConfigError, match="regression_tolerance"):
        load_registry(_write(tmp_path, "models.yaml", text))
    load_registry(_write(tmp_path, "ok.yaml", REGISTRY + "    concept_drift: {detectors: [ddm], regression_tolerance: 3}\n"))


@pytest.mark.parametrize("when, fragment", [
    ("{concept_drift: {detectors: [adwin]}}", "does not run 'adwin'"),
    ("{concept_drift: {detectors: []}}", "at least 1"),
    ("{concept_drift: {}, quality: {check: missing_share}}", "exactly one condition"),
])
def test_bad_concept_drift_rules_fail_at_load(tmp_path: Path, when: str, fragment: str) -> None:
    registry = load_registry(_write(tmp_path, "models.yaml", REGISTRY))
    text = ALERTS.replace("{concept_drift: {detectors: [ddm]}}", when)
    with pytest.raises(ConfigError, match=fragment):
        load_alerts(_write(tmp_path, "alerts.yaml", text), registry)


def test_a_rule_on_a_model_with_concept_drift_disabled_is_refused(tmp_path: Path) -> None:
    registry = load_registry(_write(tmp_path, "models.yaml", REGISTRY.replace("      detectors: [ddm, page_hinkley]\n",
                                                                               "      enabled: false\n")))
    with pytest.raises(ConfigError, match="concept_drift disabled"):
        load_alerts(_write(tmp_path, "alerts.yaml", ALERTS.replace("{detectors: [ddm]}", "{}")), registry)
