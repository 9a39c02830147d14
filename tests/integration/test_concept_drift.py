"""Concept drift on the real engine: the must-show step, the stream's ordering rules, failures recorded, the alert.

The stream is written by SQL (`tests/integration/concept_stream.py`): 100,000 labelled rows at a 10% error
rate, then 20,000 at 30%. The SIGKILL-and-restart half of the must-show is in test_concept_drift_restart.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from alerts.evaluate import Evaluator
from detectors import concept_drift
from detectors.config import ModelSpec, registry_from_yaml
from detectors.schedule import DetectorScheduler
from driftline.cli import main
from driftline.yamlfile import LocatedYaml
from tests.integration.alerting import alert_config, tag
from tests.integration.concept_stream import DELAY_BOUND, STABLE_ROWS, T0, VARIANT, seed_stream

pytestmark = pytest.mark.integration
UTC = dt.timezone.utc


def model_of(name: str, task: str = "binary_classification", **concept: Any) -> ModelSpec:
    spec = {"name": name, "task": task, "features": {"x": "numeric"}, "reference": {"rolling": {"offset": "7d"}},
            "concept_drift": concept}
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": [spec]})).get(name)


def events(store, name: str) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    return store.query("SELECT detector, position FROM concept_drift_events FINAL WHERE model = {m:String} "
                       "ORDER BY position, detector", parameters={"m": name}).result_rows


@pytest.mark.slow
def test_each_detector_fires_within_its_bound_after_the_jump_and_never_on_the_stable_prefix(store) -> None:  # type: ignore[no-untyped-def]
    name = f"cd-step-{tag()}"
    seed_stream(store, name)
    out = concept_drift.run(store, model_of(name))
    assert out.rows_seen == STABLE_ROWS + 20_000 and out.batches == 12
    fired = events(store, name)
    assert all(position > STABLE_ROWS for _, position in fired), fired
    first = {d: min(p for dd, p in fired if dd == d) - STABLE_ROWS for d in DELAY_BOUND if any(dd == d for dd, _ in fired)}
    assert set(first) == set(DELAY_BOUND)
    for detector, delay in first.items():
        assert delay <= DELAY_BOUND[detector], (detector, delay)
    print(json.dumps({"detection_delay_rows": first}))  # the figures quoted in docs/reference.md
    assert concept_drift.run(store, model_of(name)).rows_read == 0  # nothing new: nothing read, nothing fired again


def test_the_stream_takes_each_event_once_skips_unmatched_labels_and_waits_for_settled_rows(store) -> None:  # type: ignore[no-untyped-def]
    name = f"cd-order-{tag()}"
    model = model_of(name, settle="1m", batch_rows=2)
    seed_stream(store, name, stable=6, jump=0, before=0.0)
    late = T0 + dt.timedelta(hours=1)
    store.command(f"INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, prediction) "
                  f"VALUES ('predictions', 1, 0, 'null-label', {{m:String}}, 'v1', {{t:DateTime64(3, 'UTC')}}, "
                  f"CAST('a' AS {VARIANT}))", parameters={"m": name, "t": late})
    # A corrected label of event 0 (wrong now), a label whose prediction never came, a null label, and a row
    # not yet settled.
    t = "{t:DateTime64(3, 'UTC')}"
    store.command(
        f"INSERT INTO labels (topic, partition, offset, event_id, model, ts, label, ingested_at) VALUES "
        f"('labels', 1, 0, {{e0:String}}, {{m:String}}, {t}, CAST('b' AS {VARIANT}), {t}), "
        f"('labels', 1, 1, 'nobody', {{m:String}}, {t}, CAST('b' AS {VARIANT}), {t}), "
        f"('labels', 1, 2, 'null-label', {{m:String}}, {t}, CAST(NULL AS {VARIANT}), {t}), "
        f"('labels', 1, 3, {{e5:String}}, {{m:String}}, {t}, CAST('b' AS {VARIANT}), {{now:DateTime64(3, 'UTC')}})",
        parameters={"m": name, "e0": f"{name}-0", "e5": f"{name}-5", "t": late, "now": late + dt.timedelta(hours=5)})
    out = concept_drift.run(store, model, now=late + dt.timedelta(hours=5, seconds=30))
    assert (out.rows_read, out.rows_seen, out.batches) == (9, 6, 5)  # correction, orphan and null read, not counted
    status = concept_drift.status(store, model)
    assert status["rows_seen"] == 6 and status["labels_waiting"] == 1 and status["cursor"]["offset"] == 2
    out = concept_drift.run(store, model, now=late + dt.timedelta(hours=6))  # settled now; event 5 was seen: skipped
    assert (out.rows_read, out.rows_seen) == (1, 6)


def test_regression_error_is_absolute_and_ddm_counts_errors_above_the_tolerance(store) -> None:  # type: ignore[no-untyped-def]
    name = f"cd-reg-{tag()}"
    model = model_of(name, "regression", regression_tolerance=1.5,
                     page_hinkley={"lambda": 20, "delta": 0.5, "min_instances": 10},
                     ddm={"min_instances": 50, "drift_level": 3})
    store.command(
        f"INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, prediction) "
        f"SELECT 'predictions', 0, number, concat({{m:String}}, '-', toString(number)), {{m:String}}, 'v1', "
        f"{{t:DateTime64(3, 'UTC')}}, CAST(10.0 AS {VARIANT}) FROM numbers(600)", parameters={"m": name, "t": T0})
    # |error| 1 for 400 rows, then 3: a rise of 2 in the error's units.
    store.command(
        f"INSERT INTO labels (topic, partition, offset, event_id, model, ts, label, ingested_at) "
        f"SELECT 'labels', 0, number, concat({{m:String}}, '-', toString(number)), {{m:String}}, {{t:DateTime64(3, 'UTC')}}, "
        f"CAST(if(number < 400, if(number % 2 = 0, 11.0, 9.0), 13.0) AS {VARIANT}), {{t:DateTime64(3, 'UTC')}} "
        f"FROM numbers(600)", parameters={"m": name, "t": T0})
    concept_drift.run(store, model)
    fired = {d: p for d, p in reversed(events(store, name))}
    assert set(fired) == {"page_hinkley", "adwin", "ddm"} and all(400 < p <= 500 for p in fired.values()), fired


def test_a_configuration_change_restarts_the_detectors_from_the_cursor(store) -> None:  # type: ignore[no-untyped-def]
    name = f"cd-cfg-{tag()}"
    seed_stream(store, name, stable=3000, jump=0)
    concept_drift.run(store, model_of(name))
    changed = model_of(name, page_hinkley={"lambda": 60})
    state = concept_drift.load_state(store, changed)
    assert state.rows_seen == 3000 and state.detectors["page_hinkley"].n == 0  # fresh detector, same cursor
    assert concept_drift.load_state(store, model_of(name)).detectors["page_hinkley"].n == 3000


def test_the_scheduler_tick_runs_the_stream_and_records_it_and_a_broken_state_is_an_error_not_a_crash(store) -> None:  # type: ignore[no-untyped-def]
    good, bad = f"cd-tick-{tag()}", f"cd-bad-{tag()}"
    models = [model_of(good), model_of(bad)]
    for name in (good, bad):
        seed_stream(store, name, stable=100, jump=0)
    store.insert("concept_drift_state", [[bad, concept_drift.config_key(models[1]), "{not json", T0, "", -1, -1, 0, 0,
                                          dt.datetime.now(UTC)]], column_names=concept_drift.STATE_COLUMNS)
    registry = registry_from_yaml(LocatedYaml(Path("test"), {"models": [m.model_dump(by_alias=True) for m in models]}))
    ticked: list[str] = []
    scheduler = DetectorScheduler(registry, lambda: store, grace=dt.timedelta(0), catchup_windows=1,
                                  after_tick=lambda m, _c: ticked.append(m.name))
    for model in models:
        scheduler.tick(model, now=T0 + dt.timedelta(days=1))
    assert ticked == [good, bad]  # the alert step ran after both, the broken one included
    assert concept_drift.load_state(store, models[0]).rows_seen == 100
    rows = store.query("SELECT model, status, rows_scanned, error FROM detector_runs WHERE model IN {ms:Array(String)} "
                       "AND stage = 'concept_drift' ORDER BY model", parameters={"ms": [good, bad]}).result_rows
    assert [(m, status, n) for m, status, n, _ in rows] == sorted([(good, "ok", 100), (bad, "error", 0)])
    assert "JSONDecodeError" in next(error for m, _, _, error in rows if m == bad)
    scheduler.tick(models[0], now=T0 + dt.timedelta(days=1))  # nothing new: no run recorded
    assert store.query("SELECT count() FROM detector_runs WHERE model = {m:String} AND stage = 'concept_drift'",
                       parameters={"m": good}).result_rows == [(1,)]


def test_a_concept_drift_rule_fires_from_real_firings(store) -> None:  # type: ignore[no-untyped-def]
    name = f"cd-alert-{tag()}"
    # 30,000 stable labels arriving over 5 h (600 ms apart), then the jump: the firings land in hour 5, which
    # is judged once the stream has passed its end (the labels go on to 6 h 20).
    seed_stream(store, name, stable=30_000, jump=8_000, spacing_ms=600)
    model = model_of(name)
    out = concept_drift.run(store, model, now=T0 + dt.timedelta(hours=12))
    assert out.firings and min(f.position for f in out.firings) > 30_000
    registry = registry_from_yaml(LocatedYaml(Path("test"), {"models": [model.model_dump(by_alias=True)]}))
    config = alert_config(name, channels={f"mail-{name}": {"type": "email", "to": ["o@example.com"],
                                                            "attach_report": False}},
                          rules=[{"name": "concept", "for": 1, "clear_for": 1,
                                  "when": {"concept_drift": {"detectors": ["page_hinkley", "adwin"]}}}])
    Evaluator(store, registry, config).evaluate(name, now=T0 + dt.timedelta(hours=12))
    fired = store.query("SELECT event, toHour(window_start), value FROM alert_events WHERE model = {m:String} "
                        "AND event IN ('fired', 'resolved') ORDER BY at", parameters={"m": name}).result_rows
    assert fired == [("fired", 5, 1.0)]
    states = store.query("SELECT status, kind FROM alert_states FINAL WHERE model = {m:String}",
                         parameters={"m": name}).result_rows
    assert states == [("firing", "concept_drift")]


def test_the_cli_runs_a_model_on_demand_and_reports_its_status(store, base_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    name = f"cd-cli-{tag()}"
    seed_stream(store, name, stable=2500, jump=0)
    models = tmp_path / "models.yaml"
    models.write_text(f"models:\n  - name: {name}\n    task: binary_classification\n    features: {{x: numeric}}\n"
                      f"    reference: {{rolling: {{offset: 7d}}}}\n    concept_drift: {{batch_rows: 1000}}\n")
    common = ["--model", name, "--models-file", str(models), "--clickhouse-url", str(base_settings.clickhouse_url)]
    assert main(["concept-drift", "run", *common]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("batch") for line in lines] == [1, 2, 3, None]  # a line per persisted batch, then the summary
    assert lines[-1]["done"] and lines[-1]["rows_seen"] == 2500 and lines[-1]["rows_read"] == 2500
    assert main(["concept-drift", "status", *common]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["rows_seen"], status["labels_waiting"], status["cursor"]["offset"]) == (2500, 0, 2499)
    assert main(["concept-drift", "status", "--model", "nope", "--models-file", str(models)]) == 2  # unknown model
