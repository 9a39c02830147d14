"""Chi-square goodness-of-fit of the current counts to the reference proportions (Evidently "chisquare").

This is *not* the chi-square test of homogeneity of a 2 x K contingency table:
Evidently treats the reference shares as the known expected distribution,
``expected_k = reference_k * m / n``, and runs ``scipy.stats.chisquare`` on the
current counts with K - 1 degrees of freedom. Consequences the SQL side and
users should know:

* a category seen only in the current window has expected count 0, so the
  statistic is infinite and the p-value 0 (drift);
* a category seen only in the reference contributes its full expected count;
* with a single category there are 0 degrees of freedom and the p-value is NaN
  (never "drift").
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.methods.base import DriftMethod, DriftScore, require, union_counts
from detectors.summaries import CategoryCounts, ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """Goodness-of-fit p-value; drift when ``p < threshold``."""
    require(summary, "chisquare", CategoryCounts)
    assert isinstance(summary, CategoryCounts)
    _, ref, cur = union_counts(summary)
    expected = ref * (cur.sum() / ref.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = float(np.sum((cur - expected) ** 2 / expected))
    p = float(stats.chi2.sf(statistic, ref.size - 1))
    return DriftScore(statistic=statistic, p_value=p, score=p, threshold=threshold, drifted=p < threshold)


CHISQUARE = DriftMethod(
    name="chisquare",
    display_name="chi-square goodness-of-fit p_value (current counts vs reference proportions)",
    column_types=frozenset({ColumnType.CATEGORICAL}),
    default_threshold=0.05,
    kind="p_value",
    needs="counts",
    compute=compute,
)
