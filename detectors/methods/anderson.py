"""Two-sample Anderson--Darling test, midrank version (Evidently "anderson").

Evidently calls ``scipy.stats.anderson_ksamp([reference, current])`` and
reports its p-value. scipy standardises the midrank statistic ``A2akN``
(Scholz & Stephens 1987, eq. 7) by its exact null mean and variance and reads
the p-value off a quadratic fit of log-significance against the paper's
critical values, capping it to ``[0.001, 0.25]``. So the reported p-value is
never below 0.001 nor above 0.25, and with the 0.1 default threshold a capped
0.25 means "no drift" and a floored 0.001 means "drift".
"""

from __future__ import annotations

import math

import numpy as np

from detectors.methods.base import DriftMethod, DriftScore, cdf_required
from detectors.summaries import ColumnType, Summary

# Scholz & Stephens (1987), Table 2: the critical values for m = k - 1 degrees of freedom are
# t0 + t1 / sqrt(m) + t2 / m at these significance levels.
SIGNIFICANCE = np.array([0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.001])
_T0 = np.array([0.675, 1.281, 1.645, 1.96, 2.326, 2.573, 3.085])
_T1 = np.array([-0.245, 0.25, 0.678, 1.149, 1.822, 2.364, 3.615])
_T2 = np.array([-0.105, -0.305, -0.362, -0.391, -0.396, -0.345, -0.154])


def _null_variance(n: int, m: int) -> float:
    """Exact variance of ``A2akN`` under the null for two samples (Scholz & Stephens, eq. 4)."""
    k = 2
    total = n + m
    big_h = 1.0 / n + 1.0 / m
    inv = 1.0 / np.arange(1, total, dtype=float)  # 1/j for j = 1 .. N-1
    h = float(inv.sum())
    # g = sum_{i=1}^{N-2} (1/(N-i)) * sum_{j=i+1}^{N-1} 1/j
    tail = np.cumsum(inv[::-1])[::-1]  # tail[i-1] = sum_{j=i}^{N-1} 1/j
    i = np.arange(1, total - 1, dtype=float)
    g = float(np.sum(tail[1:] / (total - i)))
    a = (4 * g - 6) * (k - 1) + (10 - 6 * g) * big_h
    b = (2 * g - 4) * k**2 + 8 * h * k + (2 * g - 14 * h - 4) * big_h - 8 * h + 4 * g - 6
    c = (6 * h + 2 * g - 2) * k**2 + (4 * h - 4 * g + 6) * k + (2 * h - 6) * big_h + 4 * h
    d = (2 * h + 6) * k**2 - 4 * h * k
    return (a * total**3 + b * total**2 + c * total + d) / ((total - 1.0) * (total - 2.0) * (total - 3.0))


def anderson_p_value(ad_a2kn: float, n: int, m: int) -> tuple[float, float]:
    """(standardised statistic, p-value) for two samples, as ``scipy.stats.anderson_ksamp``.

    The p-value is ``exp`` of a quadratic least-squares fit of
    ``log(significance)`` on the critical values, evaluated at the statistic,
    and capped to 0.25 / floored to 0.001 outside the table's range.
    """
    if n + m < 4:
        raise ValueError("anderson needs at least 4 values in total")
    statistic = (ad_a2kn - 1.0) / math.sqrt(_null_variance(n, m))
    critical = _T0 + _T1 + _T2  # m = k - 1 = 1
    if statistic < critical.min():
        return statistic, float(SIGNIFICANCE.max())
    if statistic > critical.max():
        return statistic, float(SIGNIFICANCE.min())
    fit = np.polyfit(critical, np.log(SIGNIFICANCE), 2)
    return statistic, math.exp(np.polyval(fit, statistic))


def compute(summary: Summary, threshold: float) -> DriftScore:
    """Capped p-value; drift when ``p < threshold``. Needs the exact ``ad_a2kn``."""
    cdf = cdf_required(summary, "anderson")
    if not cdf.exact or cdf.ad_a2kn is None:
        raise ValueError("anderson needs the exact midrank statistic ad_a2kn; binned CdfStats do not carry it")
    if math.isnan(cdf.ad_a2kn):
        raise ValueError("anderson needs more than one distinct value in the pooled samples (scipy raises too)")
    statistic, p = anderson_p_value(cdf.ad_a2kn, cdf.n, cdf.m)
    return DriftScore(statistic=statistic, p_value=p, score=p, threshold=threshold, drifted=p < threshold)


ANDERSON = DriftMethod(
    name="anderson",
    display_name="Anderson-Darling",
    column_types=frozenset({ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="p_value",
    needs="cdf",
    exact_only=True,
    compute=compute,
)
