"""Two-sample Cramér--von Mises test (Evidently "cramer_von_mises").

Evidently ships a copy of ``scipy.stats.cramervonmises_2samp`` (method
"auto"): the statistic ``T`` from the midrank ``U`` (Anderson 1962), the exact
null distribution when both samples have at most 20 values, otherwise the
asymptotic one after standardising ``T`` (Anderson 1962, eq. 15) and using the
limiting one-sample distribution (Csörgő & Faraway 1996, eq. 1.2).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, kv
from scipy.stats import _hypotests

from detectors.methods.base import DriftMethod, DriftScore, cdf_required
from detectors.summaries import ColumnType, Summary

# "auto" uses the exact distribution when max(n, m) is at most this.
EXACT_MAX_N = 20
# Terms of the limiting-distribution series are added until one falls below this (the reference algorithm's rule).
_SERIES_TOL = 1e-7


def cvm_statistic(u: float, n: int, m: int) -> float:
    """``T = U / (n m N) - (4 n m - 1) / (6 N)`` (Anderson 1962, eq. 9)."""
    k, total = n * m, n + m
    return u / (k * total) - (4 * k - 1) / (6 * total)


def _limiting_cdf(x: float) -> float:
    """CDF of the limiting Cramér--von Mises distribution (Csörgő & Faraway 1996, eq. 1.2/1.3).

    Sum over k >= 0 of  Gamma(k+1/2) / (Gamma(k+1) pi^1.5 sqrt(x)) * sqrt(4k+1) * exp(-q) * K_{1/4}(q),
    with q = (4k+1)^2 / (16 x), stopping after the first term below 1e-7.

    The p-value is ``1 - cdf``, so in the tail an ulp of the cdf is a large
    relative change of the p-value. To report the same p-values as Evidently
    and scipy, the terms are evaluated with the same primitives they use
    (``gammaln`` and numpy's float64 ``exp``/``sqrt``), which makes the sum
    bit-identical rather than merely close.
    """
    total = np.float64(0.0)
    root_x = np.sqrt(np.float64(x))
    k = 0
    while True:
        y = 4 * k + 1
        q = y**2 / (16 * np.float64(x))
        lead = np.exp(gammaln(k + 0.5) - gammaln(k + 1)) / (np.pi**1.5 * root_x)
        term = lead * np.sqrt(y) * np.exp(-q) * kv(0.25, q)
        total += term
        if abs(term) < _SERIES_TOL:
            return float(total)
        k += 1


def cvm_p_value(u: float, n: int, m: int) -> tuple[float, float]:
    """(T, p-value) as ``cramervonmises_2samp(method="auto")``.

    The exact branch calls scipy's private ``_pval_cvm_2samp_exact`` (the
    Xiao--Gordon--Yakovlev recursion); a test fails if scipy changes it. It
    needs ``U`` exactly, which :func:`~detectors.summaries.cdf_stats_from_arrays`
    gives for such small samples (``4 U`` is an integer).
    """
    if n <= 1 or m <= 1:
        raise ValueError("cramer_von_mises needs at least two values in each sample (Evidently raises too)")
    t = cvm_statistic(u, n, m)
    if max(n, m) <= EXACT_MAX_N:
        return t, float(_hypotests._pval_cvm_2samp_exact(u, n, m))
    k, total = n * m, n + m
    mean_t = (1 + 1 / total) / 6
    var_t = (total + 1.0) * (4 * k * total - 3 * (n**2 + m**2) - 2 * k) / (45 * total**2 * 4 * k)
    tn = 1 / 6 + (t - mean_t) / math.sqrt(45 * var_t)
    if tn < 0.003:  # the limiting CDF there is below 1.3e-18
        return t, 1.0
    return t, max(0.0, 1.0 - _limiting_cdf(tn))


def compute(summary: Summary, threshold: float) -> DriftScore:
    """p-value; drift when ``p <= threshold`` (Evidently's comparison here). Needs the exact ``cvm_u``."""
    cdf = cdf_required(summary, "cramer_von_mises")
    if not cdf.exact or cdf.cvm_u is None:
        raise ValueError("cramer_von_mises needs the exact rank statistic cvm_u; binned CdfStats do not carry it")
    t, p = cvm_p_value(cdf.cvm_u, cdf.n, cdf.m)
    return DriftScore(statistic=float(t), p_value=p, score=p, threshold=threshold, drifted=p <= threshold)


CRAMER_VON_MISES = DriftMethod(
    name="cramer_von_mises",
    display_name="Cramer-von Mises",
    column_types=frozenset({ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="p_value",
    needs="cdf",
    exact_only=True,
    compute=compute,
)
