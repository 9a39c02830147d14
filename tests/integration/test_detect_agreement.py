"""Must-show 1: the detectors, run in ClickHouse, agree with Evidently and scipy on the same data.

Seeded datasets with drift injected into known features (mean shift, variance
change, category frequency change) and features left unchanged go through the
real path: the reference is uploaded from a CSV with `reference.upload`, the
current window is written through the collector's decode and sink, the
detector runs in chDB, and its results are read back from `drift_results`.
Evidently's own stattests on the same arrays are the oracle: same verdict per
feature, score within 1e-6 (relative) where Driftline computes exactly, and
within the stated bound where ECDF statistics come from fine bins.
"""

from __future__ import annotations

import datetime as dt
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from collector.replay import write_events
from detectors.config import ModelSpec, registry_from_yaml
from detectors.methods.registry import METHODS
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sources import Window
from detectors.summaries import ColumnType
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.store import connect
from driftline.yamlfile import LocatedYaml
from tests.evidently_oracle import evidently_result, evidently_series

WINDOW = Window(dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc), dt.datetime(2026, 3, 2, 11, tzinfo=dt.timezone.utc))

NUMERIC = ["shift", "spread", "steady", "few"]
CATEGORICAL = ["mix", "same"]
DRIFTED = {"shift", "spread", "mix"}

FINE_BIN_W1_BOUND = 0.01
"""Relative error allowed for ECDF statistics from fine bins (the `exact_max_rows` path)."""


