"""Ingest benchmark: the collector's end-to-end rate against the raw consume rate, in one run.

    python bench/ingest.py [--events 200000] [--features 20] [--partitions 3]

1. Produces N prediction events (F features each) into a fresh topic.
2. (a) baseline: a plain kafka-python consumer, configured like the
   collector's, reads the N records without decoding them.
3. (b) the collector (decode, validate, batch, insert into an embedded
   ClickHouse, checkpoint) reads the same N records; the clock stops when
   the last batch is committed.
   Window states are not built here: the detectors build them per hour.
4. (c) the same with the window states built beside it, as in a service:
   N more events go into a second topic, and while the collector reads them
   a thread builds the states of every hour closed an hour before the
   newest event stored (`driftline.store.window_states.refresh`, once a
   second), competing for the same cores.
5. The hours still open are built, then every hour's states again from
   scratch, timed (`states_build_s`, `build_events_per_s`): the whole
   deferred cost, paid once per hour by the detectors.
The events' timestamps are one second apart, so N=200,000 spans 55 hours.
Clocks start at the first record received, so group-join time is not
counted. The last line is
`RESULT ingest_events_per_s=<c> raw_consume_per_s=<a> ratio=<c/a> ratio_no_states=<b/a> states_build_s=...
build_events_per_s=...`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka import KafkaConsumer, KafkaProducer  # noqa: E402

from collector.local_broker import LocalBroker, ensure_topics  # noqa: E402
from collector.loop import Collector, consumer_config, tune_gc_for_throughput  # noqa: E402
from driftline.config import Settings  # noqa: E402
from driftline.simulate import EPOCH, prediction_payload  # noqa: E402
from driftline.unknown_models import ModelGate  # noqa: E402

MODELS = [f"model-{i}" for i in range(5)]
GATED = True  # --no-registry: the collector without a registry (no model is unknown, no lookup)


def produce(bootstrap: str, topic: str, n: int, features: int) -> float:
    rng = random.Random(1)
    models = MODELS
    payloads = [prediction_payload(i, models[i % 5], n_features=features, rng=rng) for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1024 * 1024, acks=1,
                             max_request_size=8 * 1024 * 1024)
    started = time.perf_counter()
    for i, payload in enumerate(payloads):
        producer.send(topic, key=models[i % 5].encode(), value=payload)
    producer.flush()
    producer.close()
    return n / (time.perf_counter() - started)


def raw_consume(bootstrap: str, topic: str, n: int, settings: Settings) -> float:
    consumer = KafkaConsumer(topic, **consumer_config(settings, group_id=f"raw-{uuid.uuid4().hex[:8]}",
                                                      auto_offset_reset="earliest"))  # a new group: from the start
    got, started = 0, None
    while got < n:
        records = consumer.poll(timeout_ms=1000)
        if records and started is None:
            started = time.perf_counter()
        for messages in records.values():
            got += len(messages)
    elapsed = time.perf_counter() - (started or 0)
    consumer.close()
    return n / elapsed


def collector_rate(settings: Settings, n: int) -> tuple[float, dict[str, object]]:
    # The registry's names, as `up` runs with one: every event's model is checked (one set lookup each).
    collector = Collector(settings, gate=ModelGate(MODELS) if GATED else None)
    runner = threading.Thread(target=collector.run, daemon=True)
    runner.start()
    while collector.stats.consumed == 0:
        time.sleep(0.001)
    started = time.perf_counter()
    while collector.stats.inserted + collector.stats.dead_lettered < n:
        if not runner.is_alive():
            raise SystemExit("the collector stopped early")
        time.sleep(0.002)
    elapsed = time.perf_counter() - started
    collector.stop()
    runner.join()
    return n / elapsed, collector.stats.snapshot()


class StateBuilder(threading.Thread):
    """What the detectors do in a service: build each closed hour's states (an hour of grace)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.settings, self.done, self.hours = settings, threading.Event(), 0

    def run(self) -> None:
        from driftline.store import connect
        from driftline.store.window_states import HOUR, refresh

        client = connect(self.settings)
        while not self.done.wait(1.0):
            newest = dict(client.query("SELECT model, max(ts) FROM predictions GROUP BY model").result_rows)
            for model, ts in newest.items():  # one partition per model: each has its own clock
                closed = ts.replace(minute=0, second=0, microsecond=0, tzinfo=EPOCH.tzinfo) - HOUR
                self.hours += len(refresh(client, model, EPOCH, closed))


