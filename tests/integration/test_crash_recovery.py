"""Must-show 2-4: SIGKILL at random moments, SIGTERM, restart on an existing folder, migrations twice."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from kafka import KafkaProducer

from driftline.contracts import EventKind
from driftline.store.migrations import MIGRATIONS
from driftline.simulate import label_payload, metric_payload, prediction_payload
from tests.conftest import clean_env, query_store, run_driftline
from tests.integration.collector_process import CollectorProcess, group_caught_up
from tests.malformed import malformed_cases

pytestmark = pytest.mark.integration

MODELS = ["churn", "fraud", "eta"]
FAST = {"batch_max_events": 500, "batch_max_seconds": 0.2}


class Traffic:
    """Produces a steady mix of valid and broken events in a thread, counting what it sent."""

    def __init__(self, settings, seed: int, rate_per_s: float) -> None:
        self.settings = settings
        self.rng = random.Random(seed)
        self.rate = rate_per_s
        self.sent: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._bad = [c for c in malformed_cases(1) if c[2] != "oversized"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=5, acks="all")

    def send(self, n: int) -> None:
        topics = self.settings.topics
        for _ in range(n):
            i = sum(self.sent.values())
            model = MODELS[i % len(MODELS)]
            r = self.rng.random()
            if r < 0.005:
                kind, raw, _ = self._bad[i % len(self._bad)]
                self.sent[("dead", "")] += 1
            elif r < 0.7:
                kind, raw = EventKind.PREDICTION, prediction_payload(i, model, rng=self.rng)
                self.sent[("prediction", model)] += 1
            elif r < 0.9:
                kind, raw = EventKind.LABEL, label_payload(i, model, rng=self.rng)
                self.sent[("label", model)] += 1
            else:
                kind, raw = EventKind.METRIC, metric_payload(i, model, rng=self.rng)
                self.sent[("metric", model)] += 1
            self._producer.send(topics[kind.value], key=model.encode(), value=raw)

    def _run(self) -> None:
        step = 0.05
        while not self._stop.is_set():
            self.send(max(1, int(self.rate * step)))
            time.sleep(step)

    def start(self) -> "Traffic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._producer.flush(timeout=60)
        self._producer.close()


def _wait_caught_up(settings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not group_caught_up(settings):
        assert time.monotonic() < deadline, "the collector did not catch up"
        time.sleep(0.5)


def _run_until_caught_up(proc: CollectorProcess, settings, timeout: float = 180) -> int:
    """Start the collector, let it consume everything produced, SIGTERM it; returns its exit code."""
    proc.start()
    assert proc.wait_for("partitions assigned", timeout=60)
    _wait_caught_up(settings, timeout=timeout)
    code, _ = proc.terminate(timeout=60)
    return code


def _stored(path: Path, settings) -> Counter[tuple[str, str]]:
    got: Counter[tuple[str, str]] = Counter()
    for table, kind in (("predictions", "prediction"), ("labels", "label"), ("infra_metrics", "metric")):
        for model, n in query_store(path, f"SELECT model, count() FROM {table} GROUP BY model"):
            got[(kind, model)] = int(n)
    dead = int(query_store(path, "SELECT count() FROM dead_letters")[0][0])
    if dead:
        got[("dead", "")] = dead
    return got


def _duplicates(path: Path) -> dict[str, int]:
    out = {}
    for table in ("predictions", "labels", "infra_metrics", "dead_letters"):
        out[table] = int(query_store(path, f"SELECT count() - uniqExact(topic, partition, offset) FROM {table}")[0][0])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11])
def test_sigkill_at_random_moments_loses_and_duplicates_nothing(settings, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    store = tmp_path / "store"
    proc = CollectorProcess(settings, store, tmp_path / "collector.log", **FAST)
    traffic = Traffic(settings, seed, rate_per_s=3000).start()
    kills = 0
    try:
        for _ in range(6):
            proc.start()
            assert proc.wait_for("partitions assigned", timeout=60), "the collector never got its partitions"
            time.sleep(rng.uniform(0.2, 2.5))
            proc.kill()
            kills += 1
    finally:
        traffic.stop()
    assert _run_until_caught_up(proc, settings) == 0
    assert kills >= 5

    sent = traffic.sent
    assert _stored(store, settings) == sent
    assert _duplicates(store) == {t: 0 for t in ("predictions", "labels", "infra_metrics", "dead_letters")}


@pytest.mark.slow
def test_sigterm_flushes_and_exits_zero_and_a_restart_keeps_the_data(settings, tmp_path: Path) -> None:
    store = tmp_path / "store"
    proc = CollectorProcess(settings, store, tmp_path / "collector.log", batch_max_events=5000, batch_max_seconds=5)
    traffic = Traffic(settings, seed=3, rate_per_s=4000)
    traffic.send(20_000)
    proc.start()
    assert proc.wait_for("partitions assigned", timeout=60)
    time.sleep(1.0)  # mid-ingest: batches are open (5 s age bound) when the signal lands
    code, seconds = proc.terminate(timeout=60)
    assert code == 0
    assert seconds < 30, f"SIGTERM took {seconds:.1f}s"
    stopped = [l for l in proc.log_lines() if l.get("msg") == "collector stopped"]
    assert stopped and stopped[-1]["flushed"] is True
    final = stopped[-1]
    assert final["consumed"] == final["inserted"] + final["dead_lettered"] > 0
    stored_after_stop = _stored(store, settings)
    assert sum(stored_after_stop.values()) == final["consumed"]

    # Restart on the same folder with new events waiting: what was stored stays, the rest arrives, nothing twice.
    traffic.send(5_000)
    traffic.stop()
    assert _run_until_caught_up(proc, settings) == 0
    assert _stored(store, settings) == traffic.sent
    assert sum(traffic.sent.values()) == 25_000
    assert _duplicates(store)["predictions"] == 0


@pytest.mark.slow
def test_migrations_run_twice_change_nothing(tmp_path: Path) -> None:
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}")
    first = run_driftline(["db", "migrate"], env)
    assert first.returncode == 0, first.stderr
    assert f'"applied": {[m.version for m in MIGRATIONS]}' in first.stdout
    # Every table's and view's definition in one query (a `driftline db query` process per table took 100 s).
    schema = ("SELECT name, engine, create_table_query FROM system.tables WHERE database = currentDatabase() "
              "ORDER BY name")
    before = query_store(tmp_path / "store", schema)
    assert len(before) > 30 and {"predictions", "schema_migrations", "outbox"} <= {r[0] for r in before}
    second = run_driftline(["db", "migrate"], env)
    assert second.returncode == 0, second.stderr
    assert '"applied": []' in second.stdout
    after = query_store(tmp_path / "store", schema)
    assert after == before
    assert query_store(tmp_path / "store", "SELECT count() FROM schema_migrations") == [[str(len(MIGRATIONS))]]