def make_data(n_ref: int, n_cur: int, seed: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    cats = np.array(["a", "b", "c", "d"], dtype=object)

    def side(n: int, drift: bool) -> pd.DataFrame:
        frame = pd.DataFrame({
            "shift": rng.normal(0.6 if drift else 0.0, 1.0, n),
            "spread": rng.normal(5.0, 1.8 if drift else 1.0, n),
            "steady": rng.lognormal(0.0, 0.5, n),
            "few": rng.choice([0.0, 1.0, 2.5, 4.0], n, p=[0.4, 0.3, 0.2, 0.1]),
            "mix": rng.choice(cats, n, p=[0.1, 0.2, 0.3, 0.4] if drift else [0.4, 0.3, 0.2, 0.1]),
            "same": rng.choice(cats[:3], n, p=[0.5, 0.3, 0.2]),
        })
        missing = rng.choice(n, n // 50, replace=False)
        frame.loc[missing, "steady"] = np.nan  # missing values are dropped, as Evidently drops them
        return frame

    return side(n_ref, False), side(n_cur, True)


def model_spec(name: str, *, method_numeric: str | None = None, method_categorical: str | None = None,
               exact_max_rows: int = 200_000, window_states: bool = True) -> ModelSpec:
    features = {f: "numeric" for f in NUMERIC} | {f: "categorical" for f in CATEGORICAL}
    drift: dict[str, object] = {"min_rows": 10, "exact_max_rows": exact_max_rows, "prediction": False, "target": False,
                                "window_states": window_states}
    methods = {k: v for k, v in (("numeric", method_numeric), ("categorical", method_categorical)) if v}
    if methods:
        drift["methods"] = methods
    # Univariate statistics against Evidently only: the multivariate detectors (a classifier fit per window)
    # have tests of their own (test_multivariate.py).
    data = {"models": [{"name": name, "task": "binary_classification", "features": features,
                        "reference": {"upload": "train"}, "drift": drift, "multivariate": {"enabled": False}}]}
    return registry_from_yaml(LocatedYaml(Path("test"), data)).models[0]


def load(client, model: str, ref: pd.DataFrame, cur: pd.DataFrame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    csv = tmp_path / f"{model}.csv"
    ref.to_csv(csv, index=False)
    upload(client, model_spec(model), "train", csv, show_progress=False)
    step = (WINDOW.end - WINDOW.start) / (len(cur) + 1)
    payloads = []
    for i, row in enumerate(cur.to_dict("records")):
        features = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        payloads.append(encode_event(PredictionEvent(
            event_id=f"{model}-{i}", model=model, model_version="1", ts=WINDOW.start + step * (i + 1),
            features=features, prediction="1", proba={"1": 0.5, "0": 0.5})))
    written, dead = write_events(client, EventKind.PREDICTION, payloads, source=f"agreement-{model}")
    assert (written, dead) == (len(cur), 0)


def results(client, model: str) -> dict[str, dict[str, object]]:  # type: ignore[no-untyped-def]
    q = client.query(
        "SELECT column, method, statistic, p_value, score, threshold, drifted, status, exact "
        "FROM drift_results FINAL WHERE model = {m:String} AND segment = '' AND column_role = 'feature' "
        "AND window_start = {s:DateTime64(3, 'UTC')}",
        parameters={"m": model, "s": WINDOW.start},
    )
    return {row[0]: dict(zip(q.column_names, row, strict=True)) for row in q.result_rows}


def rel_diff(ours: float, theirs: float) -> float:
    if ours == theirs:
        return 0.0
    return abs(ours - theirs) / max(abs(ours), abs(theirs))


@pytest.fixture(scope="module")
def datasets(base_settings, tmp_path_factory):  # type: ignore[no-untyped-def]
    """Two sizes: small (exact KS p-values, Evidently's small-sample defaults) and large."""
    store = connect(base_settings)
    out = {}
    for size, (n_ref, n_cur) in {"small": (400, 500), "large": (6000, 9000)}.items():
        model = f"agree-{size}"
        # At a 0.05 significance level an unchanged feature is flagged by chance 5% of the time (Evidently
        # flags it too: verdicts are compared separately); this seed draws no such chance flag.
        ref, cur = make_data(n_ref, n_cur, f"{model}-seed-2")
        load(store, model, ref, cur, tmp_path_factory.mktemp(model))
        out[size] = (model, ref, cur)
    return out


def _types(feature: str) -> ColumnType:
    return ColumnType.NUMERIC if feature in NUMERIC else ColumnType.CATEGORICAL


NUMERIC_METHODS = sorted(n for n, m in METHODS.items() if ColumnType.NUMERIC in m.column_types)
CATEGORICAL_METHODS = sorted(n for n, m in METHODS.items() if ColumnType.CATEGORICAL in m.column_types)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("method", sorted(set(NUMERIC_METHODS) | set(CATEGORICAL_METHODS)))
def test_every_method_agrees_with_evidently_through_clickhouse(store, datasets, size: str, method: str) -> None:  # type: ignore[no-untyped-def]
    model, ref, cur = datasets[size]
    spec = model_spec(model,
                      method_numeric=method if method in NUMERIC_METHODS else None,
                      method_categorical=method if method in CATEGORICAL_METHODS else None)
    result = run_stage(store, spec, WINDOW, "drift")
    assert result.status == "ok", result.error
    ours = results(store, model)
    checked = 0
    for feature, row in ours.items():
        if row["method"] != method:
            continue
        theirs = evidently_result(method, ref[feature], cur[feature], _types(feature))
        assert row["exact"] == 1
        assert rel_diff(float(row["score"]), float(theirs.drift_score)) < 1e-6, (feature, row, theirs)
        assert bool(row["drifted"]) == bool(theirs.drifted), (feature, row, theirs)
        checked += 1
    assert checked >= 2, f"{method} ran on too few features: {ours}"


@pytest.mark.slow
@pytest.mark.parametrize("size", ["small", "large"])
def test_default_methods_match_evidently_choice_and_flag_exactly_the_drifted_features(store, datasets, size: str) -> None:  # type: ignore[no-untyped-def]
    from evidently.legacy.calculations.stattests.registry import get_stattest

    from tests.evidently_oracle import EV_TYPE

    model, ref, cur = datasets[size]
    result = run_stage(store, model_spec(model), WINDOW, "drift")
    assert result.status == "ok", result.error
    ours = results(store, model)
    for feature, row in ours.items():
        ctype = _types(feature)
        chosen = get_stattest(evidently_series(ref[feature]), evidently_series(cur[feature]), EV_TYPE[ctype], None)
        assert row["method"] == chosen.name, (feature, row["method"], chosen.name)
        theirs = evidently_result(chosen.name, ref[feature], cur[feature], ctype)
        assert rel_diff(float(row["score"]), float(theirs.drift_score)) < 1e-6
        assert bool(row["drifted"]) == bool(theirs.drifted)
    assert {f for f, r in ours.items() if r["drifted"]} == DRIFTED


@pytest.mark.slow
def test_ecdf_statistics_equal_scipy(store, datasets) -> None:  # type: ignore[no-untyped-def]
    """KS D, W1, energy distance, Anderson-Darling and Cramer-von Mises straight from scipy."""
    model, ref, cur = datasets["large"]
    checks = {
        "ks": lambda r, c: stats.ks_2samp(r, c).statistic,
        "anderson": lambda r, c: stats.anderson_ksamp([r, c]).statistic,
        "cramer_von_mises": lambda r, c: stats.cramervonmises_2samp(r, c).statistic,
        "ed": lambda r, c: stats.energy_distance(r, c),
    }
    for method, scipy_statistic in checks.items():
        run_stage(store, model_spec(model, method_numeric=method), WINDOW, "drift")
        ours = results(store, model)
        for feature in ("shift", "spread", "steady"):
            r, c = evidently_series(ref[feature]).to_numpy(), evidently_series(cur[feature]).to_numpy()
            assert rel_diff(float(ours[feature]["statistic"]), float(scipy_statistic(r, c))) < 1e-6, (method, feature)


@pytest.mark.slow
def test_fine_bins_stay_within_the_stated_bound_and_verdict(store, datasets) -> None:  # type: ignore[no-untyped-def]
    """Above `exact_max_rows`, W1 and energy come from fine bins: bounded memory, bounded error."""
    model, ref, cur = datasets["large"]
    for method in ("wasserstein", "ed", "ks"):
        run_stage(store, model_spec(model, method_numeric=method, exact_max_rows=1000), WINDOW, "drift")
        ours = results(store, model)
        for feature in ("shift", "spread", "steady"):
            row = ours[feature]
            assert row["exact"] == 0, (method, feature)
            theirs = evidently_result(method, ref[feature], cur[feature], ColumnType.NUMERIC)
            assert bool(row["drifted"]) == bool(theirs.drifted), (method, feature, row, theirs)
            if method != "ks":  # a p-value is not a distance: its verdict is compared above
                assert rel_diff(float(row["score"]), float(theirs.drift_score)) < FINE_BIN_W1_BOUND, (method, feature)


@pytest.mark.slow
def test_heavy_tails_near_the_threshold_are_refined_to_the_same_verdict(base_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Equal-width bins over a range stretched by outliers cannot settle a score near its threshold:
    the detector refines those columns with quantile edges, and the verdict and score match Evidently."""
    from detectors import aggregates, drift

    store = connect(base_settings)
    rng = np.random.default_rng(99)
    n_ref, n_cur = 6000, 8000
    ref = pd.DataFrame({f: rng.standard_t(2, n_ref) for f in NUMERIC} | {c: rng.choice(["a", "b"], n_ref) for c in CATEGORICAL})
    cur = pd.DataFrame({f: rng.standard_t(2, n_cur) + 0.09 for f in NUMERIC} | {c: rng.choice(["a", "b"], n_cur) for c in CATEGORICAL})
    cur.loc[0, "shift"] = 1e4  # one outlier stretches the equal-width bins: each is wider than the bulk
    model = "agree-tails"
    load(store, model, ref, cur, tmp_path)
    refined: list[set[str]] = []
    original = drift.unsettled_by_bins

    def spy(plans, summaries):  # type: ignore[no-untyped-def]
        out = original(plans, summaries)
        refined.append(out)
        return out

    # The raw path's equal-width bins are what this test is about (the window states' bins are relative to each
    # value: they settle these tails without refining, checked at the end).
    drift.unsettled_by_bins = spy  # observe, not change, the decision
    try:
        result = run_stage(store, model_spec(model, method_numeric="wasserstein", exact_max_rows=1000,
                                             window_states=False), WINDOW, "drift")
    finally:
        drift.unsettled_by_bins = original
    assert result.status == "ok", result.error
    assert "shift" in refined[0], refined
    row = results(store, model)["shift"]
    theirs = evidently_result("wasserstein", ref["shift"], cur["shift"], ColumnType.NUMERIC)
    assert row["exact"] == 0
    assert bool(row["drifted"]) == bool(theirs.drifted)
    assert rel_diff(float(row["score"]), float(theirs.drift_score)) < FINE_BIN_W1_BOUND
    assert aggregates.FINE_BINS == 4096
    from_states = run_stage(store, model_spec(model, method_numeric="wasserstein", exact_max_rows=1000), WINDOW, "drift")
    assert from_states.drift_path == "states"
    row = results(store, model)["shift"]
    assert bool(row["drifted"]) == bool(theirs.drifted)
    assert rel_diff(float(row["score"]), float(theirs.drift_score)) < FINE_BIN_W1_BOUND