def build_all(settings: Settings) -> float:
    from driftline.store import connect
    from driftline.store.window_states import refresh

    client = connect(settings)
    started = time.perf_counter()
    for model in MODELS:
        refresh(client, model, EPOCH, EPOCH + dt.timedelta(days=365))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--batch-max-events", type=int, default=Settings.model_fields["batch_max_events"].default)
    ap.add_argument("--bootstrap-servers", help="use this broker instead of starting a local one")
    ap.add_argument("--gated", action="store_true",
                    help="put the local broker behind the produce gate, as `up` on the embedded default does")
    ap.add_argument("--no-registry", action="store_true", help="run the collector without a registry's model names")
    args = ap.parse_args()
    global GATED
    GATED = not args.no_registry
    tune_gc_for_throughput()  # as the service does; applies to both measurements

    broker = None if args.bootstrap_servers else LocalBroker(gated=args.gated).start()
    bootstrap = args.bootstrap_servers or broker.bootstrap_servers  # type: ignore[union-attr]
    store = Path(tempfile.mkdtemp(prefix="driftline-bench-"))
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        clickhouse_url=f"chdb:{store}", kafka_bootstrap_servers=bootstrap,
        topic_predictions=f"bench-predictions-{tag}", topic_labels=f"bench-labels-{tag}",
        topic_metrics=f"bench-metrics-{tag}", consumer_group=f"bench-{tag}",
        batch_max_events=args.batch_max_events, kafka_session_timeout_ms=6000, kafka_max_poll_interval_ms=10000,
    )
    try:
        ensure_topics(bootstrap, list(settings.topics.values()), args.partitions)
        print(f"producing {args.events} events with {args.features} features ...", flush=True)
        produce_rate = produce(bootstrap, settings.topic_predictions, args.events, args.features)
        print(f"  produced at {produce_rate:,.0f} events/s", flush=True)
        raw = raw_consume(bootstrap, settings.topic_predictions, args.events, settings)
        print(f"  (a) raw kafka-python consume: {raw:,.0f} records/s", flush=True)
        from driftline.store import connect, migrate

        migrate(connect(settings))
        ingest, snap = collector_rate(settings, args.events)
        print(f"  (b) collector into ClickHouse: {ingest:,.0f} events/s  {snap}", flush=True)
        # (c) in a database of its own, so its states are built from its events only.
        built = settings.model_copy(update={"topic_predictions": f"bench-predictions-states-{tag}",
                                            "consumer_group": f"bench-states-{tag}",
                                            "clickhouse_database": "with_states"})
        migrate(connect(built))
        ensure_topics(bootstrap, [built.topic_predictions], args.partitions)
        produce(bootstrap, built.topic_predictions, args.events, args.features)
        builder = StateBuilder(built)
        builder.start()
        with_states, _ = collector_rate(built, args.events)
        builder.done.set()
        builder.join()
        print(f"  (c) the same with closed hours' states built beside it: {with_states:,.0f} events/s "
              f"({builder.hours} hours built meanwhile)", flush=True)
        print(f"  the hours still open then, built after: {build_all(built):.2f} s", flush=True)
        from driftline.store.window_states import TABLE

        connect(built).command(f"TRUNCATE TABLE {TABLE}")
        total_build_s = build_all(built)
        print(f"  every hour's states built again from scratch: {total_build_s:.2f} s", flush=True)
        print(f"RESULT ingest_events_per_s={with_states:.0f} raw_consume_per_s={raw:.0f} ratio={with_states / raw:.3f} "
              f"ratio_no_states={ingest / raw:.3f} states_build_s={total_build_s:.2f} "
              f"build_events_per_s={args.events / total_build_s:.0f}")
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
