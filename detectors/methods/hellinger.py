"""Hellinger distance (Evidently "hellinger").

Unlike the other binned methods Evidently does not use ``get_binned_data``
here:

* categorical columns: ``sqrt(1 - sum_k sqrt(r_k c_k))`` over the shares of
  each category (a :class:`~detectors.summaries.CategoryCounts`);
* numeric columns: always Sturges bins, whatever the number of distinct
  values, and sized from the number of pooled *distinct* values rather than
  the pooled row count (a :class:`~detectors.summaries.BinCounts` built with
  ``sturges_basis="pooled_distinct"``). The Bhattacharyya sum is taken over
  density histograms times the mean bin width, which for equal-width bins is
  the same as ``sum_k sqrt(r_k c_k)`` over the bin shares.

The Bhattacharyya coefficient is clipped to [0, 1] before ``sqrt(1 - .)``.
"""

from __future__ import annotations

import math

import numpy as np

from detectors.methods.base import DriftMethod, DriftScore, require, union_counts
from detectors.summaries import BinCounts, CategoryCounts, ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """Hellinger distance; drift when ``>= threshold``."""
    require(summary, "hellinger", CategoryCounts, BinCounts)
    if isinstance(summary, CategoryCounts):
        _, ref, cur = union_counts(summary)
        coefficient = float(np.sum(np.sqrt((ref / ref.sum()) * (cur / cur.sum()))))
    else:
        assert isinstance(summary, BinCounts)
        edges = np.asarray(summary.edges, dtype=float)
        ref = np.asarray(summary.reference, dtype=float)
        cur = np.asarray(summary.current, dtype=float)
        widths = np.diff(edges)
        mean_width = (edges.max() - edges.min()) / (edges.size - 1)
        density_ref = ref / widths / ref.sum()
        density_cur = cur / widths / cur.sum()
        coefficient = float(np.sum(np.sqrt(density_ref * density_cur) * mean_width))
    value = math.sqrt(1.0 - min(max(coefficient, 0.0), 1.0))
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value >= threshold)


HELLINGER = DriftMethod(
    name="hellinger",
    display_name="Hellinger distance",
    column_types=frozenset({ColumnType.CATEGORICAL, ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="bins",
    compute=compute,
    sturges_basis="pooled_distinct",
)
