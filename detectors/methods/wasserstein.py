"""Normed first Wasserstein distance (Evidently "wasserstein").

Evidently divides ``scipy.stats.wasserstein_distance(reference, current)`` by
``max(np.std(reference), 0.001)`` (population std, ddof=0), so the distance is
in units of the reference spread and the 0.1 default means "a tenth of a
standard deviation".
"""

from __future__ import annotations

from detectors.methods.base import DriftMethod, DriftScore, cdf_required
from detectors.summaries import ColumnType, Summary

# Evidently's floor on the normaliser, which keeps constant reference columns finite.
MIN_NORM = 0.001


def compute(summary: Summary, threshold: float) -> DriftScore:
    """``w1 / max(ref_std, 0.001)``; drift when ``>= threshold``."""
    cdf = cdf_required(summary, "wasserstein")
    value = cdf.w1 / max(float(cdf.ref_std), MIN_NORM)
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value >= threshold)


WASSERSTEIN = DriftMethod(
    name="wasserstein",
    display_name="Wasserstein distance (normed)",
    column_types=frozenset({ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="cdf",
    compute=compute,
)
