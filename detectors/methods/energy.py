"""Energy distance (Evidently "ed").

Evidently reports ``scipy.stats.energy_distance(reference, current)``, which
for one-dimensional samples is ``sqrt(2 * int (F_ref - F_cur)^2 dx)``; it is
not normalised, so its 0.1 default threshold is in the column's own units.
Evidently registers it as "ed" (not "energy_distance"); the registry accepts
both spellings.
"""

from __future__ import annotations

import math

from detectors.methods.base import DriftMethod, DriftScore, cdf_required
from detectors.summaries import ColumnType, Summary


def compute(summary: Summary, threshold: float) -> DriftScore:
    """``sqrt(2 * l2)``; drift when strictly ``> threshold`` (Evidently uses ``>`` here, ``>=`` elsewhere)."""
    cdf = cdf_required(summary, "ed")
    value = math.sqrt(2.0 * cdf.l2)
    return DriftScore(statistic=value, p_value=None, score=value, threshold=threshold, drifted=value > threshold)


ENERGY = DriftMethod(
    name="ed",
    display_name="Energy-distance",
    column_types=frozenset({ColumnType.NUMERIC}),
    default_threshold=0.1,
    kind="distance",
    needs="cdf",
    compute=compute,
)
