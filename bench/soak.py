"""Soak benchmark: a sustained stream through the collector while the detector scheduler runs.

    python bench/soak.py [--duration 5m] [--rate R] [--warmup 15s] [--models 3] [--features 10]

Why: a burst benchmark (bench/ingest.py) says how fast the collector drains a
backlog; a monitoring service must also keep up for hours with detection
running beside it, without its memory creeping up. This runs, in one process
like `driftline up` on the embedded store: a local broker (tansu), the
collector and the detector scheduler (models with 1-minute windows, a rolling
reference one window back) on a temporary chDB folder. The producer is a
child process, so its CPU does not share this process's GIL.

1. Warm-up: the producer sends as fast as it can for --warmup; the rate
   the collector stores at while the producer runs beside it (both on the
   same cores) is measured. Unless --rate is given, the soak rate is 60% of
   it: the rest is the scheduler's share (at 80% the backlog grew here once
   detection ran on the 1-minute windows).
2. Soak: the producer paces --rate events/s for --duration. Every event's
   `ts` is the wall-clock time it was produced; the predictions table stamps
   `ingested_at` (now64) when the insert lands, so ingested_at - ts is each
   event's produce-to-visible lag, collected exactly (10 ms buckets) by
   ClickHouse itself.
3. Every --sample-every seconds a row: produced, stored, backlog, lag
   p50/p99 of the interval, RSS of this process (psutil if installed, else
   /proc/self/status) and its parts: the memory ClickHouse tracks
   (system.metrics MemoryTracking) and its allocator's resident pages
   (chDB's own jemalloc: tracked memory plus freed pages not yet returned),
   glibc's heap in use and free in its arenas (mallinfo2: Python's larger
   objects, numpy, kafka-python); RSS of the local broker's process,
   detector runs so far, the predictions table's active parts and the
   merges running (a merge of large parts takes CPU from ingest). The rest
   of the RSS is mapped code (about 300 MB, constant), Python's small-object
   arenas and thread stacks.
4. The detector scheduler's clients are made as `up` makes them
   (`detectors.priority.detector_clients`): their queries run behind ingest.

The last line is
`RESULT events_per_s=... lag_p50_s=... lag_p99_s=... rss_growth_mb_per_min=... detector_run_p95_s=...`
where rss_growth is the least-squares slope of RSS over the soak samples after
--settle, and broker_rss_growth the same for the local broker's process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.broker_recycling import BrokerRecycling  # noqa: E402
from collector.local_broker import LocalBroker, ensure_topics  # noqa: E402
from collector.loop import Collector, tune_gc_for_throughput  # noqa: E402
from driftline.config import Settings  # noqa: E402
from driftline.durations import parse_duration  # noqa: E402
from driftline.heap import heap_mb, start_heap_trimmer  # noqa: E402

UTC = dt.timezone.utc
LAG_BUCKET_MS = 10


def produce(bootstrap: str, topic: str, models: list[str], features: int, rate: float | None, seconds: float,
            produced: "mp.sharedctypes.Synchronized[int]", seed: int) -> None:
    """Child process: send predictions stamped with the wall clock; `rate=None` sends as fast as possible."""
    import random

    from kafka import KafkaProducer

    from driftline.contracts import PredictionEvent, encode_event

    rng = random.Random(seed)
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=512 * 1024, acks=1,
                             max_request_size=8 * 1024 * 1024)
    # Bodies are encoded once by the contract's own encoder; per event only the id and the ts change,
    # so the child's CPU goes to Kafka, not to building JSON.
    bodies = []
    for _ in range(1000):
        values: dict[str, float | str | None] = {f"f{f}": round(rng.gauss(0.0, 1.0), 4) for f in range(features - 1)}
        values[f"f{features - 1}"] = rng.choice(("a", "b", "c"))
        p = rng.random()
        encoded = encode_event(PredictionEvent(event_id="", model="m", model_version="1", ts=dt.datetime.now(UTC),
                                               features=values, prediction=round(p, 4),
                                               proba={"0": round(1 - p, 4), "1": round(p, 4)}))
        bodies.append(encoded[encoded.index(b',"features"'):])
    heads = [(m.encode(), b'{"event_id":"%s-%d-%%d","model":"%s","model_version":"1","ts":"%%s"'
              % (m.encode(), seed, m.encode())) for m in models]
    started = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - started
        if elapsed >= seconds:
            break
        due = 500 if rate is None else int(rate * elapsed) - sent
        if due <= 0:
            time.sleep(0.002)
            continue
        ts = dt.datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z").encode()
        for _ in range(min(due, 2000)):
            key, head = heads[sent % len(heads)]
            producer.send(topic, key=key, value=(head % (sent, ts)) + bodies[sent % 1000])
            sent += 1
        produced.value = sent
    producer.flush()
    producer.close()
    produced.value = sent


def rss_mb() -> float:
    """Resident set size of this process (chDB lives in it too)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("cannot read RSS")


