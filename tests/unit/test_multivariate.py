"""The pure parts of multivariate drift: PCA fit, imputation, the band rule, the classifier's AUC, the config."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from alerts.config import AlertConfig, Rule
from detectors.config import MultivariateSpec
from detectors.multivariate import (
    Encoded,
    classifier_auc,
    fit_pca,
    pca_band,
    reconstruction_errors,
    standardize,
)
from detectors.sources import Column
from detectors.summaries import ColumnType


def _correlated(rng: np.random.Generator, n: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    x1 = rng.normal(size=n)
    return x1, rho * x1 + np.sqrt(1 - rho ** 2) * rng.normal(size=n)


def test_fit_keeps_the_components_explaining_the_variance_and_drops_constant_inputs() -> None:
    rng = np.random.default_rng(0)
    x1, x2 = _correlated(rng, 5000, 0.9)
    inputs = [Encoded("x1", "a", x1), Encoded("x2", "b", x2), Encoded("flat", "c", np.ones(5000)),
              Encoded("x3", "d", rng.normal(size=5000))]
    fit = fit_pca(inputs, 0.6)
    assert fit is not None and fit.names == ["x1", "x2", "x3"] and fit.sql == ["a", "b", "d"]
    # Eigenvalues of the standardized data: 1.9, 1.0, 0.1 (of 3): the first explains 63%.
    assert fit.components.shape == (1, 3) and 0.6 < fit.explained < 0.66
    assert abs(abs(fit.components[0, 0]) - np.sqrt(0.5)) < 0.01 and abs(fit.components[0, 2]) < 0.05
    np.testing.assert_allclose(fit.components @ fit.components.T, np.eye(1), atol=1e-12)
    assert fit_pca(inputs, 0.9).components.shape == (2, 3)  # type: ignore[union-attr]
    # Never every component: that would reconstruct every row perfectly, whatever the window.
    assert fit_pca(inputs, 0.999999).components.shape == (2, 3)  # type: ignore[union-attr]
    assert fit_pca(inputs[:1] + inputs[2:3], 0.65) is None  # one input with spread: no relationship to lose


def test_missing_values_are_the_mean_and_the_error_grows_when_the_relationship_breaks() -> None:
    z = standardize(np.array([[1.0, np.nan], [3.0, 4.0]]), np.array([2.0, 2.0]), np.array([1.0, 2.0]))
    np.testing.assert_array_equal(z, [[-1.0, 0.0], [1.0, 1.0]])
    rng = np.random.default_rng(1)
    x1, x2 = _correlated(rng, 4000, 0.9)
    fit = fit_pca([Encoded("x1", "", x1), Encoded("x2", "", x2)], 0.65)
    assert fit is not None
    same = np.column_stack(_correlated(rng, 4000, 0.9))
    flipped = np.column_stack(_correlated(rng, 4000, -0.9))
    errors_same = reconstruction_errors(standardize(same, fit.mean, fit.std), fit.components)
    errors_flipped = reconstruction_errors(standardize(flipped, fit.mean, fit.std), fit.components)
    assert errors_flipped.mean() > 3 * errors_same.mean()
    # The SQL's shortcut: the squared residual is ||z||^2 - ||Vz||^2 for orthonormal components.
    zf = standardize(flipped, fit.mean, fit.std)
    shortcut = np.sqrt(np.maximum(0, (zf ** 2).sum(axis=1) - ((zf @ fit.components.T) ** 2).sum(axis=1)))
    np.testing.assert_allclose(shortcut, errors_flipped, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("mean", "std", "rows", "sigmas", "floor", "lower", "upper"), [
    (1.0, 0.5, 100, 3.0, 0.0, 0.85, 1.15),  # 3 * 0.5 / sqrt(100)
    (1.0, 0.5, 10_000, 3.0, 0.02, 0.98, 1.02),  # the standard error (0.015) is under the floor: the floor
    (2.0, 1.0, 400, 2.0, 0.02, 1.9, 2.1),
])
def test_band_rule(mean: float, std: float, rows: int, sigmas: float, floor: float, lower: float, upper: float) -> None:
    band = pca_band(mean, std, rows, sigmas, floor)
    assert (band.lower, band.upper) == pytest.approx((lower, upper))
    assert band.contains(lower + 1e-9) and band.contains(upper - 1e-9)
    assert not band.contains(lower - 1e-6) and not band.contains(upper + 1e-6)


COLUMNS = [Column("x1", "feature", ColumnType.NUMERIC, ""), Column("x2", "feature", ColumnType.NUMERIC, ""),
           Column("c", "feature", ColumnType.CATEGORICAL, ""), Column("empty", "feature", ColumnType.CATEGORICAL, "")]


def _frame(rng: np.random.Generator, n: int, rho: float) -> pd.DataFrame:
    x1, x2 = _correlated(rng, n, rho)
    x1[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"x1": x1, "x2": x2, "c": rng.choice(["a", "b", None], n), "empty": [None] * n})


def test_classifier_auc_is_chance_without_drift_high_with_it_and_repeatable() -> None:
    rng = np.random.default_rng(2)
    reference, same, flipped = _frame(rng, 600, 0.9), _frame(rng, 600, 0.9), _frame(rng, 600, -0.9)
    quiet = classifier_auc(reference, same, COLUMNS, 3)
    loud = classifier_auc(reference, flipped, COLUMNS, 3)
    assert quiet is not None and loud is not None
    assert abs(quiet - 0.5) < 0.06 and loud > 0.85
    assert classifier_auc(reference, flipped, COLUMNS, 3) == loud  # seeded folds and model
    assert classifier_auc(reference[["empty"]], same[["empty"]], COLUMNS[3:], 3) is None  # nothing to learn from


def test_config_defaults_and_bounds() -> None:
    spec = MultivariateSpec()
    assert (spec.enabled, spec.min_rows, spec.sample_rows, spec.pca_variance, spec.classifier_auc_threshold) == \
           (True, 500, 5000, 0.65, 0.6)
    for bad, message in [({"sample_rows": 100}, "sample_rows (100) must be at least min_rows (500)"),
                         ({"min_rows": 10, "classifier_folds": 20}, "at least classifier_folds"),
                         ({"classifier_auc_threshold": 0.5}, "greater than 0.5"),
                         ({"pca_variance": 1.0}, "less than 1"), ({"pca_sigma": 3}, "Extra inputs")]:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            MultivariateSpec.model_validate(bad)


def test_alert_condition_parses_and_is_a_verdict() -> None:
    rule = Rule.model_validate({"name": "joint", "model": "m", "routes": ["mail"],
                                "when": {"multivariate_drift": {"method": "domain_classifier"}}})
    assert rule.when.kind == "multivariate_drift" and rule.thresholds().fire == 1.0
    assert Rule.model_validate({"name": "j", "model": "m", "routes": ["mail"],
                                "when": {"multivariate_drift": {}}}).when.multivariate_drift.method == "any"  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="'any', 'pca_reconstruction' or 'domain_classifier'"):
        Rule.model_validate({"name": "j", "model": "m", "routes": ["mail"], "when": {"multivariate_drift": {"method": "pca"}}})
    config = AlertConfig.model_validate({"channels": {"mail": {"type": "email", "to": ["o@example.com"]}},
                                         "inhibit": [{"source": "quality", "target": "multivariate_drift"}]})
    assert config.inhibit[0].target == "multivariate_drift"


def test_reconstruction_error_agrees_with_nannyml_on_numeric_features() -> None:
    """NannyML's data reconstruction drift (mean imputation, scaling, PCA at 0.65) is the reference for the error.

    Numeric features only: NannyML encodes categories its own way. Its thresholds differ by design (chunks of the
    reference), so only the error is compared; the band is tested above.
    """
    import nannyml as nml  # heavy: imported by this test only

    rng = np.random.default_rng(5)

    def frame(n: int, rho: float) -> pd.DataFrame:
        x1, x2 = _correlated(rng, n, rho)
        x3 = rng.normal(2, 3, n)
        x3[rng.random(n) < 0.05] = np.nan
        return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "x4": rng.exponential(size=n)})

    features = ["x1", "x2", "x3", "x4"]
    reference = frame(3000, 0.9)
    calc = nml.DataReconstructionDriftCalculator(column_names=features, chunk_number=1).fit(reference)
    fit = fit_pca([Encoded(f, "", reference[f].to_numpy()) for f in features], 0.65)
    assert fit is not None
    for rho in (0.9, -0.9):
        current = frame(2000, rho)
        theirs = calc.calculate(current).filter(period="analysis").to_df()[("reconstruction_error", "value")].iloc[0]
        ours = reconstruction_errors(standardize(current[features].to_numpy(), fit.mean, fit.std), fit.components)
        assert ours.mean() == pytest.approx(theirs, rel=1e-9)
