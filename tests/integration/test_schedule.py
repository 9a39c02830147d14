"""The schedule: missed windows are caught up after downtime, failures are retried, one bad model stops nothing."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest

from detectors import aggregates
from detectors.config import Registry, registry_from_yaml
from detectors.schedule import (
    DetectorScheduler,
    due_windows,
    window_containing,
    windows_between,
)
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
