"""Two-proportion Z-test (Evidently "z").

Evidently sorts the categories seen in either window, calls the first one
"0" and every other one "1", and compares the share of "1" between the windows
with the pooled-variance two-proportion Z statistic. It is meant for binary
columns (the default rule picks it when there are at most 2 distinct values);
on more categories it silently lumps all but the smallest key together.
"""

from __future__ import annotations

import math

from scipy import stats

from detectors.methods.base import DriftMethod, DriftScore, require, union_counts
from detectors.summaries import CategoryCounts, ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """Two-sided p-value ``2 * (1 - Phi(|z|))``; drift when ``p < threshold``.

    The p-value is computed as Evidently does, ``1 - cdf`` rather than the
    survival function, so it reaches exactly 0 for |z| above about 8.3 -- this
    keeps the scores identical to Evidently's.
    When both windows hold one and the same single value the p-value is 1.
    """
    require(summary, "z", CategoryCounts)
    assert isinstance(summary, CategoryCounts)
    keys, ref, cur = union_counts(summary)
    sorted(keys)  # mixed key types cannot be ordered: raise TypeError, as Evidently's sorted() does
    if len(keys) == 1:
        return DriftScore(statistic=0.0, p_value=1.0, score=1.0, threshold=threshold, drifted=1.0 < threshold)
    n, m = float(ref.sum()), float(cur.sum())
    # keys are sorted, so index 0 is the smallest key: Evidently's "0" class.
    p_ref = (n - ref[0]) / n
    p_cur = (m - cur[0]) / m
    pooled = (p_ref * n + p_cur * m) / (n + m)
    z = (p_ref - p_cur) / math.sqrt(pooled * (1 - pooled) * (1.0 / n + 1.0 / m))
    p = float(2 * (1 - stats.norm.cdf(abs(z))))
    return DriftScore(statistic=float(z), p_value=p, score=p, threshold=threshold, drifted=p < threshold)


Z = DriftMethod(
    name="z",
    display_name="Z-test for two proportions p_value",
    column_types=frozenset({ColumnType.CATEGORICAL}),
    default_threshold=0.05,
    kind="p_value",
    needs="counts",
    compute=compute,
)
