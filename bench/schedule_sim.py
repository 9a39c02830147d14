"""Scheduling cost for 1,000 models x 50 features: measured on one real window here, then extrapolated.

    python bench/schedule_sim.py [--models 1000] [--features 50] [--rows 10000] [--repeats 3]

What it measures (a fresh chDB folder in a temporary directory, this process):

1. One model with `--features` features (45 numeric, 5 categorical at the
   default 50), a reference range of `--rows` predictions and a current
   hourly window of `--rows`, generated in SQL. The same again at 4x the rows,
   to split the cost into a fixed part and a per-row part.
2. A real scheduler tick (`DetectorScheduler.tick`: due-window listing, the
   window claim with its settle delay, the drift stage through the real
   detectors, the performance stage, the run records), with every statement
   counted; then `--repeats` more drift runs of the same window (idempotent)
   for the CPU figure; then an idle tick (nothing due), the cost every model
   pays on every tick.
   CPU is `time.process_time()`, which on the embedded engine includes
   ClickHouse's own threads (chDB runs in-process); against a server that
   part moves to the ClickHouse cluster.
3. The extrapolation: per model-window CPU at the measured rows, models x
   that per window length, and the detector workers (2 cores each, as this
   machine, kept at most 50% busy) needed to keep up with hourly and
   10-minute windows. The claim settle delay is wall time, not CPU: a worker
   thread waits it once per tick with due windows, so it sets how many
   threads (`DRIFTLINE_DETECTOR_WORKERS`) a worker needs, which is printed too.

Last line: `RESULT models=... features=... window_s=3600 per_model_s=... workers_needed=...`
(per_model_s: CPU seconds of one model-window at `--rows`; workers_needed: for hourly windows).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)
# Recent hours, so that the tables' retention TTLs keep the rows.
CUR_START = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - 3 * HOUR
REF_START = CUR_START - dt.timedelta(days=1)
CORES_PER_WORKER = 2
TARGET_BUSY = 0.5
SETTLE_S = 0.5


def feature_names(n: int) -> tuple[list[str], list[str]]:
    n_cat = max(1, n // 10)
    return [f"f{i}" for i in range(n - n_cat)], [f"c{i}" for i in range(n_cat)]


def registry_yaml(model: str, numeric: list[str], categorical: list[str]) -> str:
    features = ", ".join([f"{n}: numeric" for n in numeric] + [f"{n}: categorical" for n in categorical])
    return f"""\
models:
  - name: {model}
    task: binary_classification
    features: {{{features}}}
    reference:
      range: {{start: {REF_START:%Y-%m-%dT%H:%M:%SZ}, end: {(REF_START + HOUR):%Y-%m-%dT%H:%M:%SZ}}}
    window: 1h
    schedule: {{interval: 1h}}