def engine_mb(client: Any) -> float:
    """Memory ClickHouse itself tracks (caches, parts, queries): the part of the RSS that is the engine's."""
    rows = client.query("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'").result_rows
    return rows[0][0] / 2**20 if rows else float("nan")


_JEMALLOC_RESIDENT = re.compile(r"Allocated: \d+, active: \d+, metadata: \d+.*?, resident: (\d+)")


def engine_resident_mb(client: Any) -> float:
    """The engine's allocator's resident pages (chDB links its own jemalloc): tracked memory plus pages freed
    but not yet returned (jemalloc returns them over `dirty_decay_ms`, 5 s in chDB), which is most of the
    RSS's swing from one sample to the next."""
    text = str(client.query("SELECT * FROM system.jemalloc_stats").result_rows[0][0])
    found = _JEMALLOC_RESIDENT.search(text)
    return int(found.group(1)) / 2**20 if found else float("nan")


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 60


def quantile(hist: Counter[int], q: float) -> float:
    """The q-quantile (seconds) of a histogram of LAG_BUCKET_MS buckets (upper bucket edge: a bound, not a guess)."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= q * total:
            return (bucket + 1) * LAG_BUCKET_MS / 1000
    return (max(hist) + 1) * LAG_BUCKET_MS / 1000


def lag_histogram(client, models: list[str], since: dt.datetime, until: dt.datetime,  # type: ignore[no-untyped-def]
                  lo: dt.datetime | None = None) -> Counter[int]:
    """Lag buckets of the rows that became visible in (since, until] with ts >= lo (default: 10 minutes
    before since, a bound that lets the (model, ts) key prune)."""
    rows = client.query(
        "SELECT intDiv(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts), {b:UInt32}) AS bucket, "
        "count() FROM predictions WHERE model IN {m:Array(String)} AND ts >= {lo:DateTime64(3, 'UTC')} "
        "AND ingested_at > {since:DateTime64(3, 'UTC')} AND ingested_at <= {until:DateTime64(3, 'UTC')} "
        "GROUP BY bucket",
        parameters={"b": LAG_BUCKET_MS, "m": models, "lo": lo or since - dt.timedelta(minutes=10), "since": since,
                    "until": until}).result_rows
    return Counter({int(b): int(n) for b, n in rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", default="5m", help="soak length (e.g. 60s, 5m)")
    ap.add_argument("--rate", type=float, help="events/s; default: 60%% of the rate stored during the warm-up")
    ap.add_argument("--warmup", default="15s", help="length of the as-fast-as-possible warm-up")
    ap.add_argument("--models", type=int, default=3)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--broker-max-mb", type=int, help="local_broker_max_mb (default: the setting's default; 0: never)")
    ap.add_argument("--settle", default="3m", help="the RSS slopes leave out the soak's first SETTLE (caches filling)")
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()
    duration = parse_duration(args.duration).total_seconds()
    warmup = parse_duration(args.warmup).total_seconds()
    tune_gc_for_throughput()  # as the service does
    trimming = threading.Event()

    from detectors.config import registry_from_yaml
    from detectors.priority import detector_clients
    from detectors.schedule import DetectorScheduler
    from driftline.store import connect, migrate
    from driftline.yamlfile import LocatedYaml

    broker = LocalBroker(gated=True).start()  # as `up` runs it
    store = Path(tempfile.mkdtemp(prefix="driftline-soak-"))
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        clickhouse_url=f"chdb:{store}", kafka_bootstrap_servers=broker.bootstrap_servers,
        topic_predictions=f"soak-predictions-{tag}", topic_labels=f"soak-labels-{tag}",
        topic_metrics=f"soak-metrics-{tag}", consumer_group=f"soak-{tag}",
        kafka_session_timeout_ms=6000, kafka_max_poll_interval_ms=10000,
    )
    models = [f"soak-{i}" for i in range(args.models)]
    features = {f"f{f}": ("categorical" if f == args.features - 1 else "numeric") for f in range(args.features)}
    registry = registry_from_yaml(LocatedYaml(Path("soak"), {"models": [
        {"name": m, "task": "binary_classification", "features": features, "window": "1m",
         "reference": {"rolling": {"offset": "1m"}}} for m in models]}))
    ctx = mp.get_context("spawn")
    collector = scheduler = None
    try:
        ensure_topics(broker.bootstrap_servers, list(settings.topics.values()), args.partitions)
        migrate(connect(settings))
        client = connect(settings)
        # As `up` runs it: the local broker swapped for an empty one past local_broker_max_mb.
        recycling = BrokerRecycling(broker, list(settings.topics.values()), args.partitions,
                                    args.broker_max_mb if args.broker_max_mb is not None else settings.local_broker_max_mb)
        collector = Collector(settings, recycling=recycling, sole_reader=True)
        runner = threading.Thread(target=collector.run, name="collector", daemon=True)
        runner.start()

        # 1. warm-up: the drain rate of a backlog, timed from the first stored batch to the last.
        produced = ctx.Value("q", 0)
        child = ctx.Process(target=produce, args=(broker.bootstrap_servers, settings.topic_predictions, models,
                                                  args.features, None, warmup, produced, 1), daemon=True)
        child.start()
        while collector.stats.inserted == 0:
            if not runner.is_alive():
                raise SystemExit("the collector stopped")
            time.sleep(0.01)
        t0, n0 = time.monotonic(), collector.stats.inserted
        child.join()
        t1, n1 = time.monotonic(), collector.stats.inserted
        concurrent = (n1 - n0) / (t1 - t0)  # stored while the producer was sending: both share the cores
        deadline = time.monotonic() + 300
        while collector.stats.inserted < produced.value and time.monotonic() < deadline:
            time.sleep(0.01)
        drain = (collector.stats.inserted - n1) / max(1e-9, time.monotonic() - t1)
        rate = args.rate or 0.6 * concurrent
        print(f"warm-up: {produced.value:,} events produced as fast as possible; the collector stored "
              f"{concurrent:,.0f} events/s while the producer ran, then drained the backlog at {drain:,.0f} "
              f"events/s; soak rate {rate:,.0f} events/s for {duration:.0f} s", flush=True)

        # 2. the scheduler runs detection every minute on the live windows, beside the collector.
        scheduler = DetectorScheduler(registry, detector_clients(settings), grace=dt.timedelta(seconds=2),
                                      catchup_windows=2, workers=settings.detector_workers)
        scheduler.start()
        start_heap_trimmer(settings.heap_trim_seconds, trimming)  # as `up` does

        base = collector.stats.inserted
        produced = ctx.Value("q", 0)
        child = ctx.Process(target=produce, args=(broker.bootstrap_servers, settings.topic_predictions, models,
                                                  args.features, rate, duration, produced, 2), daemon=True)
        soak_start_wall = dt.datetime.now(UTC)
        soak_start = time.monotonic()
        child.start()
        hist: Counter[int] = Counter()
        rss: list[tuple[float, float]] = []
        broker_rss: list[tuple[float, float]] = []
        engine_rss: list[tuple[float, float]] = []  # where the service's RSS goes: the engine's own tracking,
        heap_rss: list[tuple[float, float]] = []  # and glibc's heap (Python, numpy, kafka-python)
        engine_res: list[tuple[float, float]] = []  # the engine's allocator's resident pages
        heap_free: list[tuple[float, float]] = []  # glibc's free bytes in its arenas
        last_wall = soak_start_wall
        print(f"{'t_s':>6} {'produced':>10} {'stored':>10} {'backlog':>8} {'ev/s':>8} {'lag_p50_s':>9} "
              f"{'lag_p99_s':>9} {'rss_mb':>8} {'engine_mb':>9} {'eng_res':>7} {'heap_mb':>8} {'heap_free':>9} "
              f"{'broker_mb':>9} {'det_runs':>8} "
              f"{'parts':>5} {'merges':>6}", flush=True)
        prev_stored, prev_t = 0, 0.0
        while True:
            time.sleep(args.sample_every)
            t = time.monotonic() - soak_start
            now_wall = dt.datetime.now(UTC)
            stored = collector.stats.inserted - base
            interval = lag_histogram(client, models, last_wall, now_wall)
            hist += interval
            last_wall = now_wall
            runs = client.query("SELECT count() FROM detector_runs WHERE started_at >= {s:DateTime64(3, 'UTC')}",
                                parameters={"s": soak_start_wall}).result_rows[0][0]
            mem, broker_mem = rss_mb(), broker.memory_mb() or float("nan")  # what `up` reads to decide a swap
            engine, resident, (heap, free) = engine_mb(client), engine_resident_mb(client), heap_mb()
            parts, merging = client.query(
                "SELECT (SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'predictions' "
                "AND active), (SELECT count() FROM system.merges WHERE database = currentDatabase())").result_rows[0]
            rss.append((t, mem))
            engine_rss.append((t, engine))
            heap_rss.append((t, heap))
            engine_res.append((t, resident))
            heap_free.append((t, free))
            broker_rss.append((t, broker_mem))
            p = produced.value
            print(f"{t:6.0f} {p:10,} {stored:10,} {p - stored:8,} {(stored - prev_stored) / (t - prev_t):8,.0f} "
                  f"{quantile(interval, 0.5):9.2f} {quantile(interval, 0.99):9.2f} {mem:8.0f} {engine:9.0f} {resident:7.0f} "
                  f"{heap:8.0f} {free:9.0f} "
                  f"{broker_mem:9.0f} {runs:8} {parts:5} {merging:6}",
                  flush=True)
            prev_stored, prev_t = stored, t
            if not runner.is_alive():
                raise SystemExit("the collector stopped")
            if not child.is_alive() and (stored >= p or t > duration + 120):
                break
        elapsed_produce = duration
        # The result's lag: every soak row at once (the per-interval figures above are for the table only).
        hist = lag_histogram(client, models, soak_start_wall - dt.timedelta(minutes=1),
                             dt.datetime.now(UTC) + dt.timedelta(minutes=1), lo=soak_start_wall)
        stored = collector.stats.inserted - base
        lost = produced.value - stored
        visible = client.query("SELECT count() FROM predictions WHERE ts >= {s:DateTime64(3, 'UTC')}",
                               parameters={"s": soak_start_wall}).result_rows[0][0]

        runs = client.query(
            "SELECT duration_ms / 1000, status FROM detector_runs WHERE started_at >= {s:DateTime64(3, 'UTC')}",
            parameters={"s": soak_start_wall}).result_rows
        durations = sorted(r[0] for r in runs)
        statuses = Counter(r[1] for r in runs)
        p95 = durations[min(len(durations) - 1, int(0.95 * len(durations)))] if durations else float("nan")
        settle = parse_duration(args.settle).total_seconds()

        def settled_slope(points: list[tuple[float, float]]) -> float:
            return slope_per_min([p for p in points if p[0] >= settle] or points)

        growth, broker_growth = settled_slope(rss), settled_slope(broker_rss)
        print(f"soak: {produced.value:,} produced at {rate:,.0f}/s target, {stored:,} stored "
              f"({lost} missing), {visible:,} rows visible, {sum(hist.values()):,} lag samples", flush=True)
        print(f"rss: first {rss[0][1]:.0f} MB, last {rss[-1][1]:.0f} MB, max {max(m for _, m in rss):.0f} MB, "
              f"slope after {settle:.0f} s {growth:+.2f} MB/min", flush=True)
        print(f"of which the engine's tracked memory: first {engine_rss[0][1]:.0f} MB, last {engine_rss[-1][1]:.0f} MB, "
              f"slope {settled_slope(engine_rss):+.2f} MB/min; glibc heap in use: first {heap_rss[0][1]:.0f} MB, "
              f"last {heap_rss[-1][1]:.0f} MB, slope {settled_slope(heap_rss):+.2f} MB/min", flush=True)
        print(f"the engine's allocator resident (tracked + freed pages not yet returned): mean "
              f"{statistics.fmean(m for _, m in engine_res):.0f} MB, min {min(m for _, m in engine_res):.0f}, "
              f"max {max(m for _, m in engine_res):.0f}, slope {settled_slope(engine_res):+.2f} MB/min; glibc free "
              f"in arenas (resident unless trimmed): mean {statistics.fmean(m for _, m in heap_free):.0f} MB, slope "
              f"{settled_slope(heap_free):+.2f} MB/min", flush=True)
        print(f"local broker rss: first {broker_rss[0][1]:.0f} MB, last {broker_rss[-1][1]:.0f} MB, "
              f"slope after {settle:.0f} s {broker_growth:+.2f} MB/min", flush=True)
        if durations:
            print(f"detector runs: {len(durations)} ({dict(statuses)}), duration p50 "
                  f"{statistics.median(durations):.3f} s, p95 {p95:.3f} s, max {durations[-1]:.3f} s", flush=True)
        else:
            print("detector runs: none in the soak (is it shorter than a window plus grace?)", flush=True)
        print(f"RESULT events_per_s={stored / elapsed_produce:.0f} lag_p50_s={quantile(hist, 0.5):.2f} "
              f"lag_p99_s={quantile(hist, 0.99):.2f} rss_growth_mb_per_min={growth:.2f} "
              f"broker_rss_growth_mb_per_min={broker_growth:.2f} broker_rss_mb={broker_rss[-1][1]:.0f} "
              f"broker_rss_max_mb={max(m for _, m in broker_rss):.0f} broker_replacements={recycling.replaced} "
              f"detector_run_p95_s={p95:.3f}")
    finally:
        trimming.set()
        if scheduler is not None:
            scheduler.stop(wait=True)
        if collector is not None:
            collector.stop()
        broker.stop()
        shutil.rmtree(store, ignore_errors=True)


if __name__ == "__main__":
    main()
