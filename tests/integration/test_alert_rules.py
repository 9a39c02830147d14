"""Conditions and inhibition on stored results: infra metrics, data quality, performance; the default inhibition."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes
from email import policy as email_policy
import uuid

from alerts import outbox
from alerts.evaluate import Evaluator
from collector.replay import write_events
from detectors.results import PERFORMANCE_COLUMNS, QUALITY_COLUMNS
from driftline.contracts import EventKind, MetricEvent, encode_event
from tests.integration.alerting import UTC, alert_config, hour, registry_of, tag, write_drift

DAY = dt.datetime(2026, 5, 4, tzinfo=UTC)


def email(name: str) -> dict[str, object]:
    return {f"mail-{name}": {"type": "email", "to": ["o@example.com"], "attach_report": False}}


def fired_and_resolved(store, name: str) -> list[tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    return store.query("SELECT rule, event, toHour(window_end) FROM alert_events WHERE model = {m:String} "
                       "AND event IN ('fired', 'resolved') ORDER BY window_end, rule", parameters={"m": name}).result_rows


def test_p99_latency_fires_above_and_clears_below_with_hysteresis(store) -> None:  # type: ignore[no-untyped-def]
    name = f"infra-{tag()}"
    # p99 latency per hour: 80 ok, 250 bad, 180 in the band (neither), 90 good again.
    p99 = [80, 250, 260, 180, 90, 85]
    events = [encode_event(MetricEvent(model=name, instance=f"pod-{i}", ts=hour(DAY, h).start + dt.timedelta(minutes=m),
                                       metrics={"latency_p99_ms": float(v), "rps": 50.0}))
              for h, v in enumerate(p99) for i in range(2) for m in range(0, 60, 10)]
    assert write_events(store, EventKind.METRIC, events, source=name)[1] == 0
    config = alert_config(name, channels=email(name), rules=[{
        "name": "latency", "for": 2, "clear_for": 1,
        "when": {"infra": {"metric": "latency_p99_ms", "aggregate": "p99", "fire_above": 200, "clear_below": 100}}}])
    evaluator = Evaluator(store, registry_of(name), config)
    for h in range(len(p99)):
        evaluator.evaluate(name, now=hour(DAY, h).end + dt.timedelta(seconds=30))
    # Fires after two bad hours (window 01-02 pending, 02-03 fires), holds in the band, resolves at the 90 ms hour.
    assert fired_and_resolved(store, name) == [("latency", "fired", 3), ("latency", "resolved", 5)]


def test_quality_and_performance_conditions(store) -> None:  # type: ignore[no-untyped-def]
    name = f"qp-{tag()}"
    config = alert_config(name, channels=email(name), rules=[
        {"name": "missing", "for": 1, "clear_for": 1, "when": {"quality": {"check": "missing_share"}}},
        {"name": "mae-up", "for": 1, "clear_for": 1,
         "when": {"performance_drop": {"metric": "mae", "fire_drop": 0.2, "clear_drop": 0.1}}},
    ])
    evaluator = Evaluator(store, registry_of(name, performance={"metrics": ["mae"]}), config)
    queued = []
    for h in range(4):  # results arrive an hour at a time, as the detectors write them
        w, run, broken = hour(DAY, h), uuid.uuid4(), h in (1, 2)
        store.insert("quality_results", [[name, "1", "", w.start, w.end, "x1", "missing_share", 0.4 if broken else 0.01,
                                          0.1, int(broken), "failed" if broken else "ok", 1000, run]],
                     column_names=QUALITY_COLUMNS)
        store.insert("performance_results", [[name, "1", "", w.start, w.end, "mae", 1.5 if h >= 2 else 1.0, 1.0, None,
                                              None, 0.1, int(h >= 2), "degraded" if h >= 2 else "ok", 500, 1000, run]],
                     column_names=PERFORMANCE_COLUMNS)
        queued += evaluator.evaluate(name, now=w.end + dt.timedelta(hours=3)).queued
    assert fired_and_resolved(store, name) == [("missing", "fired", 2), ("mae-up", "fired", 3),
                                                ("missing", "resolved", 4)]
    subjects = [d.subject for d in queued]
    assert any("missing_share failed on x1" in s for s in subjects)  # the first firing email names the column
    assert any("mae rose to 1.5 from a baseline of 1 (+50%" in s for s in subjects)  # an error that rose, rose


def test_default_inhibition_dataset_over_features_and_quality_over_drift(store) -> None:  # type: ignore[no-untyped-def]
    name = f"inh-{tag()}"
    channels = email(name)
    rules = [
        {"name": "dataset", "for": 1, "clear_for": 1, "when": {"dataset_drift": {"fire_share": 0.5, "clear_share": 0.3}}},
        {"name": "features", "for": 1, "clear_for": 1, "when": {"feature_drift": {"features": ["x1", "c"]}}},
        {"name": "missing", "for": 1, "clear_for": 1, "when": {"quality": {"check": "missing_share"}}},
    ]
    evaluator = Evaluator(store, registry_of(name), alert_config(name, channels=channels, rules=rules))
    # Hour 0: x1 and c drift (dataset drift too): only the dataset alert notifies.
    write_drift(store, name, hour(DAY, 0), share=0.67, drifted=("x1", "c"))
    first = evaluator.evaluate(name, now=hour(DAY, 0).end + dt.timedelta(minutes=1)).queued
    assert len(first) == 1 and first[0].subject.startswith("[FIRING] warning: model") and "67% of features" in first[0].subject
    muted = dict(store.query("SELECT subject, muted FROM alert_states FINAL WHERE model = {m:String} AND rule = 'features'",
                             parameters={"m": name}).result_rows)
    assert set(muted) == {"x1", "c"} and all(v.startswith("inhibited:") for v in muted.values())

    # Without inhibition both rules notify (in one grouped email per channel).
    other = f"noinh-{tag()}"
    plain = Evaluator(store, registry_of(other), alert_config(other, channels=email(other), rules=rules, inhibit=[]))
    write_drift(store, other, hour(DAY, 0), share=0.67, drifted=("x1", "c"))
    grouped = plain.evaluate(other, now=hour(DAY, 0).end + dt.timedelta(minutes=1)).queued
    assert len(grouped) == 1 and len(grouped[0].fingerprints) == 3  # dataset + x1 + c in one email

    # A missing-value problem explains the drift: quality inhibits the drift alerts of the model.
    name2 = f"inhq-{tag()}"
    evaluator2 = Evaluator(store, registry_of(name2), alert_config(name2, channels=email(name2), rules=rules))
    w = hour(DAY, 0)
    write_drift(store, name2, w, share=0.67, drifted=("x1", "c"))
    store.insert("quality_results", [[name2, "1", "", w.start, w.end, "x1", "missing_share", 0.5, 0.1, 1, "failed",
                                      1000, uuid.uuid4()]], column_names=QUALITY_COLUMNS)
    only = evaluator2.evaluate(name2, now=w.end + dt.timedelta(minutes=1)).queued
    assert len(only) == 1 and "missing_share" in only[0].subject


def test_a_window_whose_labels_never_come_does_not_hold_back_later_performance_alerts(store) -> None:  # type: ignore[no-untyped-def]
    """Issue 17, must-show 4: hour 0 has predictions and no labels (insufficient_data, within the label wait of
    5 h); hours 1-3 are labelled and degraded. The alert fires on the evaluation after hour 1's verdict lands,
    not once hour 0's wait is over; /status names hour 0 as waiting, then as overdue."""
    from detectors.performance import label_gaps

    name = f"stuck-{tag()}"
    registry = registry_of(name, performance={"metrics": ["mae"]}, label_delay="2h")  # label wait: 2 x 2h + 1h
    config = alert_config(name, channels=email(name), rules=[
        {"name": "mae-up", "for": 1, "clear_for": 1,
         "when": {"performance_drop": {"metric": "mae", "fire_drop": 0.2, "clear_drop": 0.1}}}])
    evaluator = Evaluator(store, registry, config)
    fired_at = None
    for h in range(4):
        w, unlabelled = hour(DAY, h), h == 0
        store.insert("performance_results", [[name, "1", "", w.start, w.end, "mae", None if unlabelled else 1.5, 1.0,
                                              None, None, 0.2, 0, "insufficient_data" if unlabelled else "degraded",
                                              0 if unlabelled else 800, 1000, uuid.uuid4()]],
                     column_names=PERFORMANCE_COLUMNS)
        evaluator.evaluate(name, now=w.end + dt.timedelta(minutes=10))
        if fired_at is None and fired_and_resolved(store, name):
            fired_at = h
    assert fired_at == 1, fired_and_resolved(store, name)  # without the fix: nothing until hour 0 + 5 h
    assert fired_and_resolved(store, name)[0] == ("mae-up", "fired", 2)
    spec = registry.get(name)
    waiting = label_gaps(store, spec, hour(DAY, 3).end)
    assert [g["state"] for g in waiting] == ["waiting"] and "waiting for labels of window" in waiting[0]["message"]
    assert "(0 of 1000)" in waiting[0]["message"]
    overdue = label_gaps(store, spec, hour(DAY, 7).end)
    assert overdue[0]["state"] == "overdue" and "no labels came for window" in overdue[0]["message"]


