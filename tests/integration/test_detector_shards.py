"""Detector workers split the models by shard, and never judge one window twice even when misconfigured."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from detectors.config import Registry, registry_from_yaml
from detectors.run import RunResult
from detectors.schedule import DetectorScheduler
from detectors.shard import Shard
from driftline.store import connect
from driftline.yamlfile import LocatedYaml

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
CATCHUP = 1  # windows per stage per model: 1 drift + 1 performance


def _registry(tag: str) -> Registry:
    models = [{"name": f"shard-{tag}-{i}", "task": "regression", "features": {"x": "numeric"},
               "reference": {"rolling": {"offset": "1d"}}, "window": "10m", "label_delay": "30m"} for i in range(10)]
    return registry_from_yaml(LocatedYaml(Path("test"), {"models": models}))


def _runs(store, names: list[str]) -> Counter[tuple[str, str, dt.datetime]]:  # type: ignore[no-untyped-def]
    rows = store.query("SELECT model, stage, window_start FROM detector_runs WHERE model IN {m:Array(String)}",
                       parameters={"m": names}).result_rows
    return Counter((str(m), str(s), w) for m, s, w in rows)


def _scheduler(base_settings, registry: Registry, shard: Shard, worker: str, sink: list[RunResult]) -> DetectorScheduler:  # type: ignore[no-untyped-def]
    return DetectorScheduler(registry, lambda: connect(base_settings), grace=dt.timedelta(0), catchup_windows=CATCHUP,
                             workers=2, on_result=sink.append, shard=shard, worker_id=worker,
                             claim_settle=dt.timedelta(seconds=0.3))


@pytest.mark.slow
def test_two_shards_split_ten_models_and_judge_every_window_once(base_settings, store) -> None:  # type: ignore[no-untyped-def]
    registry = _registry(uuid.uuid4().hex[:6])
    names = [m.name for m in registry.models]
    got: dict[str, list[RunResult]] = {"w0": [], "w1": []}
    workers = [_scheduler(base_settings, registry, Shard(i, 2), f"w{i}", got[f"w{i}"]) for i in range(2)]
    owned = [set(w.models()) for w in workers]
    assert owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == set(names) and owned[0] and owned[1]

    for w in workers:
        w.start(run_now=True)
    try:
        deadline = time.monotonic() + 120
        while sum(_runs(store, names).values()) < len(names) * 2 * CATCHUP:
            assert time.monotonic() < deadline, _runs(store, names)
            time.sleep(0.2)
        time.sleep(1.0)  # a second run of any window would show up now
    finally:
        for w in workers:
            w.stop()

    runs = _runs(store, names)
    assert len(runs) == len(names) * 2 * CATCHUP and set(runs.values()) == {1}
    for i, w in enumerate(workers):
        assert {r.model for r in got[f"w{i}"]} == owned[i]  # each worker ran exactly its shard's models
        assert w.lost_claims == 0
    print(f"\nshards 0/2 and 1/2: {len(owned[0])} + {len(owned[1])} models, {len(runs)} windows, each run once")


@pytest.mark.slow
def test_two_workers_misconfigured_on_the_same_shard_still_judge_each_window_once(base_settings, store) -> None:  # type: ignore[no-untyped-def]
    """Both left at the default 0/1 and ticking every model at the same instant: the claims pick one per window."""
    registry = _registry(uuid.uuid4().hex[:6])
    names = [m.name for m in registry.models]
    got: dict[str, list[RunResult]] = {"a": [], "b": []}
    workers = {k: _scheduler(base_settings, registry, Shard(0, 1), k, got[k]) for k in got}
    now = dt.datetime.now(UTC)
    barrier = threading.Barrier(2, timeout=60)

    def tick_all(worker: DetectorScheduler) -> None:
        for model in registry.models:
            barrier.wait()  # both list the same due windows, then race for them
            worker.tick(model, now=now)

    threads = [threading.Thread(target=tick_all, args=(w,), daemon=True) for w in workers.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads)

    windows = len(names) * 2 * CATCHUP
    runs = _runs(store, names)
    assert len(runs) == windows and set(runs.values()) == {1}  # no window judged twice
    assert len(got["a"]) + len(got["b"]) == windows
    # Every window was contended and lost by exactly one of the two: the misconfiguration is visible.
    assert workers["a"].lost_claims + workers["b"].lost_claims == windows
    print(f"\nmisconfigured 0/1 twice: {windows} windows, each run once; a ran {len(got['a'])}, b ran {len(got['b'])}, "
          f"lost claims a={workers['a'].lost_claims} b={workers['b'].lost_claims}")
