"""False-alarm guards, segments and data quality, on the real engine.

- too few rows: `insufficient_data`, never a verdict;
- effect size: a shift significant only because the sample is huge is not drift when a distance is required too;
- multiple-testing correction: adjusted p-values (Bonferroni) decide the verdicts;
- segments: a drift confined to one country shows in that segment only;
- quality: missing values, out-of-range values, unseen categories, dead letters and volume, each failing
  exactly when its threshold is crossed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

import numpy as np
import pandas as pd

from collector.replay import write_events
from detectors.config import ModelSpec, registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sources import Window
from driftline.contracts import EventKind, PredictionEvent, encode_event
from driftline.yamlfile import LocatedYaml

WINDOW = Window(dt.datetime(2026, 7, 1, 8, tzinfo=dt.timezone.utc), dt.datetime(2026, 7, 1, 9, tzinfo=dt.timezone.utc))


def spec(name: str, **extra: object) -> ModelSpec:
    model = {"name": name, "task": "regression", "reference": {"upload": "train"},
             "features": {"amount": "numeric", "score": "numeric", "country": "categorical"},
             "drift": {"min_rows": 100, "prediction": False, "target": False},
             "multivariate": {"enabled": False}} | extra  # univariate guards here; test_multivariate.py has its own
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [model]})).models[0]


def write_current(client, model: str, frame: pd.DataFrame, extra: list[bytes] = ()) -> None:  # type: ignore[no-untyped-def]
    step = (WINDOW.end - WINDOW.start) / (len(frame) + 1)
    payloads = [encode_event(PredictionEvent(
        event_id=f"{model}-{i}", model=model, model_version="1", ts=WINDOW.start + step * (i + 1),
        features={k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}, prediction=1.0))
        for i, row in enumerate(frame.to_dict("records"))]
    write_events(client, EventKind.PREDICTION, [*payloads, *extra], source=f"guards-{model}")


def write_reference(client, model: ModelSpec, frame: pd.DataFrame, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / f"{model.name}.parquet"
    frame.to_parquet(path)  # Parquet: the other upload format
    upload(client, model, "train", path, show_progress=False)


def drift_rows(client, model: str) -> dict[tuple[str, str], dict[str, object]]:  # type: ignore[no-untyped-def]
    q = client.query("SELECT segment, column, method, p_value, adjusted_p_value, score, threshold, effect_size, drifted, status, "
                     "current_rows FROM drift_results FINAL WHERE model = {m:String}", parameters={"m": model})
    return {(r[0], r[1]): dict(zip(q.column_names, r, strict=True)) for r in q.result_rows}


def test_guards_segments_and_quality(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(42)
    name = f"guards-{uuid.uuid4().hex[:6]}"
    ref = pd.DataFrame({"amount": rng.normal(100, 10, 3000), "score": rng.uniform(0, 1, 3000),
                        "country": rng.choice(["de", "fr", "nl", "it"], 3000, p=[0.4, 0.4, 0.17, 0.03])})
    model = spec(name, segments=["country"], quality={"expected_rows": 6000, "min_volume_ratio": 0.6},
                 drift={"min_rows": 100, "prediction": False, "target": False, "correction": "bonferroni",
                        "methods": {"numeric": "ks", "categorical": "chisquare"}})
    write_reference(store, model, ref, tmp_path)
    n = 3000
    country = rng.choice(["de", "fr", "nl", "it", "zz"], n, p=[0.4, 0.37, 0.17, 0.01, 0.05])
    amount = rng.normal(100, 10, n)
    amount[country == "de"] += 15  # drift confined to Germany
    amount[rng.choice(n, n // 10, replace=False)] = np.nan  # 10% missing
    score = rng.uniform(0, 1, n)
    score[rng.choice(n, n // 12, replace=False)] = 1.5  # 8.3% outside the reference range [0, 1]
    # Events of this model that cannot be accepted: truncated JSON, and valid JSON breaking the contract.
    dead = [b'{"model": "%s", "ts": "2026-07-01T08:%02d:00Z", "features": {"amount": 1' % (name.encode(), i)
            for i in range(20)]
    dead += [b'{"model": "%s", "ts": "2026-07-01T08:%02d:00Z", "features": {}}' % (name.encode(), i) for i in range(20)]
    write_current(store, name, pd.DataFrame({"amount": amount, "score": score, "country": country}), dead)

    result = run_stage(store, model, WINDOW, "drift")
    assert result.status == "ok", result.error
    rows = drift_rows(store, name)

    # Segments: Germany drifted on amount; France did not; Italy (~30 rows) is below min_rows.
    assert rows[("country=de", "amount")]["drifted"] == 1
    assert rows[("country=fr", "amount")]["drifted"] == 0
    assert rows[("country=it", "amount")]["status"] == "insufficient_data"
    assert rows[("country=it", "amount")]["drifted"] == 0
    assert rows[("country=zz", "amount")]["status"] == "no_reference"  # the reference has no such segment

    # Bonferroni across the model's p-value-tested features, in every segment.
    for segment in {s for s, _ in rows}:
        tested = [r for (s, c), r in rows.items() if s == segment and r["p_value"] is not None
                  and r["p_value"] == r["p_value"] and r["status"] in ("ok", "drifted")]
        for r in tested:
            assert r["adjusted_p_value"] == min(1.0, r["p_value"] * len(tested))
            assert r["drifted"] == (r["adjusted_p_value"] < r["threshold"])
        assert segment != "" or len(tested) == 3  # the whole-model segment tests its three features together

    quality = {(r[0], r[1]): (r[2], r[3], r[4]) for r in store.query(
        "SELECT column, check, value, failed, status FROM quality_results FINAL WHERE model = {m:String} AND segment = ''",
        parameters={"m": name}).result_rows}
    assert quality[("amount", "missing_share")][1:] == (1, "failed") and abs(quality[("amount", "missing_share")][0] - 0.1) < 1e-9
    assert quality[("score", "missing_share")][1:] == (0, "ok")
    assert quality[("score", "out_of_range_share")][1:] == (1, "failed")
    outside = ((score < ref["score"].min()) | (score > ref["score"].max())).mean()
    assert outside >= (n // 12) / n and abs(quality[("score", "out_of_range_share")][0] - outside) < 1e-9
    assert quality[("amount", "out_of_range_share")][1] == 0
    unseen = quality[("country", "unseen_category_share")]
    assert unseen[1:] == (1, "failed") and abs(unseen[0] - (country == "zz").mean()) < 1e-9
    assert quality[("", "dead_letter_rate")][1:] == (1, "failed")
    assert abs(quality[("", "dead_letter_rate")][0] - 40 / (n + 40)) < 1e-9
    assert quality[("", "volume_ratio")] == (0.5, 1, "failed")


@pytest.mark.slow
def test_effect_size_keeps_a_tiny_but_significant_shift_from_counting_as_drift(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    name = f"effect-{uuid.uuid4().hex[:6]}"
    n = 20_000
    ref = pd.DataFrame({"amount": rng.normal(0, 1, n), "score": rng.uniform(0, 1, n), "country": rng.choice(["a", "b"], n)})
    cur = pd.DataFrame({"amount": rng.normal(0.06, 1, n), "score": rng.uniform(0, 1, n), "country": rng.choice(["a", "b"], n)})
    plain = spec(name, drift={"min_rows": 100, "prediction": False, "target": False, "methods": {"numeric": "ks"}})
    write_reference(store, plain, ref, tmp_path)
    write_current(store, name, cur)

    assert run_stage(store, plain, WINDOW, "drift").status == "ok"
    significant = drift_rows(store, name)[("", "amount")]
    assert significant["p_value"] < 1e-6 and significant["drifted"] == 1  # 0.06 sd on 20k rows: "significant"

    guarded = spec(name, drift={"min_rows": 100, "prediction": False, "target": False, "methods": {"numeric": "ks"},
                                "effect_size": {"numeric": "wasserstein", "numeric_threshold": 0.1}})
    assert run_stage(store, guarded, WINDOW, "drift").status == "ok"
    row = drift_rows(store, name)[("", "amount")]
    assert row["p_value"] < 1e-6 and 0.03 < row["effect_size"] < 0.1
    assert row["drifted"] == 0 and row["status"] == "ok"


def test_insufficient_rows_give_no_verdict(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    name = f"few-{uuid.uuid4().hex[:6]}"
    model = spec(name, drift={"min_rows": 500, "prediction": False, "target": False})
    write_reference(store, model, pd.DataFrame({"amount": rng.normal(0, 1, 2000), "score": rng.uniform(0, 1, 2000),
                                                "country": rng.choice(["a", "b"], 2000)}), tmp_path)
    write_current(store, name, pd.DataFrame({"amount": rng.normal(5, 1, 200), "score": rng.uniform(0, 1, 200),
                                             "country": rng.choice(["a", "b"], 200)}))
    result = run_stage(store, model, WINDOW, "drift")
    rows = drift_rows(store, name)
    assert {r["status"] for r in rows.values()} == {"insufficient_data"}
    assert not any(r["drifted"] for r in rows.values()) and result.drifted_columns == []
    assert json.dumps(result.dataset_drifted) == "false"


def test_a_window_of_eight_events_gets_no_quality_verdict_but_its_volume_is_judged(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 (small ones): one missing value among 8 rows was a failed 12.5% missing share, and an alert."""
    rng = np.random.default_rng(4)
    name = f"eight-{uuid.uuid4().hex[:6]}"
    model = spec(name, quality={"expected_rows": 1000}, drift={"prediction": False, "target": False})
    write_reference(store, model, pd.DataFrame({"amount": rng.normal(0, 1, 2000), "score": rng.uniform(0, 1, 2000),
                                                "country": rng.choice(["a", "b"], 2000)}), tmp_path)
    amounts = list(rng.normal(0, 1, 8))
    amounts[0] = None
    write_current(store, name, pd.DataFrame({"amount": amounts, "score": rng.uniform(0, 1, 8),
                                             "country": rng.choice(["a", "b"], 8)}))
    run_stage(store, model, WINDOW, "drift")
    quality = {(r[0], r[1]): (r[2], r[3]) for r in store.query(
        "SELECT column, check, failed, status FROM quality_results FINAL WHERE model = {m:String} AND segment = ''",
        parameters={"m": name}).result_rows}
    assert quality[("amount", "missing_share")] == (0, "insufficient_data"), quality
    assert {status for (column, _), (_, status) in quality.items() if column} == {"insufficient_data"}, quality
    assert quality[("", "volume_ratio")] == (1, "failed")  # 8 of 1000 expected: that is judged


def test_a_constant_column_on_the_binned_path_is_scored_not_an_error(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    name = f"const-{uuid.uuid4().hex[:6]}"
    model = spec(name, drift={"min_rows": 100, "prediction": False, "target": False, "exact_max_rows": 100,
                              "methods": {"numeric": "wasserstein"}})
    frame = lambda n: pd.DataFrame({"amount": rng.normal(0, 1, n), "score": np.full(n, 0.5),  # noqa: E731
                                    "country": rng.choice(["a", "b"], n)})
    write_reference(store, model, frame(1000), tmp_path)
    write_current(store, name, frame(1000))
    assert run_stage(store, model, WINDOW, "drift").status == "ok"
    row = drift_rows(store, name)[("", "score")]
    assert (row["status"], row["score"], row["drifted"]) == ("ok", 0.0, 0)
