"""The default-method rule agrees with Evidently's, and p-value corrections agree with scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from evidently.legacy.calculations.stattests.registry import _get_default_stattest
from evidently.legacy.core import ColumnType as EvColumnType
from scipy import stats

from detectors.correction import adjust_p_values
from detectors.methods import get_method
from detectors.select import default_method
from detectors.summaries import ColumnType

EV_TYPE = {ColumnType.NUMERIC: EvColumnType.Numerical, ColumnType.CATEGORICAL: EvColumnType.Categorical}


def _series_pair(column_type: ColumnType, reference_rows: int, pooled_distinct: int) -> tuple[pd.Series, pd.Series]:
    """A reference of exactly ``reference_rows`` values and a current such that both hold ``pooled_distinct``."""
    values = np.arange(pooled_distinct) * 1.5
    ref = values[np.arange(reference_rows) % pooled_distinct]
    missing = values[reference_rows:] if reference_rows < pooled_distinct else values[:0]
    cur = np.concatenate([missing, values[np.arange(10) % min(pooled_distinct, reference_rows)]])
    if column_type is ColumnType.CATEGORICAL:
        return pd.Series([f"c{v}" for v in ref]), pd.Series([f"c{v}" for v in cur])
    return pd.Series(ref), pd.Series(cur)


@pytest.mark.parametrize("column_type", list(ColumnType))
@pytest.mark.parametrize("reference_rows", [1, 2, 5, 300, 1000, 1001, 5000])
@pytest.mark.parametrize("pooled_distinct", [1, 2, 3, 5, 6, 7, 20, 21, 50])
def test_default_method_matches_evidently(column_type: ColumnType, reference_rows: int, pooled_distinct: int) -> None:
    ref, cur = _series_pair(column_type, reference_rows, pooled_distinct)
    assert ref.shape[0] == reference_rows
    assert pd.concat([ref, cur]).nunique() == pooled_distinct
    expected = _get_default_stattest(ref, cur, EV_TYPE[column_type]).name
    assert default_method(column_type, reference_rows, pooled_distinct) == expected
    # the SQL side may cap the distinct count at 6
    assert default_method(column_type, reference_rows, min(pooled_distinct, 6)) == expected
    get_method(expected)  # every default is in the registry


@pytest.mark.parametrize(
    "column_type,reference_rows,pooled_distinct,expected",
    [
        (ColumnType.NUMERIC, 1000, 2, "z"),
        (ColumnType.NUMERIC, 1000, 3, "chisquare"),
        (ColumnType.NUMERIC, 1000, 6, "ks"),
        (ColumnType.NUMERIC, 1001, 5, "jensenshannon"),
        (ColumnType.NUMERIC, 1001, 6, "wasserstein"),
        (ColumnType.CATEGORICAL, 1000, 2, "z"),
        (ColumnType.CATEGORICAL, 1000, 300, "chisquare"),
        (ColumnType.CATEGORICAL, 1001, 2, "jensenshannon"),
    ],
)
def test_default_method_table(column_type: ColumnType, reference_rows: int, pooled_distinct: int,
                              expected: str) -> None:
    """The boundaries written out, so a change to the rule reads as a change to this table."""
    assert default_method(column_type, reference_rows, pooled_distinct) == expected


def test_default_method_rejects_empty_reference() -> None:
    with pytest.raises(ValueError, match="no values"):
        default_method(ColumnType.NUMERIC, 0, 3)


# --------------------------------------------------------------------------- correction

P_VALUE_SETS = [
    [0.01],
    [0.5, 0.6, 0.1, 0.001],
    [0.0, 1.0, 0.03, 0.03, 0.2],
    [0.0001, 0.0008, 0.0021, 0.0234, 0.0293, 0.0344, 0.0353, 0.0456, 0.0523, 0.0808, 0.1059, 0.2138, 0.6205, 0.7804],
    list(np.random.default_rng(3).uniform(0, 0.2, 40)),
]


@pytest.mark.parametrize("p_values", P_VALUE_SETS)
def test_benjamini_hochberg_matches_scipy(p_values: list[float]) -> None:
    ours = adjust_p_values(p_values, "benjamini_hochberg")
    np.testing.assert_allclose(ours, stats.false_discovery_control(p_values, method="bh"), rtol=1e-12, atol=0)
    order = np.argsort(p_values, kind="stable")
    assert all(np.diff(np.asarray(ours)[order]) >= 0)  # monotone in the raw p-values
    assert max(ours) <= 1.0


@pytest.mark.parametrize(
    "p_values,expected",
    [
        ([0.01, 0.04, 0.5], [0.03, 0.12, 1.0]),
        ([0.2, 0.3], [0.4, 0.6]),
        ([0.01], [0.01]),
        ([], []),
    ],
)
def test_bonferroni_by_hand(p_values: list[float], expected: list[float]) -> None:
    assert adjust_p_values(p_values, "bonferroni") == pytest.approx(expected, abs=1e-15)


def test_none_leaves_values_alone() -> None:
    assert adjust_p_values([0.2, 0.01], "none") == [0.2, 0.01]


def test_nan_p_values_pass_through_and_do_not_count() -> None:
    """An undefined test (e.g. chi-square on one category) is not a test: k counts the defined ones."""
    bonf = adjust_p_values([0.01, math.nan, 0.02], "bonferroni")
    assert bonf[0] == pytest.approx(0.02) and math.isnan(bonf[1]) and bonf[2] == pytest.approx(0.04)
    bh = adjust_p_values([0.01, math.nan, 0.02], "benjamini_hochberg")
    np.testing.assert_allclose([bh[0], bh[2]], stats.false_discovery_control([0.01, 0.02]))
    assert math.isnan(bh[1])


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_out_of_range_p_values_raise(bad: float) -> None:
    with pytest.raises(ValueError):
        adjust_p_values([0.1, bad], "benjamini_hochberg")


def test_unknown_correction_raises() -> None:
    with pytest.raises(ValueError, match="bonferroni"):
        adjust_p_values([0.1], "holm")  # type: ignore[arg-type]
