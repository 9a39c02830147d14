"""Scale out: three collectors in one consumer group, one dies abruptly mid-batch, the counts stay exact.

The three run as threads of this process (the embedded chDB folder belongs to
one process); each is a full `Collector` with its own consumer, writer thread
and store clients, exactly what `driftline collect` runs per host against a
ClickHouse server. A thread cannot be SIGKILLed, so the death is emulated the
way a kill looks from outside: the victim's sink inserts half of a batch's
rows, then the instance freezes: no more polls, no flush, no checkpoint, its
heartbeats stop, and it never sends LeaveGroup. The broker's session timeout
evicts it and the group rebalances; the new owners roll back the half batch
and replay from the checkpoint. Then the frozen instance is thawed, as a
stalled process wakes up: it is a zombie whose partitions moved, and the
epoch fencing must stop it from rolling back, writing or committing anything.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from kafka import KafkaProducer

import collector.loop as loop
from collector.loop import Collector
from driftline.contracts import EventKind
from driftline.simulate import label_payload, metric_payload, prediction_payload
from tests.conftest import fresh_topics, own_database
from tests.malformed import malformed_cases

pytestmark = pytest.mark.integration

PARTITIONS = 6
TOTAL = 30_000
N_BAD = 300
MODELS = [f"scale-{i:02d}" for i in range(24)]


def _stream(seed: int = 11) -> tuple[list[tuple[EventKind, bytes, bytes]], Counter[EventKind], int]:
    """(kind, key, raw) in produce order, the valid events per kind, and the number of malformed ones."""
    rng = random.Random(seed)
    bad: list[tuple[EventKind, bytes, bytes]] = []
    i = 0
    while len(bad) < N_BAD:
        bad += [(k, b"bad", raw or b"") for k, raw, _ in malformed_cases(20_000_000 + i)]
        i += 1
    bad = bad[:N_BAD]
    good: list[tuple[EventKind, bytes, bytes]] = []
    for j in range(TOTAL - N_BAD):
        model = MODELS[j % len(MODELS)]
        r = rng.random()
        if r < 0.7:
            good.append((EventKind.PREDICTION, model.encode(), prediction_payload(j, model, rng=rng)))
        elif r < 0.9:
            good.append((EventKind.LABEL, model.encode(), label_payload(j, model, rng=rng)))
        else:
            good.append((EventKind.METRIC, model.encode(), metric_payload(j, model, rng=rng)))
    stream = good + bad
    rng.shuffle(stream)
    return stream, Counter(k for k, _, _ in good), len(bad)


class HalfInsertThenFreeze:
    """The real client; once armed, the next predictions insert writes half its rows and the instance freezes.

    On thaw the stalled statement fails like a connection reset while stalled, so the zombie's writer
    takes its retry path: rollback from the batch's first offset, then rewrite. Unfenced, that
    rollback would delete the rows the new owner has written since.
    """

    def __init__(self, client, on_freeze) -> None:  # type: ignore[no-untyped-def]
        self._client = client
        self._on_freeze = on_freeze
        self.armed = threading.Event()
        self.thaw = threading.Event()
        self.half: list[tuple[str, int, int]] = []  # (topic, partition, offset) of the rows that landed

    def raw_insert(self, table, column_names=None, insert_block=None, **kwargs):  # type: ignore[no-untyped-def]
        if self.armed.is_set() and table == "predictions_ingest" and insert_block and insert_block.count(b"\n") >= 10:
            self.armed.clear()
            lines = insert_block.split(b"\n")
            first = lines[: len(lines) // 2]
            self._client.raw_insert(table, column_names, insert_block=b"\n".join(first), **kwargs)
            self.half = [(o["topic"], o["partition"], o["offset"]) for o in map(json.loads, first)]
            self._on_freeze()
            assert self.thaw.wait(timeout=180), "never thawed"
            raise OperationalError("injected: connection reset while the process was stalled")
        return self._client.raw_insert(table, column_names, insert_block=insert_block, **kwargs)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._client, name)


class FreezableCollector(Collector):
    """A collector whose consumer thread can be frozen where it would poll next (and thawed again)."""

    frozen: threading.Event
    thawed: threading.Event

    def freeze(self) -> None:
        """Stop everything a dead process stops: heartbeats now, polling at the next loop step."""
        self.frozen.set()
        assert self._consumer is not None
        self._consumer._coordinator._close_heartbeat()  # no more heartbeats, and no LeaveGroup

    def _hold(self) -> None:
        if self.frozen.is_set():
            assert self.thawed.wait(timeout=180), "never thawed"
            deadline = time.monotonic() + 30  # a woken process: its writer finds out first
            while not self.fenced and time.monotonic() < deadline:
                time.sleep(0.05)

    def _poll_once(self) -> None:
        self._hold()
        super()._poll_once()

    def _report_committed(self) -> None:  # also runs in the wait-for-the-writer loop
        self._hold()
        super()._report_committed()


def _wait(condition, timeout: float, what) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)


@pytest.mark.slow
def test_three_collectors_keep_exactly_once_when_one_dies_mid_batch(base_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr("collector.writer.BACKOFF_START_S", 0.05)
    # A database of its own in the session's folder: the tables then hold this test's rows only, as a deployment's
    # would after a while, and the survivors' on-assign rollbacks (lightweight DELETEs) do not have to mark the
    # parts of every earlier test. On the shared tables, late in a full run, one rollback took 90 s inside the
    # rebalance listener, a survivor missed its session timeout and was (rightly) fenced.
    settings, store = own_database(fresh_topics(base_settings, partitions=PARTITIONS).model_copy(
        update={"batch_max_events": 1500, "batch_max_seconds": 0.3}))
    topics = list(settings.topics.values())
    everything = {(t, p) for t in topics for p in range(PARTITIONS)}
    stream, want, n_bad = _stream()

    survivors = [Collector(settings, collector_id=f"scale-{i}") for i in range(2)]
    real_connect = loop.connect
    faulty: list[HalfInsertThenFreeze] = []
    victim: FreezableCollector

    def connect_faulty(s):  # type: ignore[no-untyped-def]
        client = HalfInsertThenFreeze(real_connect(s), on_freeze=lambda: victim.freeze())
        faulty.append(client)
        return client

    monkeypatch.setattr(loop, "connect", connect_faulty)
    victim = FreezableCollector(settings, collector_id="scale-victim")
    monkeypatch.setattr(loop, "connect", real_connect)
    victim.frozen, victim.thawed = threading.Event(), threading.Event()
    fault = faulty[-1]  # the sink's client (the second one the collector opens)
    members = [*survivors, victim]
    results: dict[str, bool] = {}
    threads = [threading.Thread(target=lambda c=c: results.__setitem__(c.collector_id, c.run()), daemon=True,
                                name=c.collector_id) for c in members]
    for t in threads:
        t.start()
    started = time.monotonic()
    _wait(lambda: all(c.owned for c in members) and set().union(*(c.owned for c in members)) == everything,
          60, lambda: [sorted(c.owned) for c in members])
    joined_s = time.monotonic() - started
    victim_partitions = set(victim.owned)

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, linger_ms=10, acks="all",
                             max_request_size=4 * 1024 * 1024)
    produced = threading.Event()

    def produce() -> None:  # ~6 s of streaming, so the death lands mid-stream
        for n, (kind, key, raw) in enumerate(stream):
            producer.send(settings.topics[kind.value], key=key, value=raw)
            if n % 1000 == 999:
                time.sleep(0.2)
        producer.flush(timeout=60)
        produced.set()

    threading.Thread(target=produce, daemon=True).start()
    _wait(lambda: victim.stats.batches >= 2, 60, victim.stats.snapshot)
    fault.armed.set()
    _wait(victim.frozen.is_set, 60, lambda: "the victim never wrote another predictions batch")
    died_at = time.monotonic()

    def victim_commits() -> int:
        return store.query("SELECT count() FROM ingest_batches WHERE collector = 'scale-victim' "
                           "AND topic IN {ts:Array(String)}", parameters={"ts": topics}).result_rows[0][0]

    commits_at_death = victim_commits()
    assert commits_at_death >= 2

    # Really mid-write: half of that batch's prediction rows are in the store past the committed offsets.
    committed = dict(((t, p), o) for t, p, o in store.query(
        "SELECT topic, partition, max(next_offset) FROM ingest_batches WHERE topic IN {ts:Array(String)} "
        "GROUP BY topic, partition", parameters={"ts": topics}).result_rows)
    half_by_partition = Counter((t, p) for t, p, _ in fault.half)
    past = {tp: store.query(
        "SELECT count() FROM predictions WHERE topic = {t:String} AND partition = {p:Int32} AND offset >= {o:Int64}",
        parameters={"t": tp[0], "p": tp[1], "o": committed.get(tp, 0)}).result_rows[0][0] for tp in half_by_partition}
    assert len(fault.half) >= 5 and past == dict(half_by_partition)

    # The broker evicts the silent member after the session timeout; the survivors take everything.
    _wait(lambda: set().union(*(c.owned for c in survivors)) == everything, 60,
          lambda: [sorted(c.owned) for c in survivors])
    rebalanced_s = time.monotonic() - died_at
    assert produced.wait(timeout=120)

    def counts() -> dict[str, int]:
        got = {kind.value: store.query(f"SELECT count() FROM {table} WHERE topic = {{t:String}}",
                                       parameters={"t": settings.topics[kind.value]}).result_rows[0][0]
               for kind, table in ((EventKind.PREDICTION, "predictions"), (EventKind.LABEL, "labels"),
                                   (EventKind.METRIC, "infra_metrics"))}
        got["dead"] = store.query("SELECT count() FROM dead_letters WHERE topic IN {ts:Array(String)}",
                                  parameters={"ts": topics}).result_rows[0][0]
        return got

    expected = {k.value: n for k, n in want.items()} | {"dead": n_bad}
    _wait(lambda: counts() == expected, 120, lambda: (counts(), expected))
    drained_s = time.monotonic() - died_at

    def duplicates() -> list[tuple[int, ...]]:
        return [tuple(store.query(
            f"SELECT count() - uniqExact(topic, partition, offset){', count() - uniqExact(event_id)' if ev else ''} "
            f"FROM {table} WHERE topic IN {{ts:Array(String)}}", parameters={"ts": topics}).result_rows[0])
            for table, ev in (("predictions", True), ("labels", True), ("infra_metrics", False), ("dead_letters", False))]

    assert duplicates() == [(0, 0), (0, 0), (0,), (0,)]

    # The zombie wakes up: its stalled insert fails, its retry would roll back from the batch's first
    # offset (deleting the new owner's rows) and rewrite. Fencing must stop it before any of that.
    victim.thawed.set()
    fault.thaw.set()
    threads[-1].join(timeout=60)
    assert not threads[-1].is_alive() and victim.fenced and results["scale-victim"] is False
    time.sleep(1.0)
    assert counts() == expected and duplicates() == [(0, 0), (0, 0), (0,), (0,)]
    assert victim_commits() == commits_at_death  # the zombie committed nothing
    owners = store.query(
        "SELECT topic, partition, argMax(collector, epoch), max(epoch) FROM partition_owners "
        "WHERE topic IN {ts:Array(String)} GROUP BY topic, partition", parameters={"ts": topics}).result_rows
    assert {(t, p) for t, p, _, _ in owners} == everything
    assert {c for _, _, c, _ in owners} <= {"scale-0", "scale-1"}
    assert all(e >= 2 for t, p, _, e in owners if (t, p) in victim_partitions)

    for c in survivors:
        c.stop()
    for t in threads[:2]:
        t.join(timeout=60)
    assert results == {"scale-0": True, "scale-1": True, "scale-victim": False}
    print(f"\nscale-out: {TOTAL} events ({n_bad} malformed) over 3 topics x {PARTITIONS} partitions, "
          f"3 collectors joined in {joined_s:.1f} s; victim held {len(victim_partitions)} partitions and died with "
          f"{len(fault.half)} of a batch's rows written; survivors owned all {len(everything)} partitions "
          f"{rebalanced_s:.1f} s later and had everything in the store {drained_s:.1f} s after the death; "
          f"rows per table {counts()}; duplicates {duplicates()}; the thawed zombie was fenced, 0 commits")
