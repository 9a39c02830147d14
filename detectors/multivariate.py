"""Multivariate drift of a window: what per-feature tests miss when only the features' relationship moves.

Two features can keep their marginals while their correlation flips; every
univariate test then stays quiet. Two detectors look at the joint
distribution, over all rows of the window (segments are not analysed: the
classifier costs seconds per call, and segments would multiply it):

- `pca_reconstruction` (after NannyML's data reconstruction drift): a PCA is
  fitted on a bounded sample of the reference (`detectors.sample`), keeping the
  components that explain `pca_variance` of its variance. Every row of both
  sides is standardized with the reference sample's mean and standard
  deviation after mean imputation (a missing number becomes 0, the mean;
  the same steps as NannyML's, whose errors these equal), projected and
  reconstructed inside ClickHouse; its error is the Euclidean distance
  between the standardized row and its reconstruction. A relationship the
  reference had and the window lost cannot be reconstructed, so the mean
  error moves. No row reaches Python: the standardization and the components
  travel as array parameters.
  The band comes from the reference's own spread: with m and s the mean and
  standard deviation of the per-row error over all reference rows and n the
  window's rows, the window's mean error is drift outside
  m +/- max(pca_sigmas * s / sqrt(n), pca_min_change * m). Under no drift the
  window's mean error has standard error s / sqrt(n) (rows independent), which
  is what chunk means of the reference would estimate too, only noisier; the
  floor keeps a negligible change on a huge window from counting as drift
  (and absorbs some of the correlation in time that a production-range
  reference has and the independence assumption ignores).
  Categorical features enter as indicators of their most frequent reference
  categories (at most `TOP_CATEGORIES`, each at least `MIN_CATEGORY_SHARE` of
  the sample), standardized like numbers; a missing category is all zeros
  before standardizing.
- `domain_classifier`: a gradient-boosted classifier learns to tell the
  reference sample from the window's sample (`sample_rows` per side, the same
  deterministic hash-ordered sample as the report's); its stratified k-fold
  cross-validated ROC AUC is 0.5 when the two are indistinguishable. Drift when
  the AUC reaches `classifier_auc_threshold` (0.6 by default: with the default
  `min_rows` of 500 per side, the AUC of two samples of one distribution was
  0.50 +/- 0.012 (sd over 8 seeds), so 0.6 is far outside chance; at 100 rows
  per side the sd was 0.05 and 0.6 only 2 sd away, hence the 500). Missing
  numbers stay NaN (the model routes them), categories are categories (the
  most frequent `MAX_CLASSIFIER_CATEGORIES`, the rest pooled). Folds and the
  model are seeded: a window always gets the same verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client

from detectors.aggregates import DETECTOR_SETTINGS
from detectors.config import ModelSpec
from detectors.sample import sample_frames
from detectors.sources import ALL_ROWS, Column, Query, Window, column_sides_sql, columns_for
from detectors.summaries import ColumnType

METHODS = ("pca_reconstruction", "domain_classifier")
TOP_CATEGORIES = 10
MIN_CATEGORY_SHARE = 0.01
MAX_CLASSIFIER_CATEGORIES = 250  # the classifier bins a categorical feature into at most 255 values
OTHER = "__other__"
SEED = 0


@dataclass(frozen=True)
class MultivariateRow:
    """One method's verdict on a window; `lower`/`upper` bound `value` (the classifier has an upper threshold only)."""

    method: str
    value: float | None
    lower: float | None
    upper: float | None
    drifted: bool
    status: str  # ok | drifted | no_data | no_reference | insufficient_data | too_few_features
    reference_rows: int
    current_rows: int
    sample_rows: int


@dataclass(frozen=True)
class Encoded:
    """One input of the PCA: a name, its SQL over the aliased row, and its values in the reference sample."""

    name: str
    sql: str
    values: np.ndarray


@dataclass(frozen=True)
class PcaFit:
    """Standardization and components (rows, orthonormal) of the PCA fitted on the reference sample."""

    names: list[str]
    sql: list[str]
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray
    explained: float


