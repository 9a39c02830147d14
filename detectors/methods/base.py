"""The shape every drift method has, and the helpers the binned methods share.

A method is data (:class:`DriftMethod`): its Evidently name, the summary it
needs from the SQL side, its default threshold and a pure ``compute`` function
from a summary to a :class:`DriftScore`. Keeping it data lets the scheduler
decide which aggregates to query before computing anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from detectors.summaries import BinCounts, CategoryCounts, CdfStats, ColumnType, Summary

__all__ = [
    "DriftMethod",
    "DriftScore",
    "Needs",
    "binned_percents",
    "require",
    "union_counts",
]

Needs = Literal["counts", "bins", "cdf"]


@dataclass(frozen=True)
class DriftScore:
    """The outcome of one method on one column.

    ``score`` is what Evidently reports as ``drift_score`` and compares with
    the threshold: the p-value for hypothesis tests, the distance otherwise.
    """

    statistic: float
    p_value: float | None
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftMethod:
    """One drift method: what it needs, how it decides, and the function computing it.

    ``needs`` is the summary for the column type the method was designed for.
    Two numeric cases differ, mirroring Evidently, so ask :meth:`needs_for`:

    * ``counts_up_to``: Evidently's ``get_binned_data`` (PSI, KL,
      Jensen--Shannon) counts distinct values instead of binning when the
      *reference* has at most this many distinct values (20).
    * ``sturges_basis``: which count sizes the Sturges bins -- the pooled row
      count (``get_binned_data``) or the pooled distinct count (Hellinger).
    """

    name: str
    display_name: str
    column_types: frozenset[ColumnType]
    default_threshold: float
    kind: Literal["p_value", "distance"]
    needs: Needs
    compute: Callable[[Summary, float], DriftScore]
    counts_up_to: int | None = None
    sturges_basis: Literal["pooled_rows", "pooled_distinct"] = "pooled_rows"
    exact_only: bool = False  # needs rank sums that bins cannot give: always computed on every distinct value

    def needs_for(self, column_type: ColumnType, reference_distinct: int) -> Needs:
        """The summary to build for a column of this type with this many distinct reference values.

        Categorical columns always give counts; numeric columns give the
        method's own summary, except that binned methods with a
        ``counts_up_to`` take counts when the reference has few values.
        """
        column_type = ColumnType(column_type)
        if self.needs != "bins":
            return self.needs
        if column_type is ColumnType.CATEGORICAL:
            return "counts"
        if self.counts_up_to is not None and reference_distinct <= self.counts_up_to:
            return "counts"
        return "bins"

    def __call__(self, summary: Summary, threshold: float | None = None) -> DriftScore:
        """Compute with ``threshold``, or with the method's default when it is None (as Evidently does)."""
        return self.compute(summary, self.default_threshold if threshold is None else float(threshold))


def require(summary: Summary, method: str, *kinds: type) -> None:
    """Fail clearly when the SQL side built the wrong summary for a method."""
    if not isinstance(summary, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{method} needs {wanted}, got {type(summary).__name__}")


def union_counts(summary: CategoryCounts) -> tuple[list[str | float], np.ndarray, np.ndarray]:
    """Keys seen on either side (count > 0) with both sides' counts, as Evidently's key list.

    Keys are sorted when they are comparable (the order only matters to the
    Z-test, which sorts them itself).
    """
    keys = {k for k, v in summary.reference.items() if v > 0} | {k for k, v in summary.current.items() if v > 0}
    try:
        ordered = sorted(keys)
    except TypeError:
        ordered = list(keys)
    ref = np.array([summary.reference.get(k, 0) for k in ordered], dtype=float)
    cur = np.array([summary.current.get(k, 0) for k in ordered], dtype=float)
    return ordered, ref, cur


def _fill_zeroes(percents: np.ndarray) -> np.ndarray:
    """Evidently's zero-filling of one side: empty cells get a small positive share.

    The fill is the side's smallest non-zero share divided by 10**6 when that
    share is at most 0.0001, and 0.0001 otherwise. Shares are not renormalised
    afterwards, so they may sum to slightly more than 1 (Evidently does the
    same; KL renormalises inside ``scipy.stats.entropy``, PSI does not).
    """
    out = percents.copy()
    zero = out == 0
    if zero.any():
        smallest = out[~zero].min()
        out[zero] = smallest / 10**6 if smallest <= 0.0001 else 0.0001
    return out


def binned_percents(
    summary: Summary, method: str, *, fill_zeroes: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Evidently's ``get_binned_data``: each cell's share of its side, optionally zero-filled.

    ``CategoryCounts`` is its value-count branch (categorical columns, numeric
    columns whose reference has <= 20 distinct values), ``BinCounts`` its
    Sturges-histogram branch; every bin takes part, empty ones included.
    """
    require(summary, method, CategoryCounts, BinCounts)
    if isinstance(summary, CategoryCounts):
        _, ref, cur = union_counts(summary)
    else:
        ref = np.asarray(summary.reference, dtype=float)
        cur = np.asarray(summary.current, dtype=float)
    ref_pct = ref / ref.sum()
    cur_pct = cur / cur.sum()
    if fill_zeroes:
        ref_pct, cur_pct = _fill_zeroes(ref_pct), _fill_zeroes(cur_pct)
    return ref_pct, cur_pct


def cdf_required(summary: Summary, method: str) -> CdfStats:
    """The ``CdfStats`` a CDF method needs, or a clear TypeError."""
    require(summary, method, CdfStats)
    assert isinstance(summary, CdfStats)
    return summary
