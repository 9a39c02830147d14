"""Jensen--Shannon distance (Evidently "jensenshannon").

``scipy.spatial.distance.jensenshannon`` (natural log, so at most sqrt(ln 2))
of Evidently's ``get_binned_data`` shares *without* zero-filling: the mixture
is positive wherever either side is, so empty cells need no fill.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import rel_entr

from detectors.methods.base import DriftMethod, DriftScore, binned_percents
from detectors.summaries import ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """``sqrt((KL(p || mix) + KL(q || mix)) / 2)``; drift when ``>= threshold``."""
    ref, cur = binned_percents(summary, "jensenshannon", fill_zeroes=False)
    p, q = ref / ref.sum(), cur / cur.sum()
    mix = (p + q) / 2.0
    divergence = float(np.sum(rel_entr(p, mix)) + np.sum(rel_entr(q, mix)))
    value = math.sqrt(max(divergence, 0.0) / 2.0)
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value >= threshold)


JENSENSHANNON = DriftMethod(
    name="jensenshannon",
    display_name="Jensen-Shannon distance",
    column_types=frozenset({ColumnType.CATEGORICAL, ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="bins",
    compute=compute,
    counts_up_to=20,
)