"""


def load(client: Any, model: str, numeric: list[str], categorical: list[str], rows: int) -> None:
    """`rows` reference predictions (one hour) and `rows` current ones (the window), hashed values, in SQL."""
    variant = "Variant(Float64, String)"
    u = "((toFloat64(sipHash64(number, {k}, {j})) + 0.5) / 18446744073709551616.0)"
    parts = []
    for k, name in enumerate(numeric):
        z = f"(sqrt(-2.0 * log({u.format(k=k, j=0)})) * cos(2.0 * pi() * {u.format(k=k, j=1)}))"
        shift = "if(cur, 0.3, 0.0)" if k % 5 == 0 else "0.0"  # a fifth of the features drift
        parts.append(f"'{name}', CAST({k} + {z} + {shift} AS {variant})")
    for k, name in enumerate(categorical, start=len(numeric)):
        parts.append(f"'{name}', CAST(concat('v', toString(toUInt8(floor(8 * pow({u.format(k=k, j=2)}, 2))))) AS {variant})")
    for start, cur in ((REF_START, 0), (CUR_START, 1)):
        client.command(f"""
            INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, features,
                                     prediction, proba, latency_ms)
            SELECT 'sim', {cur}, toInt64(number), concat('{model}-', toString({cur}), '-', toString(number)),
                   '{model}', 'v1',
                   fromUnixTimestamp64Milli(toInt64({int(start.timestamp() * 1000)} + intDiv(number * 3600000, {rows})), 'UTC'),
                   map({", ".join(parts)}),
                   CAST(if({u.format(k=999, j=0)} < 0.3, '1', '0') AS {variant}),
                   map('1', {u.format(k=999, j=0)}, '0', 1.0 - {u.format(k=999, j=0)}),
                   NULL
            FROM (SELECT number, {cur} AS cur FROM numbers({rows}))
            SETTINGS cast_string_to_variant_use_inference = 0""")
    # Labels for every prediction (the prediction itself with 10% flipped): the performance stage has work too.
    client.command(f"""
        INSERT INTO labels (topic, partition, offset, event_id, model, ts, label)
        SELECT topic, partition, offset, event_id, model, ts,
               CAST(if(sipHash64(event_id) % 10 = 0, if(variantElement(prediction, 'String') = '1', '0', '1'),
                       variantElement(prediction, 'String')) AS {variant})
        FROM predictions WHERE model = '{model}'
        SETTINGS cast_string_to_variant_use_inference = 0""")
    client.command("OPTIMIZE TABLE predictions FINAL")


class Counting:
    """The real client, counting the statements sent through it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.statements = 0

    def query(self, *a: Any, **k: Any) -> Any:
        self.statements += 1
        return self._client.query(*a, **k)

    def command(self, *a: Any, **k: Any) -> Any:
        self.statements += 1
        return self._client.command(*a, **k)

    def insert(self, *a: Any, **k: Any) -> Any:
        self.statements += 1
        return self._client.insert(*a, **k)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def measure(raw: Any, folder: Path, rows: int, features: int, repeats: int) -> dict[str, float]:
    from detectors.config import load_registry
    from detectors.run import run_stage
    from detectors.schedule import DetectorScheduler
    from detectors.sources import Window
    model_name = f"sim{rows}"
    numeric, categorical = feature_names(features)
    registry_path = folder / f"{model_name}.yaml"
    registry_path.write_text(registry_yaml(model_name, numeric, categorical))
    registry = load_registry(registry_path)
    model = registry.get(model_name)
    load(raw, model_name, numeric, categorical, rows)
    client = Counting(raw)
    scheduler = DetectorScheduler(registry, lambda: client, grace=dt.timedelta(0), catchup_windows=1,  # type: ignore[arg-type, return-value]
                                  claim_settle=dt.timedelta(seconds=SETTLE_S), worker_id="sim")
    now = CUR_START + HOUR + dt.timedelta(seconds=1)

    c0, w0 = time.process_time(), time.perf_counter()
    results = scheduler.tick(model, now=now)
    tick_cpu, tick_wall, tick_statements = time.process_time() - c0, time.perf_counter() - w0, client.statements
    drift = [r for r in results if r.stage == "drift"]
    statuses = sorted((r.stage, r.status) for r in results)
    assert statuses == [("drift", "ok"), ("performance", "ok")], [(r.stage, r.status, r.error) for r in results]

    window = Window(CUR_START, CUR_START + HOUR)
    cpus, walls = [], []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        run_stage(client, model, window, "drift")  # type: ignore[arg-type]
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)

    client.statements = 0
    c0 = time.process_time()
    assert scheduler.tick(model, now=now) == []  # nothing due: the listing cost of every tick
    idle_cpu, idle_statements = time.process_time() - c0, client.statements
    return {
        "rows": rows, "tick_cpu_s": tick_cpu, "tick_wall_s": tick_wall, "tick_statements": tick_statements,
        "drift_cpu_s": sorted(cpus)[len(cpus) // 2], "drift_wall_s": sorted(walls)[len(walls) // 2],
        "rows_scanned": drift[0].rows_scanned, "drifted": len(drift[0].drifted_columns),
        "idle_cpu_s": idle_cpu, "idle_statements": idle_statements,
        "perf_cpu_s": max(0.0, tick_cpu - sorted(cpus)[len(cpus) // 2]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--rows", type=int, default=10_000, help="rows per window (and in the reference)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from collector.loop import tune_gc_for_throughput

    tune_gc_for_throughput()
    from driftline.config import Settings
    from driftline.store import connect, migrate

    tmp = Path(tempfile.mkdtemp(prefix="driftline-schedsim-"))
    try:
        raw = connect(Settings(clickhouse_url=f"chdb:{tmp / 'store'}"))  # one chDB folder per process
        migrate(raw)
        small = measure(raw, tmp, args.rows, args.features, args.repeats)
        large = measure(raw, tmp, args.rows * 4, args.features, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; "
          f"{args.features} features ({len(feature_names(args.features)[1])} categorical)")
    print(f"{'rows/window':>12} {'tick stmts':>10} {'tick wall s':>11} {'tick cpu s':>10} {'drift cpu s':>11} "
          f"{'drift wall s':>12} {'rows scanned':>12} {'drifted':>7} {'idle stmts':>10} {'idle cpu s':>10}")
    for m in (small, large):
        print(f"{m['rows']:>12} {m['tick_statements']:>10} {m['tick_wall_s']:>11.3f} {m['tick_cpu_s']:>10.3f} "
              f"{m['drift_cpu_s']:>11.3f} {m['drift_wall_s']:>12.3f} {m['rows_scanned']:>12} {m['drifted']:>7} "
              f"{m['idle_statements']:>10} {m['idle_cpu_s']:>10.4f}")

    # Per model-window CPU = fixed + per-row x rows (both stages and the bookkeeping: the whole tick).
    per_row = max(0.0, (large["tick_cpu_s"] - small["tick_cpu_s"]) / (large["rows"] - small["rows"]))
    fixed = max(0.0, small["tick_cpu_s"] - per_row * small["rows"])
    per_model = small["tick_cpu_s"]
    print(f"\nper model-window CPU ~= {fixed:.3f} s + {per_row * 1e6:.2f} us x rows "
          f"(at {args.rows} rows: {per_model:.3f} s; one tick also waits {SETTLE_S} s for the claim settle)")
    print(f"\n{'window':>8} {'rows/window':>11} {'stmts/window':>12} {'cpu s/window':>12} {'busy cores':>10} "
          f"{'workers':>7} {'threads/worker':>14}")
    needed: dict[int, int] = {}
    for window_s in (3600, 600):
        for rows in (args.rows, args.rows * 10):
            cpu = args.models * (fixed + per_row * rows)
            busy = cpu / window_s
            workers = max(1, math.ceil(busy / (CORES_PER_WORKER * TARGET_BUSY)))
            # wall per model-window: its CPU spread over the worker's cores, plus the settle wait
            wall = (fixed + per_row * rows) + SETTLE_S
            threads = max(1, math.ceil(args.models / workers * wall / (window_s * TARGET_BUSY)))
            if rows == args.rows:
                needed[window_s] = workers
            print(f"{window_s:>7}s {rows:>11} {args.models * small['tick_statements']:>12} {cpu:>12.0f} {busy:>10.2f} "
                  f"{workers:>7} {threads:>14}")
    print(f"idle ticks: {args.models} models x {small['idle_statements']} statements x ticks per window "
          f"(interval = window: {args.models * small['idle_statements']} statements per window, "
          f"{args.models * small['idle_cpu_s']:.1f} CPU s)")
    print(f"RESULT models={args.models} features={args.features} window_s=3600 per_model_s={per_model:.3f} "
          f"workers_needed={needed[3600]} workers_needed_10min={needed[600]} rows={args.rows}")


if __name__ == "__main__":
    main()
