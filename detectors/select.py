"""The default drift method for a column, as Evidently picks it.

Mirrors ``_get_default_stattest`` in Evidently 0.7.23
(``evidently/legacy/calculations/stattests/registry.py``) so a column gets the
same test here as in an Evidently report: small references (<= 1000 values)
get hypothesis tests, large ones get distances, which do not flag every tiny
difference the way p-values do on large samples.
"""

from __future__ import annotations

from detectors.summaries import ColumnType

__all__ = ["FEW_VALUES", "SMALL_REFERENCE", "default_method"]

# References with at most this many values get p-value tests.
SMALL_REFERENCE = 1000
# Numeric columns with at most this many pooled distinct values are treated like categories.
FEW_VALUES = 5


def default_method(column_type: ColumnType, reference_rows: int, pooled_distinct: int) -> str:
    """Name of Evidently's default method.

    ``reference_rows`` is the reference's count of finite non-null values
    (Evidently drops NaN and +-inf before choosing); ``pooled_distinct`` is
    the distinct count of reference and current together, and only matters up
    to 6, so the caller may cap it there.

    ==========  ===============  ======================  =====================
    column      pooled distinct  reference <= 1000        reference > 1000
    ==========  ===============  ======================  =====================
    numeric     <= 2             z                        jensenshannon
    numeric     3 .. 5           chisquare                jensenshannon
    numeric     > 5              ks                       wasserstein
    categorical <= 2             z                        jensenshannon
    categorical > 2              chisquare                jensenshannon
    ==========  ===============  ======================  =====================
    """
    column_type = ColumnType(column_type)
    if reference_rows < 1:
        raise ValueError("the reference has no values; Evidently refuses to compute drift on an empty column")
    if pooled_distinct < 1:
        raise ValueError("pooled_distinct must be at least 1")
    small = reference_rows <= SMALL_REFERENCE
    if column_type is ColumnType.NUMERIC and pooled_distinct > FEW_VALUES:
        return "ks" if small else "wasserstein"
    if not small:
        return "jensenshannon"
    return "chisquare" if pooled_distinct > 2 else "z"
