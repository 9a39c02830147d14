"""Must-show 1: every query of every dashboard, macros and variables expanded, runs on the real ClickHouse engine.

A model's traffic goes through the real broker and collector (so the
collector's own tables fill too): features that drift from the fourth window
on, predictions whose accuracy drops, late labels, serving metrics and a
malformed event. The detectors run on each window, the alert rules fire and
a retrain webhook to an endpoint that is down ends dead. Then each panel's
query (and each template variable's and annotation's) must return rows with
the columns the panel reads. A failure names the dashboard and the panel.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from kafka import KafkaProducer

from alerts.config import AlertConfig
from alerts.dispatch import Dispatcher
from alerts.evaluate import Evaluator
from collector.local_broker import free_port
from collector.loop import Collector
from dashboards.board import PanelQuery
from dashboards.generate import boards
from dashboards.macros import expand
from detectors import concept_drift
from detectors.config import registry_from_yaml
from detectors.reference import upload
from detectors.run import run_stage
from detectors.schedule import window_containing
from detectors.sources import Window
from driftline.producer import PredictionLogger
from driftline.store import connect
from driftline.unknown_models import record_registry
from driftline.yamlfile import LocatedYaml
from tests.conftest import fresh_topics
from tests.integration.alerting import tag

UTC = dt.timezone.utc
WINDOWS, PER_WINDOW, DRIFT_FROM = 6, 300, 3
QUERIES = [q for b in boards() for q in b.queries]


def event(rng: random.Random, drifted: bool) -> tuple[dict[str, object], str, str]:
    features = {"x1": rng.gauss(2.0 if drifted else 0.0, 1.0), "x2": rng.gauss(10.0, 2.0),
                "c": rng.choices(["web", "app", "store"], [0.1, 0.2, 0.7] if drifted else [0.5, 0.3, 0.2])[0]}
    label = "1" if rng.random() < 0.4 else "0"
    right = rng.random() < (0.6 if drifted else 0.9)
    return features, (label if right else ("0" if label == "1" else "1")), label


def score(prediction: str) -> float:
    """The model's probability of class 1 (derived from the prediction: the random draws stay as they were)."""
    return 0.8 if prediction == "1" else 0.2


