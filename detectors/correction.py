"""Multiple-testing correction of the p-values of one model's features.

A model with 50 features tested at 0.05 flags about 2.5 of them by chance on
every run; adjusting the p-values before comparing them with the threshold
controls the family-wise error rate (Bonferroni) or the false discovery rate
(Benjamini--Hochberg) instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

__all__ = ["adjust_p_values"]


def adjust_p_values(
    p_values: Sequence[float], method: Literal["none", "bonferroni", "benjamini_hochberg"]
) -> list[float]:
    """Adjusted p-values in input order, each capped at 1.

    * ``none``: unchanged.
    * ``bonferroni``: ``min(1, k * p)``.
    * ``benjamini_hochberg``: with ``p_(1) <= ... <= p_(k)``, the adjusted
      ``p_(i)`` is ``min(1, min_{j >= i} k * p_(j) / j)``; taking the minimum
      over ``j >= i`` makes adjusted values monotone in the raw ones.

    ``k`` counts the defined p-values only: a NaN (a test that could not be
    computed, e.g. chi-square on a single category) stays NaN and does not
    count as a test, as R's ``p.adjust`` does. Values outside [0, 1] raise.
    """
    values = [float(p) for p in p_values]
    for p in values:
        if not math.isnan(p) and not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must lie in [0, 1], got {p!r}")
    if method == "none":
        return values
    defined = [i for i, p in enumerate(values) if not math.isnan(p)]
    k = len(defined)
    adjusted = list(values)
    if method == "bonferroni":
        for i in defined:
            adjusted[i] = min(1.0, k * values[i])
        return adjusted
    if method == "benjamini_hochberg":
        order = sorted(defined, key=values.__getitem__)
        running = 1.0
        for rank in range(k, 0, -1):
            index = order[rank - 1]
            running = min(running, k * values[index] / rank)
            adjusted[index] = running
        return adjusted
    raise ValueError(f"unknown correction {method!r}; valid: none, bonferroni, benjamini_hochberg")
