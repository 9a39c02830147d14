"""The detector commands as a user runs them: `models check`, `reference upload`, `detect` (backfill), `report`.

Each runs `driftline` in a subprocess on a store folder of its own (chDB
allows one process per folder), with events written beforehand through the
collector's decode and sink path by a helper process.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import clean_env, query_store, run_driftline

START = dt.datetime(2026, 5, 4, 0, tzinfo=dt.timezone.utc)

REGISTRY = """
models:
  - name: shop
    task: binary_classification
    features: {price: numeric, basket: numeric, channel: categorical}
    reference: {upload: train}
    window: 1h
    drift: {min_rows: 50, effect_size: {}}
  - name: idle
    task: regression
    features: {y: numeric}
    reference: {rolling: {offset: 1d}}
    window: 1h
"""

WRITER = textwrap.dedent("""
    import datetime as dt, sys, numpy as np
    from collector.replay import write_events
    from driftline.config import Settings
    from driftline.contracts import EventKind, PredictionEvent, encode_event
    from driftline.store import connect, migrate
    client = connect(Settings(clickhouse_url=sys.argv[1])); migrate(client)
    rng = np.random.default_rng(5)
    start = dt.datetime(2026, 5, 4, tzinfo=dt.timezone.utc)
    events = []
    for hour in range(3):
        for i in range(300):
            price = float(rng.normal(20 + (8 if hour == 2 else 0), 3))
            events.append(encode_event(PredictionEvent(
                event_id=f"{hour}-{i}", model="shop", model_version="1",
                ts=start + dt.timedelta(hours=hour, seconds=i * 10),
                features={"price": price, "basket": float(rng.poisson(3)), "channel": str(rng.choice(["web", "app"]))},
                prediction="1", proba={"1": 0.7, "0": 0.3})))
    print(write_events(client, EventKind.PREDICTION, events, source="cli-test"))
""")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("detect-cli")
    (root / "models.yaml").write_text(REGISTRY)
    rng = np.random.default_rng(1)
    pd.DataFrame({"price": rng.normal(20, 3, 1000), "basket": rng.poisson(3, 1000).astype(float),
                  "channel": rng.choice(["web", "app"], 1000), "prediction": "1", "label": "1"}).to_csv(
        root / "train.csv", index=False)
    env = clean_env(clickhouse_url=f"chdb:{root / 'store'}", models_file=str(root / "models.yaml"), log_format="json")
    done = subprocess.run([sys.executable, "-c", WRITER, f"chdb:{root / 'store'}"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(900, 0)"
    return root, env


def test_models_check_lists_models_and_rejects_a_bad_file_with_its_line(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, env = workspace
    ok = run_driftline(["models", "check"], env)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["model"] for line in ok.stdout.splitlines()] == ["shop", "idle"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(REGISTRY.replace("window: 1h\n    drift", "window: soon\n    drift"))
    failed = run_driftline(["models", "check", "--models-file", str(bad)], env)
    assert failed.returncode == 2
    assert f"{bad}:7: model 'shop': window:" in failed.stderr and "'soon'" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.slow
def test_reference_upload_validates_the_file_before_writing(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, env = workspace
    # The module's workspace is shared: another test may have uploaded this model's reference already (in a
    # shuffled order). A refused upload must leave whatever was there, rows and count, untouched.
    before = query_store(root / "store", "SELECT count() FROM reference_rows")
    missing = tmp_path / "missing.csv"
    pd.DataFrame({"price": [1.0], "channel": ["web"]}).to_csv(missing, index=False)
    failed = run_driftline(["reference", "upload", "--model", "shop", "--name", "train", str(missing)], env)
    assert failed.returncode == 2 and "needs feature column(s) basket" in failed.stderr
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"price": [1.0, "cheap"], "basket": [1, 2], "channel": ["web", "app"]}).to_csv(wrong, index=False)
    failed = run_driftline(["reference", "upload", "--model", "shop", "--name", "train", str(wrong)], env)
    assert failed.returncode == 2 and "column 'price', row 1: 'cheap' is not a number" in failed.stderr
    unknown = run_driftline(["reference", "upload", "--model", "nope", "--name", "train", str(wrong)], env)
    assert unknown.returncode == 2 and "unknown model 'nope'" in unknown.stderr
    assert query_store(root / "store", "SELECT count() FROM reference_rows") == before


@pytest.mark.slow
def test_backfill_detects_every_window_replaces_on_rerun_and_reports(workspace) -> None:  # type: ignore[no-untyped-def]
    root, env = workspace
    up = run_driftline(["reference", "upload", "--model", "shop", "--name", "train", str(root / "train.csv")], env)
    assert up.returncode == 0, up.stderr
    answer = json.loads(up.stdout)
    assert {k: answer[k] for k in ("model", "reference", "rows", "ignored")} == {
        "model": "shop", "reference": "train", "rows": 1000, "ignored": []}
    assert {answer["columns"][c] for c in ("price", "basket", "channel")} == {"feature"}
    backfill = ["detect", "--model", "shop", "--stage", "drift", "--start", "2026-05-04T00:00Z", "--end", "2026-05-04T03:00Z"]
    first = run_driftline(backfill, env)
    assert first.returncode == 0, first.stderr
    runs = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["window_start"][:13], r["status"]) for r in runs] == [
        ("2026-05-04T00", "ok"), ("2026-05-04T01", "ok"), ("2026-05-04T02", "ok")]
    assert [r["drifted"] for r in runs] == [[], [], ["price"]]
    assert [r["multivariate_drifted"] for r in runs] == [[], [], []]  # 300 rows a window: under multivariate.min_rows
    assert "detect [" in first.stderr and "3/3" in first.stderr  # the progress bar
    rows_once = query_store(root / "store", "SELECT count() FROM drift_results WHERE model = 'shop'")
    again = run_driftline(backfill, env)
    assert again.returncode == 0, again.stderr
    # A re-run replaces the windows' results: same row count without FINAL, one run id per window.
    assert query_store(root / "store", "SELECT count() FROM drift_results WHERE model = 'shop'") == rows_once
    assert query_store(root / "store", "SELECT uniqExact(run_id) FROM drift_results WHERE model = 'shop'") == [["3"]]
    assert query_store(root / "store", "SELECT count() FROM detector_runs WHERE model = 'shop'") == [["6"]]

    report = root / "report.html"
    done = run_driftline(["report", "--model", "shop", "--start", "2026-05-04T02:00Z", "--end", "2026-05-04T03:00Z",
                          "--out", str(report), "--sample-rows", "500"], env)
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "price" in html and "Drift" in html
    empty = run_driftline(["report", "--model", "shop", "--start", "2026-06-01T00:00Z", "--end", "2026-06-01T01:00Z",
                           "--out", str(root / "none.html")], env)
    assert empty.returncode == 2 and "the current window has no rows" in empty.stderr
    assert "Traceback" not in empty.stderr and not (root / "none.html").exists()
    huge = run_driftline(["report", "--model", "shop", "--sample-rows", "0"], env)
    assert huge.returncode == 2 and "sample_rows must be between 1 and" in huge.stderr


def test_detect_of_a_model_without_data_is_no_data_not_a_crash(workspace) -> None:  # type: ignore[no-untyped-def]
    _, env = workspace
    done = run_driftline(["detect", "--model", "idle", "--start", "2026-05-04T00:00Z", "--end", "2026-05-04T01:00Z",
                          "--quiet"], env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["no_data", "no_data"]