@pytest.fixture(scope="module")
def seeded(base_settings, tmp_path_factory, monkeypatch_module):  # type: ignore[no-untyped-def]
    settings = fresh_topics(base_settings).model_copy(update={"batch_max_seconds": 0.2})
    store = connect(settings)
    name = f"dash-{tag()}"
    registry = registry_from_yaml(LocatedYaml(Path("test"), {"models": [{
        "name": name, "task": "binary_classification", "features": {"x1": "numeric", "x2": "numeric",
                                                                     "c": "categorical"},
        "reference": {"upload": "train"}, "window": "1h",
        "drift": {"min_rows": 100, "methods": {"numeric": "ks", "categorical": "chisquare"}},
        "performance": {"min_rows": 100, "max_drop": 0.1}, "multivariate": {"min_rows": 100},
        "concept_drift": {"settle": "0s"}}]}))
    model = registry.get(name)
    rng = random.Random(11)
    rows = []
    for _ in range(2000):
        features, prediction, label = event(rng, drifted=False)
        rows.append({**features, "prediction": prediction, "label": label, "proba_1": score(prediction)})
    folder = tmp_path_factory.mktemp("dash")
    pd.DataFrame(rows).to_csv(folder / "train.csv", index=False)
    upload(store, model, "train", folder / "train.csv", show_progress=False)

    first = window_containing(dt.datetime.now(UTC) - dt.timedelta(hours=WINDOWS + 1), dt.timedelta(hours=1))
    windows = [Window(first.start + dt.timedelta(hours=w), first.start + dt.timedelta(hours=w + 1))
               for w in range(WINDOWS)]
    collector = Collector(settings)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    with PredictionLogger(settings.kafka_bootstrap_servers or "", topic_predictions=settings.topic_predictions,
                          topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
        for w, window in enumerate(windows):
            for i in range(PER_WINDOW):
                ts = window.start + dt.timedelta(seconds=(i + 0.5) * 3600 / PER_WINDOW)
                features, prediction, label = event(rng, drifted=w >= DRIFT_FROM)
                event_id = logger.log_prediction(name, features, prediction, ts=ts, latency_ms=rng.uniform(2, 9),
                                                 proba={"1": score(prediction), "0": 1 - score(prediction)})
                logger.log_label(name, event_id, label, ts=ts + dt.timedelta(minutes=2))
            for pod in ("pod-a", "pod-b"):
                for minute in range(0, 60, 15):
                    logger.log_metrics(name, pod, {"latency_p99_ms": rng.uniform(20, 80), "rps": 40.0,
                                                   "error_rate": 0.01, "cpu_utilization": 0.5},
                                       ts=window.start + dt.timedelta(minutes=minute))
        # A producer's typo: events of a model the registry does not define (the fleet's unregistered-models panel).
        logger.log_prediction(f"{name}x", {"x1": 0.0, "x2": 0.0, "c": "a"}, 1, ts=windows[-1].start)
        logger.flush(timeout=60)
    record_registry(store, registry)  # what a service writes at start: the names it was given
    raw = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    raw.send(settings.topic_predictions, value=b'{"model": "' + name.encode() + b'", "broken')
    raw.flush()
    raw.close()
    deadline = time.monotonic() + 120
    while store.query("SELECT count() FROM predictions WHERE model = {m:String}",
                      parameters={"m": name}).result_rows[0][0] < WINDOWS * PER_WINDOW:
        assert time.monotonic() < deadline, "predictions not collected"
        time.sleep(0.5)
    time.sleep(2)  # labels, metrics and the dead letter follow on their own topics
    collector.stop()
    runner.join(timeout=30)

    monkeypatch_module.setenv("DASH_HOOK_SECRET", "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")
    config = AlertConfig.model_validate({
        "channels": {f"retrain-{name}": {"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/down",
                                         "secret_env": "DASH_HOOK_SECRET", "max_attempts": 1, "timeout": "1s"}},
        "rules": [{"name": "drift", "model": name, "for": 1, "routes": [f"retrain-{name}"],
                   "when": {"dataset_drift": {"fire_share": 0.5, "clear_share": 0.3}}},
                  {"name": "accuracy", "model": name, "for": 1, "routes": [f"retrain-{name}"],
                   "when": {"performance_drop": {"metric": "accuracy", "fire_drop": 0.1, "clear_drop": 0.05}}}],
    })
    evaluator = Evaluator(store, registry, config)
    for window in windows:
        for stage in ("drift", "performance"):
            assert run_stage(store, model, window, stage).status == "ok", (window, stage)
        evaluator.evaluate(name, now=window.end + dt.timedelta(minutes=1))
    Dispatcher(store, config).deliver_due()
    assert concept_drift.run(store, model).firings  # the error rises from 10% to 40%: the streaming detectors fire
    return store, name, windows


@pytest.fixture(scope="module")
def monkeypatch_module():  # type: ignore[no-untyped-def]
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
@pytest.mark.parametrize("query", QUERIES, ids=[f"{q.dashboard}: {q.title}" for q in QUERIES])
def test_every_dashboard_query_returns_the_columns_its_panel_reads(seeded, query: PanelQuery) -> None:  # type: ignore[no-untyped-def]
    store, name, windows = seeded
    end = dt.datetime.now(UTC) + dt.timedelta(minutes=1)  # $__timeFilter compares whole seconds
    sql = expand(query.sql, start=windows[0].start - dt.timedelta(hours=1), end=end, interval_s=300,
                 variables={"model": name})
    try:
        result = store.query(sql)
    except Exception as exc:  # noqa: BLE001 - reported with the panel's name
        pytest.fail(f"dashboard {query.dashboard}, panel {query.title!r}: the query fails: {exc}")
    where = f"dashboard {query.dashboard}, panel {query.title!r}"
    assert result.result_rows, f"{where}: no rows on the seeded dataset"
    if query.columns:
        assert tuple(result.column_names) == query.columns, f"{where}: columns {result.column_names}"
    else:  # a variable: its values, the seeded model among them
        assert name in {str(r[0]) for r in result.result_rows}, f"{where}: {name} not offered"
    if query.query_type == "timeSeries":
        assert result.column_names[0] == "time", f"{where}: a time series starts with its time column"


def test_the_drift_the_dashboards_show_is_the_injected_one(seeded) -> None:  # type: ignore[no-untyped-def]
    """Not only rows: the model panel's verdicts flag x1 and c exactly from the injected window on."""
    store, name, windows = seeded
    query = next(q for q in QUERIES if q.title == "Feature drift verdict per window")
    sql = expand(query.sql, start=windows[0].start, end=windows[-1].end, interval_s=3600, variables={"model": name})
    flagged: dict[int, set[str]] = {}
    for time_, feature, drifted in store.query(sql).result_rows:
        w = int((time_.replace(tzinfo=UTC) - windows[0].end).total_seconds() // 3600)
        if drifted:
            flagged.setdefault(w, set()).add(feature)
    outputs = {"__prediction__", "__target__"}  # the prediction and target drift too: accuracy was made to drop
    assert {w: f - outputs for w, f in flagged.items() if f - outputs} == {
        w: {"x1", "c"} for w in range(DRIFT_FROM, WINDOWS)}
    status = next(q for q in QUERIES if q.title == "Model status (latest window)")
    rows = store.query(expand(status.sql, start=windows[0].start, end=windows[-1].end, interval_s=3600,
                              variables={})).result_rows
    assert [r[1] for r in rows if r[0] == name] == ["degraded"]  # drifted and accuracy down: degraded wins


def test_the_performance_timeline_shows_estimates_and_then_realized_values(seeded) -> None:  # type: ignore[no-untyped-def]
    """Every window was estimated when it closed (CBPE); with all its labels in, the panel's value is the realized one."""
    store, name, windows = seeded
    query = next(q for q in QUERIES if q.title == "Performance: estimated until labels arrive, then realized")
    sql = expand(query.sql, start=windows[0].start, end=windows[-1].end, interval_s=3600, variables={"model": name})
    rows = [r for r in store.query(sql).result_rows if r[1] == "accuracy"]
    assert len(rows) == WINDOWS
    for _, _, value, estimated, realized, coverage in rows:
        assert estimated is not None and 0 <= estimated <= 1
        assert value == realized and coverage == 1.0
