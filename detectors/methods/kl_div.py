"""Kullback--Leibler divergence KL(reference || current) (Evidently "kl_div").

Evidently passes its zero-filled ``get_binned_data`` shares to
``scipy.stats.entropy(reference, current)``, which renormalises both to sum 1
and uses the natural log. The divergence is asymmetric: reference first.
"""

from __future__ import annotations

import numpy as np
from scipy.special import rel_entr

from detectors.methods.base import DriftMethod, DriftScore, binned_percents
from detectors.summaries import ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """KL divergence in nats; drift when ``>= threshold``."""
    ref, cur = binned_percents(summary, "kl_div", fill_zeroes=True)
    value = float(np.sum(rel_entr(ref / ref.sum(), cur / cur.sum())))
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value >= threshold)


KL_DIV = DriftMethod(
    name="kl_div",
    display_name="Kullback-Leibler divergence",
    column_types=frozenset({ColumnType.CATEGORICAL, ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="bins",
    compute=compute,
    counts_up_to=20,
)
