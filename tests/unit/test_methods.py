"""Drift methods from aggregates agree with Evidently 0.7.23's legacy stattests and with scipy.

Every method is computed the way production computes it -- raw arrays are
reduced to the summary the SQL side would produce, then the method runs on the
summary -- and compared with Evidently's own StatTest object called on pandas
Series, as ``get_one_column_drift`` calls it (after dropping NaN and +-inf).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
import zlib

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import _hypotests, _stats_py

from detectors.methods import METHODS, get_method, methods_for
from detectors.methods.anderson import anderson_p_value
from detectors.methods.base import DriftMethod
from detectors.methods.cramer_von_mises import cvm_p_value
from detectors.methods.ks import ks_p_value
from detectors.summaries import (
    BinCounts,
    CategoryCounts,
    CdfStats,
    ColumnType,
    Summary,
    bin_counts_from_arrays,
    category_counts_from_arrays,
    cdf_stats_from_arrays,
    cdf_stats_from_bins,
    sturges_edges,
    w1_binning_error_bound,
)
from tests.evidently_oracle import (
    EV_TYPE,
    EVIDENTLY,
    evidently_result,
    evidently_series,
)

NUMERIC_ONLY = ["ks", "wasserstein", "anderson", "cramer_von_mises", "ed"]
BINNED = ["psi", "kl_div", "jensenshannon", "hellinger"]
COUNTED = ["chisquare", "z"]

SIZES = {"tiny": (15, 18), "small": (300, 400), "large": (5000, 20000)}


# --------------------------------------------------------------------------- datasets


def _with_missing(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sprinkle NaN and +-inf, which Evidently drops before testing."""
    out = values.astype(float)
    idx = rng.choice(out.size, size=max(1, out.size // 50), replace=False)
    out[idx] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    return out


def _categories(rng: np.random.Generator, size: int, probs: list[float], labels: str = "abcdef") -> np.ndarray:
    return rng.choice(np.array(list(labels[: len(probs)]), dtype=object), size=size, p=probs)


@functools.cache
def dataset(name: str, size: str) -> tuple[np.ndarray, np.ndarray, ColumnType]:
    """Seeded (reference, current, column type); the seed depends on the name and size only."""
    n, m = SIZES[size]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{size}".encode()))
    if name == "mean_shift":
        return _with_missing(rng.normal(0, 1, n), rng), _with_missing(rng.normal(0.3, 1, m), rng), ColumnType.NUMERIC
    if name == "variance_change":
        return rng.normal(5, 1, n), rng.normal(5, 1.6, m), ColumnType.NUMERIC
    if name == "unchanged":
        return rng.lognormal(0, 0.5, n), rng.lognormal(0, 0.5, m), ColumnType.NUMERIC
    if name == "near_constant":  # reference std below 0.001: Wasserstein's normaliser is floored
        return 2.5 + rng.normal(0, 2e-4, n), 2.5 + rng.normal(1e-4, 3e-4, m), ColumnType.NUMERIC
    if name == "bimodal_gap":  # Sturges bins empty in both windows, so zero-filling matters
        ref = np.concatenate([rng.normal(0, 1, n // 2), rng.normal(40, 1, n - n // 2)])
        cur = np.concatenate([rng.normal(0.5, 1, m // 2), rng.normal(40, 1, m - m // 2)])
        return ref, cur, ColumnType.NUMERIC
    if name == "few_values_5":  # integer dtype: numpy's integer bin-width rule applies to Hellinger
        return (rng.choice(5, n, p=[0.1, 0.2, 0.3, 0.25, 0.15]),
                rng.choice(5, m, p=[0.15, 0.2, 0.25, 0.25, 0.15]), ColumnType.NUMERIC)
    if name == "few_values_20":  # the reference has 20 values, the current 21: still the counts branch
        ref = rng.choice(20, n) if n >= 20 else rng.choice(20, n, replace=False)
        return ref.astype(float) / 4, rng.choice(21, m).astype(float) / 4, ColumnType.NUMERIC
    if name == "binary_numeric":
        return rng.binomial(1, 0.3, n), rng.binomial(1, 0.36, m), ColumnType.NUMERIC
    if name == "categorical_shift":
        return (_categories(rng, n, [0.3, 0.25, 0.2, 0.15, 0.1]),
                _categories(rng, m, [0.25, 0.25, 0.2, 0.15, 0.15]), ColumnType.CATEGORICAL)
    if name == "categorical_unchanged":
        ref = _categories(rng, n, [0.4, 0.3, 0.2, 0.1]).astype(object)
        ref[rng.choice(n, n // 40, replace=False)] = None  # nulls are dropped
        return ref, _categories(rng, m, [0.4, 0.3, 0.2, 0.1]), ColumnType.CATEGORICAL
    if name == "categorical_new_category":  # "f" only in current: chi-square infinite, PSI zero-filled
        return (_categories(rng, n, [0.4, 0.3, 0.3], "abc"),
                _categories(rng, m, [0.38, 0.3, 0.3, 0.02], "abcf"), ColumnType.CATEGORICAL)
    if name == "binary":
        return (_categories(rng, n, [0.7, 0.3], ["no", "yes"]),  # type: ignore[arg-type]
                _categories(rng, m, [0.64, 0.36], ["no", "yes"]), ColumnType.CATEGORICAL)  # type: ignore[arg-type]
    raise KeyError(name)


NUMERIC_SETS = ["mean_shift", "variance_change", "unchanged", "near_constant", "bimodal_gap", "few_values_5", "few_values_20",
                "binary_numeric"]
CATEGORICAL_SETS = ["categorical_shift", "categorical_unchanged", "categorical_new_category", "binary"]


_evidently_series = evidently_series


def _pooled_distinct(ref: np.ndarray, cur: np.ndarray) -> int:
    return int(pd.concat([_evidently_series(ref), _evidently_series(cur)]).nunique())


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for size in SIZES:
        for name in NUMERIC_SETS:
            if size == "tiny" and name not in ("mean_shift", "few_values_5", "variance_change"):
                continue
            ref, cur, _ = dataset(name, size)
            methods = NUMERIC_ONLY + BINNED
            if _pooled_distinct(ref, cur) <= 5:  # the default rule sends these to chisquare / z
                methods = methods + COUNTED
            cases += [(name, size, method) for method in methods]
        if size != "tiny":
            cases += [(name, size, method) for name in CATEGORICAL_SETS for method in BINNED + COUNTED]
    return cases


# --------------------------------------------------------------------------- helpers


def summary_for(method: DriftMethod, column_type: ColumnType, ref: np.ndarray, cur: np.ndarray) -> Summary:
    """The summary the SQL side would build for this method and column."""
    reference_distinct = int(_evidently_series(ref).nunique())
    need = method.needs_for(column_type, reference_distinct)
    if need == "counts":
        return category_counts_from_arrays(ref, cur)
    if need == "bins":
        return bin_counts_from_arrays(ref, cur, sturges_count=method.sturges_basis)
    return cdf_stats_from_arrays(ref, cur)


def rel_close(ours: float, theirs: float, rel: float) -> bool:
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    if ours == theirs:
        return True
    return abs(ours - theirs) <= rel * max(abs(ours), abs(theirs))


# --------------------------------------------------------------------------- agreement with Evidently


@pytest.mark.parametrize("name,size,method", _cases())
def test_method_agrees_with_evidently(name: str, size: str, method: str) -> None:
    ref, cur, column_type = dataset(name, size)
    spec = get_method(method)
    ours = spec(summary_for(spec, column_type, ref, cur))
    theirs = evidently_result(method, ref, cur, column_type)
    assert ours.threshold == theirs.actual_threshold
    assert rel_close(ours.score, float(theirs.drift_score), 1e-6), (ours.score, theirs.drift_score)
    assert ours.drifted == bool(theirs.drifted)
    if spec.kind == "p_value":
        assert ours.p_value == ours.score
    else:
        assert ours.p_value is None and ours.statistic == ours.score


def test_cases_cover_both_verdicts_and_every_method() -> None:
    """Guard against a dataset table that only exercises one side of the thresholds."""
    seen: dict[str, set[bool]] = {}
    for name, size, method in _cases():
        ref, cur, column_type = dataset(name, size)
        spec = get_method(method)
        seen.setdefault(method, set()).add(spec(summary_for(spec, column_type, ref, cur)).drifted)
    assert set(seen) == set(METHODS)
    assert all(verdicts == {True, False} for verdicts in seen.values()), seen


@pytest.mark.parametrize("method", sorted(METHODS))
def test_comparison_at_the_threshold_matches_evidently(method: str) -> None:
    """With the threshold equal to the score, the verdict shows whether the rule is <, <=, > or >=."""
    name = "mean_shift" if method in NUMERIC_ONLY else "categorical_shift"
    ref, cur, column_type = dataset(name, "small")
    spec = get_method(method)
    summary = summary_for(spec, column_type, ref, cur)
    ours = spec(summary, spec.compute(summary, 0.5).score)
    theirs = evidently_result(method, ref, cur, column_type)
    at_theirs = evidently_result(method, ref, cur, column_type, threshold=float(theirs.drift_score))
    assert ours.drifted == bool(at_theirs.drifted)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_defaults_and_names_match_evidently(method: str) -> None:
    spec = METHODS[method]
    assert spec.name == method == EVIDENTLY[method].name
    assert spec.default_threshold == EVIDENTLY[method].default_threshold
    assert {EV_TYPE[t] for t in spec.column_types} == set(EVIDENTLY[method].allowed_feature_types)


def test_chisquare_on_a_single_category_gives_nan_like_evidently() -> None:
    ref = np.array(["a"] * 30, dtype=object)
    cur = np.array(["a"] * 40, dtype=object)
    ours = get_method("chisquare")(category_counts_from_arrays(ref, cur))
    theirs = evidently_result("chisquare", ref, cur, ColumnType.CATEGORICAL)
    assert math.isnan(ours.score) and math.isnan(theirs.drift_score)
    assert ours.drifted is False and not theirs.drifted


@pytest.mark.parametrize("cur_value,expected_p", [("a", 1.0), ("b", 0.0)])
def test_z_single_values(cur_value: str, expected_p: float) -> None:
    ref = np.array(["a"] * 30, dtype=object)
    cur = np.array([cur_value] * 40, dtype=object)
    ours = get_method("z")(category_counts_from_arrays(ref, cur))
    theirs = evidently_result("z", ref, cur, ColumnType.CATEGORICAL)
    assert ours.score == pytest.approx(expected_p, abs=1e-12)
    assert rel_close(ours.score, theirs.drift_score, 1e-6) and ours.drifted == theirs.drifted


# --------------------------------------------------------------------------- summaries against scipy / numpy


CDF_CASES = [(name, size) for size in SIZES for name in NUMERIC_SETS]


@pytest.mark.parametrize("name,size", CDF_CASES)
def test_cdf_stats_match_scipy(name: str, size: str) -> None:
    ref, cur, _ = dataset(name, size)
    r, c = _evidently_series(ref).to_numpy(float), _evidently_series(cur).to_numpy(float)
    s = cdf_stats_from_arrays(ref, cur)
    assert (s.n, s.m, s.exact) == (r.size, c.size, True)
    ks = stats.ks_2samp(r, c)
    assert rel_close(s.ks_d, float(ks.statistic), 1e-9)
    assert rel_close(ks_p_value(s.ks_d, s.n, s.m), float(ks.pvalue), 1e-9)
    assert rel_close(s.w1, stats.wasserstein_distance(r, c), 1e-9)
    assert rel_close(math.sqrt(2 * s.l2), stats.energy_distance(r, c), 1e-9)
    assert rel_close(s.ref_std, float(np.std(r)), 1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ad = stats.anderson_ksamp([r, c], variant="midrank")
    assert s.ad_a2kn is not None
    statistic, p = anderson_p_value(s.ad_a2kn, s.n, s.m)
    assert rel_close(statistic, float(ad.statistic), 1e-9)
    assert rel_close(p, float(ad.pvalue), 1e-9)
    cvm = stats.cramervonmises_2samp(r, c)
    assert s.cvm_u is not None
    t, p = cvm_p_value(s.cvm_u, s.n, s.m)
    assert rel_close(t, float(cvm.statistic), 1e-9)
    assert rel_close(p, float(cvm.pvalue), 1e-9)


def test_cvm_u_is_exact_for_small_samples() -> None:
    """The exact p-value needs U exactly: 4U is an integer, and U equals the rank formula to the bit."""
    ref, cur, _ = dataset("few_values_5", "tiny")
    s = cdf_stats_from_arrays(ref, cur)
    assert s.cvm_u is not None and (4 * s.cvm_u) == int(4 * s.cvm_u)
    ranks = stats.rankdata(np.concatenate([np.sort(ref), np.sort(cur)]))
    n, m = ref.size, cur.size
    u = n * np.sum((ranks[:n] - np.arange(1, n + 1)) ** 2) + m * np.sum((ranks[n:] - np.arange(1, m + 1)) ** 2)
    assert s.cvm_u == u


def test_anderson_with_one_distinct_value_raises_like_scipy() -> None:
    s = cdf_stats_from_arrays(np.ones(10), np.ones(12))
    with pytest.raises(ValueError, match="more than one distinct"):
        get_method("anderson")(s)
    with pytest.raises(ValueError):
        stats.anderson_ksamp([np.ones(10), np.ones(12)], variant="midrank")


@pytest.mark.parametrize("size", [1, 2, 3, 16, 17, 64, 1000, 1024, 25_000])
@pytest.mark.parametrize("kind", ["float", "integer", "constant", "integer_narrow"])
def test_sturges_edges_match_numpy(size: int, kind: str) -> None:
    rng = np.random.default_rng(size)
    x = {
        "float": rng.normal(3, 2, size),
        "integer": rng.integers(-50, 50, size),
        "constant": np.full(size, 7.25),
        "integer_narrow": rng.integers(0, 3, size),  # width < 1: numpy widens it to 1 for integer data
    }[kind]
    expected = np.histogram_bin_edges(x, bins="sturges")
    ours = sturges_edges(x.min(), x.max(), x.size, integer=np.issubdtype(x.dtype, np.integer))
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize("name", NUMERIC_SETS)
@pytest.mark.parametrize("basis", ["pooled_rows", "pooled_distinct"])
def test_bin_counts_match_numpy_histogram(name: str, basis: str) -> None:
    ref, cur, _ = dataset(name, "large")
    r, c = _evidently_series(ref).to_numpy(), _evidently_series(cur).to_numpy()
    pooled = np.concatenate([r, c])
    edges = np.histogram_bin_edges(pooled if basis == "pooled_rows" else np.unique(pooled), bins="sturges")
    b = bin_counts_from_arrays(ref, cur, sturges_count=basis)  # type: ignore[arg-type]
    np.testing.assert_array_equal(b.edges, edges)
    np.testing.assert_array_equal(b.reference, np.histogram(r, edges)[0])
    np.testing.assert_array_equal(b.current, np.histogram(c, edges)[0])


def test_category_counts_drop_missing() -> None:
    ref = np.array(["a", None, "b", "a", float("nan")], dtype=object)
    cur = np.array([1.0, np.nan, np.inf, 2.0, 1.0])
    counts = category_counts_from_arrays(ref, cur)
    assert counts == CategoryCounts(reference={"a": 2, "b": 1}, current={1.0: 2, 2.0: 1})


# --------------------------------------------------------------------------- the binned approximation

# Relative w1 error of the binned approximation, 5,000 vs 20,000 values, edges = the union of both
# samples' quantiles at 1/1024 steps plus the pooled min and max. Measured on the seeded datasets below:
# 7.3e-4 (mean shift), 2.1e-3 (variance change), 3.9e-2 (student t, df=2, current scaled 1.2 and shifted 0.3);
# over 30 other seeds at most 1.8e-3, 2.3e-3 and 0.13 (median 2.6e-2 for t). Nearly all of the heavy-tailed
# error sits in the two outermost bins (beyond the extreme 1/1024 quantiles), where a linear CDF is a poor
# model of a thin tail spread over a very wide bin. The rigorous bound was 3.0%, 3.1% and 45% of w1 there.
# Asserted bounds, about 2x above the worst measured figure over all seeds:
BINNED_W1_REL_ERROR = {"mean_shift": 5e-3, "variance_change": 5e-3, "student_t": 0.25}
# l2 (energy distance) is less sensitive to the tails: measured at most 2.1e-4 (light tails), 2.8e-3 (t).
BINNED_L2_REL_ERROR = 1e-2


def _fine_bins(ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps = np.linspace(0, 1, 1025)
    pooled = np.concatenate([ref, cur])
    edges = np.unique(np.concatenate([np.quantile(ref, steps), np.quantile(cur, steps), [pooled.min(), pooled.max()]]))
    interior = edges[1:-1]
    k = edges.size - 1
    ref_counts = np.bincount(np.searchsorted(interior, ref, side="right"), minlength=k)
    cur_counts = np.bincount(np.searchsorted(interior, cur, side="right"), minlength=k)
    return edges, ref_counts, cur_counts


def _binning_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    if name == "student_t":
        rng = np.random.default_rng(2)
        return rng.standard_t(2, 5000), 1.2 * rng.standard_t(2, 20000) + 0.3
    ref, cur, _ = dataset(name, "large")
    return _evidently_series(ref).to_numpy(float), _evidently_series(cur).to_numpy(float)


@pytest.mark.parametrize("name", ["mean_shift", "variance_change", "student_t"])
def test_binned_w1_is_within_its_bounds(name: str) -> None:
    ref, cur = _binning_dataset(name)
    exact = cdf_stats_from_arrays(ref, cur)
    edges, ref_counts, cur_counts = _fine_bins(ref, cur)
    binned = cdf_stats_from_bins(edges, ref_counts, cur_counts, float(np.std(ref)))
    error = abs(binned.w1 - exact.w1)
    assert error <= w1_binning_error_bound(edges, ref_counts, cur_counts)
    assert error / exact.w1 < BINNED_W1_REL_ERROR[name], error / exact.w1
    assert (binned.n, binned.m, binned.exact, binned.ad_a2kn, binned.cvm_u) == (ref.size, cur.size, False, None, None)
    assert binned.ks_d <= exact.ks_d + 1e-12  # edges are a subset of the jump points
    assert abs(binned.l2 - exact.l2) / exact.l2 < BINNED_L2_REL_ERROR


def test_binned_integrals_of_a_known_piecewise_linear_difference() -> None:
    """One bin per sample, shifted: d rises 0 -> 0.5 -> 0 linearly, so int|d| = 0.5 and int d^2 = 1/6."""
    s = cdf_stats_from_bins(np.array([0.0, 1.0, 2.0]), np.array([10, 0]), np.array([0, 10]), 1.0)
    assert s.ks_d == 1.0
    assert s.w1 == pytest.approx(1.0)
    assert s.l2 == pytest.approx(2 / 3)
    # A sign change inside a bin: d goes from +0.5 to -0.5, int|d| = w * (0.25 + 0.25) / (2 * 1) = 0.25w.
    s = cdf_stats_from_bins(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1, 0, 1]), np.array([0, 2, 0]), 1.0)
    assert s.w1 == pytest.approx(0.5 / 2 + 0.25 + 0.5 / 2)


def test_w1_bound_is_attained_shape() -> None:
    """All reference mass at a bin's left edge, all current mass at its right edge: error equals the bound."""
    edges, ref_counts, cur_counts = np.array([0.0, 1.0]), np.array([5]), np.array([5])
    binned = cdf_stats_from_bins(edges, ref_counts, cur_counts, 0.0)
    exact = cdf_stats_from_arrays(np.zeros(5), np.ones(5))
    assert binned.w1 == 0.0 and exact.w1 == 1.0
    assert w1_binning_error_bound(edges, ref_counts, cur_counts) == 1.0


@pytest.mark.parametrize("method", ["anderson", "cramer_von_mises"])
def test_rank_methods_refuse_binned_cdf_stats(method: str) -> None:
    s = cdf_stats_from_bins(np.array([0.0, 1.0, 2.0]), np.array([3, 4]), np.array([4, 3]), 1.0)
    with pytest.raises(ValueError, match="exact"):
        get_method(method)(s)


def test_distance_methods_accept_binned_cdf_stats() -> None:
    s = cdf_stats_from_bins(np.array([0.0, 1.0, 2.0]), np.array([3, 4]), np.array([4, 3]), 1.0)
    assert get_method("wasserstein")(s).score == pytest.approx(s.w1)
    assert get_method("ed")(s).score == pytest.approx(math.sqrt(2 * s.l2))


# --------------------------------------------------------------------------- registry and contract


def test_get_method_error_lists_the_valid_names() -> None:
    with pytest.raises(KeyError) as info:
        get_method("kolmogorov")
    message = str(info.value)
    assert "kolmogorov" in message
    for name in METHODS:
        assert name in message


def test_energy_distance_alias() -> None:
    assert get_method("energy_distance") is get_method("ed")


@pytest.mark.parametrize(
    "column_type,expected",
    [
        (ColumnType.NUMERIC, {"ks", "wasserstein", "psi", "jensenshannon", "hellinger", "kl_div", "anderson",
                              "cramer_von_mises", "ed"}),
        (ColumnType.CATEGORICAL, {"chisquare", "z", "psi", "jensenshannon", "hellinger", "kl_div"}),
    ],
)
def test_methods_for(column_type: ColumnType, expected: set[str]) -> None:
    assert {m.name for m in methods_for(column_type)} == expected


@pytest.mark.parametrize(
    "method,column_type,reference_distinct,expected",
    [
        ("psi", ColumnType.NUMERIC, 20, "counts"),
        ("psi", ColumnType.NUMERIC, 21, "bins"),
        ("kl_div", ColumnType.NUMERIC, 21, "bins"),
        ("jensenshannon", ColumnType.CATEGORICAL, 500, "counts"),
        ("hellinger", ColumnType.NUMERIC, 3, "bins"),
        ("hellinger", ColumnType.CATEGORICAL, 3, "counts"),
        ("ks", ColumnType.NUMERIC, 3, "cdf"),
        ("chisquare", ColumnType.NUMERIC, 3, "counts"),
    ],
)
def test_needs_for(method: str, column_type: ColumnType, reference_distinct: int, expected: str) -> None:
    assert get_method(method).needs_for(column_type, reference_distinct) == expected


@pytest.mark.parametrize(
    "method,summary",
    [
        ("ks", CategoryCounts({"a": 1}, {"a": 1})),
        ("chisquare", cdf_stats_from_arrays([1.0, 2.0], [1.0, 3.0])),
        ("psi", cdf_stats_from_arrays([1.0, 2.0], [1.0, 3.0])),
    ],
)
def test_wrong_summary_is_a_type_error(method: str, summary: Summary) -> None:
    with pytest.raises(TypeError, match=method):
        get_method(method)(summary)


def test_summaries_validate_their_shape() -> None:
    with pytest.raises(ValueError):
        BinCounts(edges=np.array([0.0, 1.0, 2.0]), reference=np.array([1]), current=np.array([1, 2]))
    with pytest.raises(ValueError):
        CategoryCounts(reference={}, current={"a": 1})
    with pytest.raises(ValueError):
        CdfStats(n=0, m=1, ks_d=0, w1=0, l2=0, ad_a2kn=None, cvm_u=None, ref_std=0, exact=False)


# --------------------------------------------------------------------------- scipy private helpers we rely on


def test_scipy_exact_ks_helper_is_unchanged() -> None:
    """ks_p_value calls scipy's private _attempt_exact_2kssamp; fail loudly if its contract moves."""
    assert list(inspect.signature(_stats_py._attempt_exact_2kssamp).parameters) == ["n1", "n2", "g", "d",
                                                                                    "alternative"]
    rng = np.random.default_rng(7)
    for n, m in [(15, 18), (300, 400), (250, 250), (9000, 10000)]:
        x, y = rng.normal(size=n), rng.normal(0.1, size=m)
        res = stats.ks_2samp(x, y, method="exact")
        success, _, prob = _stats_py._attempt_exact_2kssamp(n, m, math.gcd(n, m), float(res.statistic), "two-sided")
        assert success and prob == res.pvalue


def test_scipy_exact_cvm_helper_is_unchanged() -> None:
    """cvm_p_value calls scipy's private _pval_cvm_2samp_exact; fail loudly if its contract moves."""
    rng = np.random.default_rng(8)
    for n, m in [(5, 7), (12, 20), (20, 20)]:
        x, y = rng.normal(size=n), np.round(rng.normal(0.5, size=m), 1)
        res = stats.cramervonmises_2samp(x, y, method="exact")
        u = cdf_stats_from_arrays(x, y).cvm_u
        assert float(_hypotests._pval_cvm_2samp_exact(u, n, m)) == res.pvalue
        assert cvm_p_value(u, n, m)[1] == res.pvalue  # type: ignore[arg-type]
