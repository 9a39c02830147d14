"""Multivariate drift on the real engine: a correlation that flips while every marginal stays put.

x1 and x2 are standard normal in the reference and in every window; their
correlation is +0.9 in the reference and in the control window, -0.9 in the
drifted one. The univariate tests (and the dataset verdict) must stay quiet,
both multivariate methods must fire on the drifted window only, and an alert
rule on `multivariate_drift` must fire from those stored results.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from alerts.evaluate import Evaluator
from collector.replay import write_events
from detectors import multivariate
from detectors.config import ModelSpec, Registry, registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sample import sample_frames
from detectors.sources import ALL_ROWS, Query, Window, column_sides_sql, columns_for
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.store import connect
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.yamlfile import LocatedYaml
from tests.integration.alerting import alert_config

UTC = dt.timezone.utc
DAY = dt.datetime(2026, 8, 3, tzinfo=UTC)
CONTROL = Window(DAY + dt.timedelta(hours=8), DAY + dt.timedelta(hours=9))
DRIFTED = Window(DAY + dt.timedelta(hours=9), DAY + dt.timedelta(hours=10))
SMALL = Window(DAY + dt.timedelta(hours=10), DAY + dt.timedelta(hours=11))


def registry(name: str) -> Registry:
    model = {"name": name, "task": "regression", "reference": {"upload": "train"},
             "features": {"x1": "numeric", "x2": "numeric", "x3": "numeric", "country": "categorical"},
             "drift": {"prediction": False, "target": False},
             "multivariate": {"sample_rows": 2000, "min_rows": 500}}
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [model]}))


def rows(rng: np.random.Generator, n: int, rho: float) -> pd.DataFrame:
    """x1, x2 standard normal with correlation `rho` (same marginals whatever rho); x3 and country independent."""
    x1 = rng.normal(size=n)
    x2 = rho * x1 + np.sqrt(1 - rho ** 2) * rng.normal(size=n)
    x3 = rng.normal(size=n)
    x3[rng.random(n) < 0.05] = np.nan  # missing values: imputed by the PCA, routed by the classifier
    country = rng.choice(["de", "fr", "nl", None], n, p=[0.5, 0.3, 0.18, 0.02])
    return pd.DataFrame({"x1": x1, "x2": x2, "x3": x3, "country": country})


def write_window(client, model: str, window: Window, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    step = (window.end - window.start) / (len(frame) + 1)
    events = [encode_event(PredictionEvent(
        event_id=f"{model}-{window.start:%H}-{i}", model=model, model_version="1", ts=window.start + step * (i + 1),
        features={k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}, prediction=0.0))
        for i, row in enumerate(frame.to_dict("records"))]
    write_events(client, EventKind.PREDICTION, events, source=f"mv-{model}")


def results(client, model: str) -> dict[tuple[str, str], dict[str, object]]:  # type: ignore[no-untyped-def]
    q = client.query("SELECT toString(toHour(window_start)) AS hour, method, value, lower, upper, drifted, status, "
                     "reference_rows, current_rows, sample_rows FROM multivariate_drift_results FINAL "
                     "WHERE model = {m:String} AND segment = ''", parameters={"m": model})
    return {(r[0], r[1]): dict(zip(q.column_names, r, strict=True)) for r in q.result_rows}


def setup(store, tmp_path: Path) -> ModelSpec:  # type: ignore[no-untyped-def]
    name = f"mv-{uuid.uuid4().hex[:6]}"
    model = registry(name).models[0]
    rng = np.random.default_rng(8)
    path = tmp_path / "train.parquet"
    rows(rng, 4000, 0.9).to_parquet(path)
    upload(store, model, "train", path, show_progress=False)
    write_window(store, name, CONTROL, rows(rng, 2000, 0.9))
    write_window(store, name, DRIFTED, rows(rng, 2000, -0.9))
    write_window(store, name, SMALL, rows(rng, 200, -0.9))
    return model


@pytest.mark.slow
def test_a_flipped_correlation_is_caught_by_both_methods_and_no_univariate_test(  # type: ignore[no-untyped-def]
        store, base_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = setup(store, tmp_path)
    name = model.name
    config = alert_config(name, channels={f"mail-{name}": {"type": "email", "to": ["o@example.com"],
                                                            "attach_report": False}},
                          rules=[{"name": "joint", "for": 1, "clear_for": 1, "when": {"multivariate_drift": {}}}])
    evaluator = Evaluator(store, registry(name), config)
    subjects = []
    for window in (CONTROL, DRIFTED, SMALL):
        result = run_stage(store, model, window, "drift")
        assert result.status == "ok", result.error
        subjects += [d.subject for d in evaluator.evaluate(name, now=window.end + dt.timedelta(minutes=1)).queued]
        if window != SMALL:
            assert result.drifted_columns == [] and not result.dataset_drifted  # univariate: quiet
        assert result.multivariate_drifted == (list(multivariate.METHODS) if window == DRIFTED else [])

    verdicts = {(r[0], r[1]): (r[2], r[3]) for r in store.query(
        "SELECT toHour(window_start), column, drifted, status FROM drift_results FINAL WHERE model = {m:String} "
        "AND segment = '' AND window_start < {e:DateTime64(3, 'UTC')}",
        parameters={"m": name, "e": SMALL.start}).result_rows}
    assert {c for _, c in verdicts} == {"x1", "x2", "x3", "country", "__dataset__"}
    assert all(drifted == 0 and status == "ok" for drifted, status in verdicts.values()), verdicts

    got = results(store, name)
    control, drifted = {m: got[("8", m)] for m in multivariate.METHODS}, {m: got[("9", m)] for m in multivariate.METHODS}
    pca, auc = "pca_reconstruction", "domain_classifier"
    # Control: inside the band, AUC at chance; drifted: the error far above the band, the classifier near-perfect.
    assert control[pca]["status"] == "ok" and control[pca]["lower"] < control[pca]["value"] < control[pca]["upper"]
    half = (drifted[pca]["upper"] - drifted[pca]["lower"]) / 2
    assert drifted[pca]["status"] == "drifted" and drifted[pca]["value"] > drifted[pca]["upper"] + 10 * half
    assert control[auc]["status"] == "ok" and abs(control[auc]["value"] - 0.5) < 0.05 and control[auc]["upper"] == 0.6
    assert drifted[auc]["status"] == "drifted" and drifted[auc]["value"] > 0.85
    for row in (*control.values(), *drifted.values()):
        assert (row["reference_rows"], row["current_rows"], row["sample_rows"]) == (4000, 2000, 2000)
    # 200 rows is under min_rows: no verdict from either method, and no alert state change from it.
    assert {got[("10", m)]["status"] for m in multivariate.METHODS} == {"insufficient_data"}
    assert got[("10", pca)]["value"] is None

    events = store.query("SELECT rule, event, toHour(window_end) FROM alert_events WHERE model = {m:String} "
                         "AND event IN ('fired', 'resolved') ORDER BY at", parameters={"m": name}).result_rows
    assert events == [("joint", "fired", 10)]  # fired on the drifted window; the small one holds it
    assert len(subjects) == 1 and "joint distribution drifted: domain classifier 0.9" in subjects[0], subjects
    assert "(threshold 0.6), pca reconstruction 1." in subjects[0] and "(band 0." in subjects[0]

    # The API serves the same rows to ML owners.
    (tmp_path / "tokens.yaml").write_text("tokens:\n  - {name: reader, env: TEST_MV_TOKEN, scopes: [read]}\n")
    monkeypatch.setenv("TEST_MV_TOKEN", "mv-reader-token-0123456789")
    api = TestClient(create_app(registry(name), load_tokens(tmp_path / "tokens.yaml"), lambda: connect(base_settings)))
    page = api.get(f"/models/{name}/multivariate", headers={"Authorization": "Bearer mv-reader-token-0123456789"},
                   params={"start": CONTROL.start.isoformat(), "end": SMALL.end.isoformat()})
    assert page.status_code == 200, page.text
    served = [(r["method"], r["status"]) for r in page.json()["items"]]
    assert served == [("domain_classifier", "ok"), ("pca_reconstruction", "ok"), ("domain_classifier", "drifted"),
                      ("pca_reconstruction", "drifted"), ("domain_classifier", "insufficient_data"),
                      ("pca_reconstruction", "insufficient_data")]

    # Recomputing a window gives the same verdicts and values (seeded sample, folds and model).
    again = run_stage(store, model, DRIFTED, "drift")
    assert again.status == "ok" and results(store, name)[("9", auc)]["value"] == drifted[auc]["value"]


def test_reconstruction_error_in_sql_equals_numpy_on_the_same_rows(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = setup(store, tmp_path)
    reference, _ = sample_frames(store, model, CONTROL, 2000, prediction=False)
    q = Query()
    columns = columns_for(model, q, prediction=False, target=False)
    sides, aliased = column_sides_sql(model, DRIFTED, ALL_ROWS, q, columns, with_labels=False)
    fit = multivariate.fit_pca(multivariate.encode(reference, aliased, q), 0.65)
    assert fit is not None and fit.names == ["x1", "x2", "x3", "country=de", "country=fr", "country=nl"]
    frame = store.query_df(
        f"SELECT error, c0, c1, c2, c3 FROM (SELECT *, {multivariate.error_sql(fit, q)} FROM {sides}) "
        f"WHERE side = 1", parameters=q.parameters)
    # A missing country is no category: all its indicators are 0 before standardizing (not imputed).
    x = np.column_stack([frame["c0"], frame["c1"], frame["c2"]] + [(frame["c3"] == c).fillna(False).to_numpy(dtype=float)
                                                                    for c in ("de", "fr", "nl")]).astype(float)
    expected = multivariate.reconstruction_errors(multivariate.standardize(x, fit.mean, fit.std), fit.components)
    assert len(frame) == 2000 and np.isnan(x[:, 2]).sum() > 50 and frame["c3"].isna().sum() > 10  # missing values
    np.testing.assert_allclose(frame["error"].to_numpy(dtype=float), expected, rtol=1e-9, atol=1e-9)


def test_no_reference_gives_no_verdict_and_disabling_clears_the_window(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    name = f"mv-{uuid.uuid4().hex[:6]}"
    model = registry(name).models[0]
    write_window(store, name, CONTROL, rows(np.random.default_rng(3), 600, 0.9))
    assert run_stage(store, model, CONTROL, "drift").status == "ok"  # the upload `train` was never made
    got = results(store, name)
    assert {(m, r["status"], r["value"], r["drifted"]) for (_, m), r in got.items()} == {
        ("pca_reconstruction", "no_reference", None, 0), ("domain_classifier", "no_reference", None, 0)}
    assert got[("8", "pca_reconstruction")]["current_rows"] == 600
    # Turned off: a recompute leaves the window without multivariate rows rather than stale ones.
    off = model.model_copy(update={"multivariate": model.multivariate.model_copy(update={"enabled": False})})
    assert run_stage(store, off, CONTROL, "drift").status == "ok"
    assert results(store, name) == {}
