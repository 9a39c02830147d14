"""Evidently's own stattests, called the way its data-drift metric calls them: the oracle for agreement tests."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from evidently.legacy.calculations import stattests as ev
from evidently.legacy.core import ColumnType as EvColumnType

from detectors.summaries import ColumnType

EVIDENTLY = {
    "ks": ev.ks_stat_test,
    "chisquare": ev.chi_stat_test,
    "z": ev.z_stat_test,
    "wasserstein": ev.wasserstein_stat_test,
    "psi": ev.psi_stat_test,
    "jensenshannon": ev.jensenshannon_stat_test,
    "hellinger": ev.hellinger_stat_test,
    "kl_div": ev.kl_div_stat_test,
    "anderson": ev.anderson_darling_test,
    "cramer_von_mises": ev.cramer_von_mises,
    "ed": ev.energy_dist_test,
}
EV_TYPE = {ColumnType.NUMERIC: EvColumnType.Numerical, ColumnType.CATEGORICAL: EvColumnType.Categorical}


def evidently_series(values: Any) -> pd.Series:
    """What Evidently's column drift hands a stattest: +-inf turned into NaN, NaN/None dropped."""
    return pd.Series(values).replace([-np.inf, np.inf], np.nan).dropna()


def evidently_result(name: str, ref: Any, cur: Any, column_type: ColumnType, threshold: float | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EVIDENTLY[name](evidently_series(ref), evidently_series(cur), EV_TYPE[column_type], threshold)