@dataclass(frozen=True)
class Band:
    lower: float
    upper: float

    def contains(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def encode(reference: pd.DataFrame, columns: list[Column], q: Query) -> list[Encoded]:
    """Numeric features as they are, categorical ones as indicators of their frequent categories."""
    out = []
    for c in columns:
        series = reference[c.name]
        if c.type is ColumnType.NUMERIC:
            out.append(Encoded(c.name, c.sql, pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)))
            continue
        shares = series.dropna().astype(str).value_counts(normalize=True, sort=True)
        shares = shares[shares >= MIN_CATEGORY_SHARE]
        top = sorted(shares.index[:TOP_CATEGORIES], key=lambda v: (-shares[v], v))
        for value in top:
            sql = f"toFloat64(ifNull({c.sql} = {q.param(value, 'String', 'cat')}, 0))"
            out.append(Encoded(f"{c.name}={value}", sql, (series.astype("string") == value).fillna(False)
                               .to_numpy(dtype=float)))
    return out


def fit_pca(inputs: list[Encoded], variance: float) -> PcaFit | None:
    """Components explaining `variance` of the standardized reference, at most one fewer than the inputs.

    Inputs without spread in the reference are left out (they cannot be standardized). None with fewer than
    two inputs left: one input has no relationship to lose, and keeping every component reconstructs perfectly.
    """
    kept = []
    for e in inputs:
        finite = np.isfinite(e.values)
        if finite.sum() < 2:
            continue
        mean = float(np.mean(e.values[finite]))
        # The spread after mean imputation, as NannyML scales (imputer, then scaler): the errors then agree with it.
        std = float(np.std(np.where(finite, e.values, mean)))
        if std > 0:
            kept.append((e, mean, std))
    if len(kept) < 2:
        return None
    mean = np.array([m for _, m, _ in kept])
    std = np.array([s for _, _, s in kept])
    z = standardize(np.column_stack([e.values for e, _, _ in kept]), mean, std)
    _, singular, vt = np.linalg.svd(z, full_matrices=False)  # z has mean 0: the SVD is the PCA
    share = np.cumsum(singular ** 2) / float(np.sum(singular ** 2))
    k = min(int(np.searchsorted(share, variance - 1e-12) + 1), len(kept) - 1)
    return PcaFit([e.name for e, _, _ in kept], [e.sql for e, _, _ in kept], mean, std, vt[:k],
                  float(share[k - 1]))


def standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std per column; a missing value becomes 0 (the mean)."""
    z = (x - mean) / std
    return np.where(np.isfinite(z), z, 0.0)


def reconstruction_errors(z: np.ndarray, components: np.ndarray) -> np.ndarray:
    """Euclidean distance of each standardized row to its reconstruction from the components (numpy's version)."""
    return np.linalg.norm(z - (z @ components.T) @ components, axis=1)


def error_sql(fit: PcaFit, q: Query) -> str:
    """Per-row reconstruction error over aliased rows: ||z||^2 - ||Vz||^2 is the squared residual (V orthonormal)."""
    mean = q.param([float(v) for v in fit.mean], "Array(Float64)", "mu")
    std = q.param([float(v) for v in fit.std], "Array(Float64)", "sd")
    # One parameter per component: a lambda over an array of components copied the matrix into every row
    # (measured on 2 x 1M rows, 22 inputs, 10 components: 6.1 s that way, 2.6 s this way).
    projected = " + ".join(f"pow(arrayDotProduct({q.param([float(v) for v in row], 'Array(Float64)', 'pc')}, z), 2)"
                           for row in fit.components)
    z = f"arrayMap((x, m, s) -> ifNull((x - m) / s, 0.), [{', '.join(fit.sql)}], {mean}, {std})"
    return f"sqrt(greatest(0., arraySum(arrayMap(v -> v * v, z)) - ({projected}))) AS error, {z} AS z"


def pca_band(reference_mean: float, reference_std: float, current_rows: int, sigmas: float, min_change: float) -> Band:
    """Where the mean error of `current_rows` rows falls without drift (the rule of the module's docstring)."""
    half = max(sigmas * reference_std / math.sqrt(current_rows), min_change * reference_mean)
    return Band(reference_mean - half, reference_mean + half)


def classifier_auc(reference: pd.DataFrame, current: pd.DataFrame, columns: list[Column], folds: int) -> float | None:
    """Mean ROC AUC over stratified folds of a classifier telling `current` rows from `reference` rows."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # imported here: only the drift stage needs it
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from threadpoolctl import threadpool_limits

    both = pd.concat([reference, current], ignore_index=True)
    x = pd.DataFrame(index=both.index)
    for c in columns:
        values = both[c.name]
        if values.notna().sum() == 0:
            continue  # nothing to learn from, and an empty categorical breaks the model
        if c.type is ColumnType.NUMERIC:
            x[c.name] = pd.to_numeric(values, errors="coerce").astype(float)
        else:
            # Plain strings with NaN for missing (the model's encoder refuses pandas' NA among strings).
            text = values.astype(object).where(values.notna(), np.nan)
            text = text.where(text.isna(), text.astype(str))
            top = text.value_counts().index[:MAX_CLASSIFIER_CATEGORIES]
            x[c.name] = pd.Categorical(text.where(text.isna() | text.isin(top), OTHER))
    if x.empty:
        return None
    y = np.r_[np.zeros(len(reference)), np.ones(len(current))]
    model = HistGradientBoostingClassifier(random_state=SEED, categorical_features="from_dtype")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    # One thread: on a busy host OpenMP's threads spin against each other (measured on 2 shared cores:
    # 2-3 s per 5-fold run of 2 x 5,000 rows with one thread, 37 s with two).
    with threadpool_limits(1):
        return float(np.mean(cross_val_score(model, x, y, cv=cv, scoring="roc_auc")))


def detect(client: Client, model: ModelSpec, window: Window) -> list[MultivariateRow]:
    """Both methods on all rows of `window`: one row each, a verdict or the reason there is none."""
    spec = model.multivariate
    q = Query()
    reference, current = sample_frames(client, model, window, spec.sample_rows, prediction=False)
    ref_n, cur_n = len(reference), len(current)  # the whole side when below sample_rows (>= min_rows)
    status = ("no_data" if cur_n == 0 else "no_reference" if ref_n == 0
              else "insufficient_data" if min(ref_n, cur_n) < spec.min_rows else "")
    if status:
        return [MultivariateRow(m, None, None, None, False, status, ref_n, cur_n, 0) for m in METHODS]
    sample_n = min(ref_n, cur_n)
    columns = columns_for(model, q, prediction=False, target=False)
    sides, aliased = column_sides_sql(model, window, ALL_ROWS, q, columns, with_labels=False)
    fit = fit_pca(encode(reference, aliased, q), spec.pca_variance)
    if fit is None:
        ref_rows, cur_rows = _counts(client, sides, q)
        pca = MultivariateRow(METHODS[0], None, None, None, False, "too_few_features", ref_rows, cur_rows, ref_n)
    else:
        row = client.query(
            f"SELECT countIf(side = 0), countIf(side = 1), avgIf(error, side = 0), stddevSampIf(error, side = 0), "
            f"avgIf(error, side = 1) FROM (SELECT side, {error_sql(fit, q)} FROM {sides})",
            parameters=q.parameters, settings=DETECTOR_SETTINGS).result_rows[0]
        ref_rows, cur_rows, ref_mean, ref_std, cur_mean = int(row[0]), int(row[1]), *map(float, row[2:])
        band = pca_band(ref_mean, ref_std, cur_rows, spec.pca_sigmas, spec.pca_min_change)
        drifted = not band.contains(cur_mean)
        pca = MultivariateRow(METHODS[0], cur_mean, band.lower, band.upper, drifted, "drifted" if drifted else "ok",
                              ref_rows, cur_rows, ref_n)
    auc = classifier_auc(reference, current, columns, spec.classifier_folds)
    if auc is None:
        classifier = MultivariateRow(METHODS[1], None, None, spec.classifier_auc_threshold, False, "too_few_features",
                                     ref_rows, cur_rows, sample_n)
    else:
        drifted = auc >= spec.classifier_auc_threshold
        classifier = MultivariateRow(METHODS[1], auc, None, spec.classifier_auc_threshold, drifted,
                                     "drifted" if drifted else "ok", ref_rows, cur_rows, sample_n)
    return [pca, classifier]


def _counts(client: Client, sides: str, q: Query) -> tuple[int, int]:
    row = client.query(f"SELECT countIf(side = 0), countIf(side = 1) FROM {sides}", parameters=q.parameters,
                       settings=DETECTOR_SETTINGS).result_rows[0]
    return int(row[0]), int(row[1])
