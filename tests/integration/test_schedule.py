"""The schedule: missed windows are caught up after downtime, failures are retried, one bad model stops nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from collector.replay import write_events
from detectors import aggregates
from detectors.config import Registry, registry_from_yaml
from detectors.schedule import (
    DetectorScheduler,
    due_windows,
    window_containing,
    windows_between,
)
from driftline.contracts import EventKind, LabelEvent, PredictionEvent, encode_event
from driftline.store import connect
from driftline.yamlfile import LocatedYaml

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 9, 9, 12, 34, 56, tzinfo=UTC)


def registry(*names: str) -> Registry:
    models = [{"name": n, "task": "regression", "features": {"x": "numeric"}, "reference": {"rolling": {"offset": "1d"}},
               "window": "10m", "label_delay": "30m"} for n in names]
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": models}))


def test_windows_are_aligned_and_cover_a_range() -> None:
    w = window_containing(NOW, dt.timedelta(minutes=10))
    assert (w.start, w.end) == (dt.datetime(2026, 9, 9, 12, 30, tzinfo=UTC), dt.datetime(2026, 9, 9, 12, 40, tzinfo=UTC))
    starts = [w.start.minute for w in windows_between(NOW - dt.timedelta(minutes=25), NOW, dt.timedelta(minutes=10))]
    assert starts == [0, 10, 20, 30]


@pytest.mark.slow
def test_catch_up_after_downtime_and_retry_of_failures(base_settings, store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    good, bad = f"sched-{tag}", f"broken-{tag}"
    reg = registry(good, bad)
    model = reg.get(good)
    grace = dt.timedelta(seconds=30)

    due = due_windows(store, model, "drift", NOW, grace=grace, catchup_windows=6)
    # The last complete window ends at 12:30 (12:40 is not over); six windows back from there.
    assert [w.start.strftime("%H:%M") for w in due] == ["11:30", "11:40", "11:50", "12:00", "12:10", "12:20"]
    perf = due_windows(store, model, "performance", NOW, grace=grace, catchup_windows=2)
    assert [w.start.strftime("%H:%M") for w in perf] == ["11:40", "11:50"]  # label delay 30m

    real_profile = aggregates.profile

    def failing_for_bad_model(client, sides, q, columns):  # type: ignore[no-untyped-def]
        if bad in q.parameters.values():
            raise RuntimeError("injected store failure")
        return real_profile(client, sides, q, columns)

    monkeypatch.setattr(aggregates, "profile", failing_for_bad_model)
    scheduler = DetectorScheduler(reg, lambda: connect(base_settings), grace=grace, catchup_windows=6)
    results = [r for m in reg.models for r in scheduler.tick(m, now=NOW)]
    by_model = {m: [r for r in results if r.model == m and r.stage == "drift"] for m in (good, bad)}
    assert [r.status for r in by_model[good]] == ["no_data"] * 6  # the broken model did not stop this one
    assert [r.status for r in by_model[bad]] == ["error"] * 6
    assert all("injected store failure" in r.error for r in by_model[bad])

    # Next tick, ten minutes later: the good model only has the one new window; the failed ones are retried.
    later = NOW + dt.timedelta(minutes=10)
    assert [w.start.strftime("%H:%M") for w in due_windows(store, model, "drift", later, grace=grace, catchup_windows=6)] == ["12:30"]
    monkeypatch.setattr(aggregates, "profile", real_profile)
    retried = scheduler.tick(reg.get(bad), now=later)
    assert [r.status for r in retried if r.stage == "drift"] == ["no_data"] * 6  # 11:40..12:30, all due again
    recorded = store.query("SELECT status, count() FROM detector_runs WHERE model = {m:String} AND stage = 'drift' "
                           "GROUP BY status ORDER BY status", parameters={"m": bad}).result_rows
    assert recorded == [("error", 6), ("no_data", 6)]


def test_start_names_registry_references_that_were_never_uploaded(base_settings) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    models = [{"name": f"noref-{tag}", "task": "regression", "features": {"x": "numeric"},
               "reference": {"upload": "train-v9"}}]
    reg = registry_from_yaml(LocatedYaml(Path("test"), {"models": models}))
    scheduler = DetectorScheduler(reg, lambda: connect(base_settings), grace=dt.timedelta(0), catchup_windows=1)
    assert scheduler.missing_references() == [f"noref-{tag}/train-v9"]


def test_labels_arriving_after_a_performance_verdict_reopen_that_window(base_settings, store) -> None:  # type: ignore[no-untyped-def]
    """A window judged on half of its labels is recomputed once the rest arrive, and then left alone."""
    name = f"late-{uuid.uuid4().hex[:6]}"
    model = registry_from_yaml(LocatedYaml(Path("test"), {"models": [{
        "name": name, "task": "regression", "features": {"x": "numeric"}, "window": "10m",
        "reference": {"rolling": {"offset": "1d"}}, "performance": {"min_rows": 50}}]})).models[0]
    now = dt.datetime.now(UTC)
    window = window_containing(now, dt.timedelta(minutes=10))
    window = type(window)(window.start - dt.timedelta(minutes=10), window.start)  # the last complete one
    step = dt.timedelta(minutes=10) / 201
    preds = [encode_event(PredictionEvent(event_id=f"{name}-{i}", model=name, model_version="1",
                                          ts=window.start + step * (i + 1), features={"x": float(i)},
                                          prediction=float(i))) for i in range(200)]
    labels = [encode_event(LabelEvent(event_id=f"{name}-{i}", model=name, ts=window.start + step * (i + 1),
                                      label=float(i))) for i in range(200)]
    assert write_events(store, EventKind.PREDICTION, preds, source=f"{name}-p")[1] == 0
    assert write_events(store, EventKind.LABEL, labels[:100], source=f"{name}-l1")[1] == 0

    scheduler = DetectorScheduler(Registry(models=[model]), lambda: connect(base_settings),
                                  grace=dt.timedelta(0), catchup_windows=1)

    def labelled() -> list[int]:
        return [r[0] for r in store.query(
            "SELECT labelled_rows FROM performance_results FINAL WHERE model = {m:String} AND metric = 'mae'",
            parameters={"m": name}).result_rows]

    first = [r.status for r in scheduler.tick(model, now=now) if r.stage == "performance"]
    assert first == ["ok"] and labelled() == [100]
    assert due_windows(store, model, "performance", now, grace=dt.timedelta(0), catchup_windows=1) == []

    assert write_events(store, EventKind.LABEL, labels[100:], source=f"{name}-l2")[1] == 0
    again = due_windows(store, model, "performance", now, grace=dt.timedelta(0), catchup_windows=1)
    assert again == [window]
    assert [r.status for r in scheduler.tick(model, now=now) if r.stage == "performance"] == ["ok"]
    assert labelled() == [200]
    assert due_windows(store, model, "performance", now, grace=dt.timedelta(0), catchup_windows=1) == []
