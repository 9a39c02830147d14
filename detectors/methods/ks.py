"""Two-sample Kolmogorov--Smirnov test (Evidently "ks").

Evidently calls ``scipy.stats.ks_2samp(reference, current)`` with its defaults
(two-sided, ``method="auto"``) and reports the p-value. The p-value depends on
the data only through ``D``, ``n`` and ``m``, so it is recomputed here from a
:class:`~detectors.summaries.CdfStats`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats
from scipy.stats import _stats_py

from detectors.methods.base import DriftMethod, DriftScore, cdf_required
from detectors.summaries import ColumnType, Summary

# scipy.stats.ks_2samp(method="auto") is exact when both samples have at most this many values.
EXACT_MAX_N = 10_000


def ks_p_value(d: float, n: int, m: int) -> float:
    """Two-sided p-value of ``D`` for samples of sizes ``n`` and ``m``, as ``ks_2samp(method="auto")``.

    Why these branches: scipy uses the exact lattice-path distribution when
    ``max(n, m) <= 10000`` (``_attempt_exact_2kssamp``, a private helper we
    call rather than re-derive; a test fails if scipy changes it), falling back
    to the asymptotic one when that overflows; otherwise it uses the
    Kolmogorov distribution ``kstwo.sf(D, round(n*m/(n+m)))``.
    """
    if n <= 0 or m <= 0:
        raise ValueError("both samples need values")
    if max(n, m) <= EXACT_MAX_N:
        success, _, prob = _stats_py._attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")
        if success:
            return float(np.clip(prob, 0.0, 1.0))
        warnings.warn("ks: exact p-value unavailable, using the asymptotic one (as scipy does)", RuntimeWarning,
                      stacklevel=2)
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    return float(np.clip(stats.kstwo.sf(d, np.round(en)), 0.0, 1.0))


def compute(summary: Summary, threshold: float) -> DriftScore:
    """KS p-value; drift when ``p <= threshold`` (Evidently's comparison for "ks" is ``<=``)."""
    cdf = cdf_required(summary, "ks")
    p = ks_p_value(cdf.ks_d, cdf.n, cdf.m)
    return DriftScore(statistic=cdf.ks_d, p_value=p, score=p, threshold=threshold, drifted=p <= threshold)


KS = DriftMethod(
    name="ks",
    display_name="K-S p_value",
    column_types=frozenset({ColumnType.NUMERIC}),
    default_threshold=0.05,
    kind="p_value",
    needs="cdf",
    compute=compute,
)
