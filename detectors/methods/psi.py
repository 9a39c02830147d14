"""Population Stability Index (Evidently "psi").

``sum_k (r_k - c_k) * ln(r_k / c_k)`` over Evidently's ``get_binned_data``
shares with zero-filling: value counts for categorical columns and numeric
columns whose reference has at most 20 distinct values, Sturges bins over the
pooled range otherwise.
"""

from __future__ import annotations

import numpy as np

from detectors.methods.base import DriftMethod, DriftScore, binned_percents
from detectors.summaries import ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """PSI; drift when ``>= threshold``."""
    ref, cur = binned_percents(summary, "psi", fill_zeroes=True)
    value = float(np.sum((ref - cur) * np.log(ref / cur)))
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value >= threshold)


PSI = DriftMethod(
    name="psi",
    display_name="PSI",
    column_types=frozenset({ColumnType.CATEGORICAL, ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="bins",
    compute=compute,
    counts_up_to=20,
)