def test_a_dataset_drift_rule_uses_the_model_s_share_unless_it_says_otherwise(store) -> None:  # type: ignore[no-untyped-def]
    """Issue 17, item 6: /status said `ok` while the email said critical (two thresholds). A rule without
    fire_share now fires exactly when the model's verdict is `drifted`; one with its own share says so."""
    plain, own = f"share-{tag()}", f"own-{tag()}"
    for name, when in ((plain, {}), (own, {"fire_share": 0.6})):
        evaluator = Evaluator(store, registry_of(name, drift={"share": 0.3}), alert_config(
            name, channels=email(name), rules=[{"name": "dataset", "for": 1, "clear_for": 1,
                                                "when": {"dataset_drift": when}}]))
        write_drift(store, name, hour(DAY, 0), share=1 / 3, drifted=("x1",), status="drifted")  # the model: drifted
        first = evaluator.evaluate(name, now=hour(DAY, 0).end + dt.timedelta(minutes=1)).queued
        write_drift(store, name, hour(DAY, 1), share=2 / 3, drifted=("x1", "c"), status="drifted")
        second = evaluator.evaluate(name, now=hour(DAY, 1).end + dt.timedelta(minutes=1)).queued
        if name == plain:
            assert len(first) == 1 and "(the model's dataset drift threshold: 30%)" in first[0].subject, first
        else:
            assert first == [] and len(second) == 1, (first, second)
            message = message_from_bytes(outbox.body_of(store, second[0].delivery_id), policy=email_policy.default)
            body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
            assert "this rule fires at 60%, while the model's dataset drift verdict" in body
            assert "uses 30% and says drifted" in body
