"""Aggregate summaries of one column in a reference and a current window.

The drift methods in :mod:`detectors.methods` never see raw rows: ClickHouse
holds those and reduces them to one of three summaries, defined here. The
field names are the contract with the SQL side, so they must not change
without changing the queries.

* :class:`CategoryCounts` -- counts per category (or per distinct numeric
  value), for categorical columns and for numeric columns with few values.
* :class:`BinCounts` -- counts per equal-width bin, for the binned methods on
  numeric columns with many values.
* :class:`CdfStats` -- statistics of the two empirical CDFs, for the
  ECDF-based methods (KS, Wasserstein, Anderson--Darling, Cramér--von Mises,
  energy distance).

Each summary also has a numpy constructor working on raw arrays. Those are the
reference implementation the SQL must reproduce, and the oracles the tests
compare against Evidently and scipy. Like Evidently (``get_one_column_drift``
replaces +-inf by NaN and drops NaN before any stattest), the constructors drop
missing and non-finite values first, so every count below is of the finite,
non-null values only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "BinCounts",
    "CategoryCounts",
    "CdfStats",
    "ColumnType",
    "Summary",
    "bin_counts_from_arrays",
    "category_counts_from_arrays",
    "cdf_stats_from_arrays",
    "cdf_stats_from_bins",
    "sturges_edges",
    "w1_binning_error_bound",
]


class ColumnType(StrEnum):
    """The two column kinds drift is computed for (Evidently's Numerical and Categorical)."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of non-null values per category (or per distinct numeric value).

    A key may be absent from one side or carry a zero count there; both mean
    "not seen in that window". Methods work on the union of keys seen (count
    > 0) on either side, which is how Evidently builds its key list.
    """

    reference: Mapping[str | float, int]
    current: Mapping[str | float, int]

    def __post_init__(self) -> None:
        for side, counts in (("reference", self.reference), ("current", self.current)):
            for key, count in counts.items():
                if count < 0 or int(count) != count:
                    raise ValueError(f"{side} count of {key!r} must be a non-negative integer, got {count!r}")
            if sum(counts.values()) <= 0:
                raise ValueError(f"{side} has no non-null values; drift is undefined (Evidently raises too)")


@dataclass(frozen=True)
class BinCounts:
    """Counts per bin over shared edges.

    Bin ``i`` holds the values ``edges[i] <= x < edges[i+1]``, the last bin
    also holding ``x == edges[-1]`` (numpy's histogram convention). Every bin
    must be present, empty ones with a zero count: Evidently's zero-filling
    gives bins that are empty in both windows a non-zero contribution to PSI
    and KL whenever the two fill values differ.

    For Evidently's binned methods the edges are :func:`sturges_edges` of the
    pooled min and max; for the Wasserstein approximation of
    :func:`cdf_stats_from_bins` they can be any increasing edges.
    """

    edges: np.ndarray
    reference: np.ndarray
    current: np.ndarray

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=float)
        if edges.ndim != 1 or edges.size < 2:
            raise ValueError("edges must be a 1-d array of at least two values")
        if not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError("edges must be finite and strictly increasing")
        for side in ("reference", "current"):
            counts = np.asarray(getattr(self, side))
            if counts.shape != (edges.size - 1,):
                raise ValueError(f"{side} must hold {edges.size - 1} counts (one per bin), got shape {counts.shape}")
            if np.any(counts < 0):
                raise ValueError(f"{side} counts must be non-negative")
            if counts.sum() <= 0:
                raise ValueError(f"{side} has no values; drift is undefined (Evidently raises too)")


@dataclass(frozen=True)
class CdfStats:
    """Two-sample ECDF statistics over the pooled sorted distinct values.

    See :func:`cdf_stats_from_arrays` for the exact definitions and the
    formulas the SQL side mirrors, and :func:`cdf_stats_from_bins` for the
    approximation from fine bins (``exact=False``).
    """

    n: int
    m: int
    ks_d: float
    w1: float
    l2: float
    ad_a2kn: float | None
    cvm_u: float | None
    ref_std: float
    exact: bool

    def __post_init__(self) -> None:
        if self.n <= 0 or self.m <= 0:
            raise ValueError(f"both samples need values, got n={self.n}, m={self.m}")


Summary: TypeAlias = CategoryCounts | BinCounts | CdfStats


# --------------------------------------------------------------------------- cleaning


def _finite_floats(values: npt.ArrayLike) -> np.ndarray:
    """The finite values as float64: Evidently turns +-inf into NaN and drops NaN."""
    arr = np.asarray(values)
    if arr.dtype == object:
        arr = np.array([np.nan if v is None else v for v in arr.ravel()], dtype=float)
    arr = np.asarray(arr, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def _is_integer_array(values: npt.ArrayLike) -> bool:
    return np.issubdtype(np.asarray(values).dtype, np.integer)


def _category_key(value: object) -> str | float | None:
    """Normalise one raw value to a key; ``None`` for the values Evidently drops."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        # pandas keeps True/False as their own values; 1.0/0.0 compare equal to them.
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    raise TypeError(f"unsupported category value {value!r} of type {type(value).__name__}")


def _count(values: Iterable[object]) -> dict[str | float, int]:
    counts: Counter[str | float] = Counter()
    for value in values:
        key = _category_key(value)
        if key is not None:
            counts[key] += 1
    try:
        return dict(sorted(counts.items()))
    except TypeError:  # mixed str and numbers: keep first-seen order
        return dict(counts)


# --------------------------------------------------------------------------- constructors


def category_counts_from_arrays(ref: npt.ArrayLike, cur: npt.ArrayLike) -> CategoryCounts:
    """Count each distinct non-null value, as ``GROUP BY value`` does per window.

    None, NaN and +-inf are dropped (Evidently drops them before its tests).
    Numbers become float keys, strings stay strings; a pandas ``value_counts``
    keyed by int compares and hashes equal to these float keys.
    """
    return CategoryCounts(
        reference=_count(np.asarray(ref, dtype=object).ravel()),
        current=_count(np.asarray(cur, dtype=object).ravel()),
    )


def sturges_edges(lo: float, hi: float, count: int, *, integer: bool = False) -> np.ndarray:
    """Equal-width edges exactly as ``np.histogram_bin_edges(x, bins="sturges")``.

    The edges depend only on ``min(x)``, ``max(x)`` and ``len(x)`` (and on
    whether ``x`` has an integer dtype), so Python can compute them from three
    aggregates and hand them to the SQL that counts rows per bin.

    * ``lo == hi``: one bin ``[lo - 0.5, hi + 0.5]``.
    * otherwise ``width = (hi - lo) / (log2(count) + 1)``; for integer data a
      width below 1 becomes 1 (numpy's rule, which Evidently inherits when
      both windows have an integer dtype); ``k = ceil((hi - lo) / width)`` and
      the edges are ``linspace(lo, hi, k + 1)``.

    ``count`` is the number of values binned: the pooled row count for PSI,
    KL and Jensen--Shannon, the pooled *distinct* count for Hellinger.
    """
    if count < 1:
        raise ValueError("count must be positive")
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"need finite lo <= hi, got {lo}, {hi}")
    if lo == hi:
        return np.linspace(lo - 0.5, hi + 0.5, 2)
    width = (hi - lo) / (np.log2(float(count)) + 1.0)
    if integer and width < 1:
        width = 1.0
    k = int(np.ceil((hi - lo) / width))
    return np.linspace(lo, hi, k + 1)


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: the number of interior edges <= x (last bin closed)."""
    return np.searchsorted(edges[1:-1], values, side="right")


def bin_counts_from_arrays(
    ref: npt.ArrayLike,
    cur: npt.ArrayLike,
    *,
    sturges_count: Literal["pooled_rows", "pooled_distinct"] = "pooled_rows",
    integer: bool | None = None,
) -> BinCounts:
    """Evidently's numeric binning: Sturges equal-width bins over the pooled range.

    ``get_binned_data`` (PSI, KL, Jensen--Shannon) sizes the bins from the
    pooled row count; the Hellinger test sizes them from the number of pooled
    distinct values (``sturges_count="pooled_distinct"``). ``integer``
    defaults to "both inputs have an integer dtype", which is when numpy (and
    so Evidently) widens bins narrower than 1.
    """
    if integer is None:
        integer = _is_integer_array(ref) and _is_integer_array(cur)
    r, c = _finite_floats(ref), _finite_floats(cur)
    if r.size == 0 or c.size == 0:
        raise ValueError("both samples need finite values")
    pooled = np.concatenate([r, c])
    count = pooled.size if sturges_count == "pooled_rows" else np.unique(pooled).size
    edges = sturges_edges(pooled.min(), pooled.max(), count, integer=integer)
    k = edges.size - 1
    return BinCounts(
        edges=edges,
        reference=np.bincount(_bin_index(r, edges), minlength=k),
        current=np.bincount(_bin_index(c, edges), minlength=k),
    )


def cdf_stats_from_arrays(ref: npt.ArrayLike, cur: npt.ArrayLike) -> CdfStats:
    r"""Exact ECDF statistics, computed the way the SQL side computes them.

    Why distinct values: a ``GROUP BY value`` over both windows gives, for the
    pooled sorted distinct values :math:`z_1 < \dots < z_J`, the counts
    :math:`a_j` (reference) and :math:`b_j` (current); window functions give
    the running sums. Everything below is a sum over ``j`` of those numbers.

    Notation (``n = sum a_j``, ``m = sum b_j``, ``N = n + m``)::

        A_j  = a_1 + ... + a_j          (running reference count, A_0 = 0)
        B_j  = b_1 + ... + b_j          (running current count,  B_0 = 0)
        l_j  = a_j + b_j,  L_j = A_j + B_j
        d_j  = A_j / n - B_j / m        (F_ref - F_cur on [z_j, z_{j+1}))

    Statistics::

        ks_d    = max_j |d_j|
        w1      = sum_{j<J} |d_j| * (z_{j+1} - z_j)
        l2      = sum_{j<J} d_j^2 * (z_{j+1} - z_j)
        ref_std = sqrt(sum_j a_j * (z_j - mu)^2 / n),  mu = sum_j a_j z_j / n

    Anderson--Darling, midrank version (Scholz & Stephens 1987, eq. 7, as in
    ``scipy.stats.anderson_ksamp``)::

        Bm_j  = L_{j-1} + l_j / 2            (pooled midrank position)
        Ma_j  = A_{j-1} + a_j / 2            (reference midrank count)
        Mb_j  = B_{j-1} + b_j / 2            (current midrank count)
        den_j = Bm_j * (N - Bm_j) - N * l_j / 4
        ad_a2kn = (N - 1) / N * sum_j (l_j / N) * [ (N*Ma_j - Bm_j*n)^2 / n
                                                   + (N*Mb_j - Bm_j*m)^2 / m ] / den_j

    (for two samples the two squares are equal, so the bracket is
    ``(N*Ma_j - Bm_j*n)^2 * (1/n + 1/m)``). With a single distinct value every
    ``den_j`` is 0 and the statistic is undefined: ``ad_a2kn`` is NaN, and the
    Anderson--Darling method raises as scipy does.

    Cramér--von Mises ``U`` (Anderson 1962, eq. 10, ties by average ranks as
    in ``scipy.stats.cramervonmises_2samp``). The reference values equal to
    ``z_j`` have ranks ``A_{j-1}+1 .. A_j`` among the reference and the common
    midrank ``L_{j-1} + (l_j + 1) / 2`` in the pooled sample, so the sum of the
    squared rank differences collapses to::

        U = n * sum_j [ a_j * Mb_j^2 + a_j * (a_j^2 - 1) / 12 ]
          + m * sum_j [ b_j * Ma_j^2 + b_j * (b_j^2 - 1) / 12 ]

    Every term is a multiple of 1/4, so ``4 U`` is an integer (exact in
    Int64/Float64 for small samples, which is what the exact p-value needs).
    """
    r, c = _finite_floats(ref), _finite_floats(cur)
    n, m = r.size, c.size
    if n == 0 or m == 0:
        raise ValueError("both samples need finite values")
    z, inverse = np.unique(np.concatenate([r, c]), return_inverse=True)
    a = np.bincount(inverse[:n], minlength=z.size).astype(float)
    b = np.bincount(inverse[n:], minlength=z.size).astype(float)
    return _cdf_stats_from_distinct(z, a, b)


def _cdf_stats_from_distinct(z: np.ndarray, a: np.ndarray, b: np.ndarray) -> CdfStats:
    """The formulas of :func:`cdf_stats_from_arrays`, on distinct values and counts."""
    n, m = float(a.sum()), float(b.sum())
    total = n + m
    a_cum, b_cum = np.cumsum(a), np.cumsum(b)
    a_prev, b_prev = a_cum - a, b_cum - b
    d = a_cum / n - b_cum / m
    dz = np.diff(z)
    ks_d = float(np.max(np.abs(d)))
    w1 = float(np.sum(np.abs(d[:-1]) * dz))
    l2 = float(np.sum(d[:-1] ** 2 * dz))

    pooled_count = a + b
    mid = a_prev + b_prev + pooled_count / 2.0
    ma = a_prev + a / 2.0
    mb = b_prev + b / 2.0
    if z.size >= 2:
        den = mid * (total - mid) - total * pooled_count / 4.0
        weight = pooled_count / total / den
        ad = np.sum(weight * (total * ma - mid * n) ** 2) / n + np.sum(weight * (total * mb - mid * m) ** 2) / m
        ad_a2kn = float(ad * (total - 1.0) / total)
    else:
        ad_a2kn = math.nan

    cvm_u = float(
        n * np.sum(a * mb**2 + a * (a * a - 1.0) / 12.0) + m * np.sum(b * ma**2 + b * (b * b - 1.0) / 12.0)
    )

    mean = float(np.sum(a * z) / n)
    ref_std = math.sqrt(float(np.sum(a * (z - mean) ** 2) / n))
    return CdfStats(
        n=int(n), m=int(m), ks_d=ks_d, w1=w1, l2=l2, ad_a2kn=ad_a2kn, cvm_u=cvm_u, ref_std=ref_std, exact=True
    )


# --------------------------------------------------------------------------- from fine bins


def _bin_cdfs(edges: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike):
    """Validated widths and the two CDFs at every edge (0 at the first, 1 at the last)."""
    summary = BinCounts(edges=np.asarray(edges, dtype=float), reference=np.asarray(ref_counts),
                        current=np.asarray(cur_counts))
    r = np.asarray(summary.reference, dtype=float)
    c = np.asarray(summary.current, dtype=float)
    n, m = r.sum(), c.sum()
    f = np.concatenate([[0.0], np.cumsum(r)]) / n
    g = np.concatenate([[0.0], np.cumsum(c)]) / m
    f[-1] = g[-1] = 1.0
    return np.diff(summary.edges.astype(float)), f, g, int(n), int(m)


def cdf_stats_from_bins(
    edges: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, ref_std: float
) -> CdfStats:
    r"""Approximate ECDF statistics from fine bins, when exact sums are too costly.

    Why: the exact statistics need one row per distinct value; for
    high-cardinality columns the SQL side can instead count rows in fine
    bins (e.g. edges at the pooled quantiles) and let this function integrate.

    Model: inside each bin each sample's CDF is linear (its mass spread
    uniformly), so ``d = F_ref - F_cur`` is piecewise linear, with values
    ``d_i = P_i - Q_i`` at the edges (``P_i``, ``Q_i`` the fractions of each
    sample below edge ``i``). On a bin of width ``w`` going from ``d0`` to ``d1``
    the integrals are exact for that model::

        int d^2  = w * (d0^2 + d0*d1 + d1^2) / 3
        int |d|  = w * (|d0| + |d1|) / 2                  if d0*d1 >= 0
                 = w * (d0^2 + d1^2) / (2 * (|d0| + |d1|)) otherwise (sign change)

    ``ks_d`` is ``max_i |d_i|`` (a lower bound of the true KS statistic: the
    maximum of a piecewise-linear function is at an edge). ``ad_a2kn`` and
    ``cvm_u`` need ranks and are ``None``; ``exact`` is False.

    Error bound for ``w1`` (rigorous, see :func:`w1_binning_error_bound`): on
    bin ``i`` the true ECDFs satisfy ``P_i <= F <= P_{i+1}`` and
    ``Q_i <= G <= Q_{i+1}``, so the true ``d`` *and* the interpolated ``d`` both
    lie in ``[lo_i, hi_i] = [P_i - Q_{i+1}, P_{i+1} - Q_i]``. Hence ``|d|`` of
    either lies in an interval of length ``r_i = max(-lo_i, hi_i)`` if the
    interval straddles 0, else ``hi_i - lo_i``, and::

        |w1_binned - w1_true| <= sum_i w_i * r_i  <=  sum_i w_i * (p_i + q_i)

    with ``p_i``, ``q_i`` the bin's reference and current mass fractions. It
    holds for any data, but it is loose: the observed error is usually a small
    fraction of it.
    """
    widths, f, g, n, m = _bin_cdfs(edges, ref_counts, cur_counts)
    d = f - g
    d0, d1 = d[:-1], d[1:]
    l2 = float(np.sum(widths * (d0 * d0 + d0 * d1 + d1 * d1) / 3.0))
    abs0, abs1 = np.abs(d0), np.abs(d1)
    same_sign = d0 * d1 >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        crossing = (d0 * d0 + d1 * d1) / (2.0 * (abs0 + abs1))
    per_bin = np.where(same_sign, (abs0 + abs1) / 2.0, crossing)
    w1 = float(np.sum(widths * per_bin))
    return CdfStats(
        n=n, m=m, ks_d=float(np.max(np.abs(d))), w1=w1, l2=l2, ad_a2kn=None, cvm_u=None,
        ref_std=float(ref_std), exact=False,
    )


def w1_binning_error_bound(edges: npt.ArrayLike, ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Worst-case ``|w1_binned - w1_true|`` for these bins; proof in :func:`cdf_stats_from_bins`.

    Why: lets the caller decide whether the binned approximation is good
    enough for a verdict (e.g. when the bound is far below the threshold gap)
    or whether the exact sums must be computed.
    """
    widths, f, g, _, _ = _bin_cdfs(edges, ref_counts, cur_counts)
    lo = f[:-1] - g[1:]
    hi = f[1:] - g[:-1]
    straddles = (lo < 0) & (hi > 0)
    spread = np.where(straddles, np.maximum(-lo, hi), hi - lo)
    return float(np.sum(widths * spread))
