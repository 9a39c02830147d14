"""Window-states benchmark: a 30-day window's drift from the mergeable states against a scan of its raw rows.

    python bench/windows.py [--rows 50000000] [--days 30] [--seed 7] [--keep]
    python bench/windows.py --rows 2000000          # a quick run

One model (`bench`), 18 numeric features (f0..f17) and 2 categorical ones
(c0, c1) drawn as in bench/detect.py (same generators, same injected drift:
f0..f4 mean shift, f5..f6 variance x1.5, c0 frequencies; the rest unchanged).
The reference is the production day before the window (2026-01-01, at the
window's daily rate, `--rows / --days` rows); the current window is the
`--days` days after it with `--rows` rows.

1. Load (not timed): a child process generates the rows in SQL
   (`INSERT ... SELECT FROM numbers()`, 1M rows per insert, with progress),
   then `OPTIMIZE ... FINAL`; the window states of every hour are built (as
   the first detection reading them would; the time is printed) and
   optimized too, so both paths read settled parts.
2. States (timed): a fresh child process runs `run_stage(..., "drift")` on the
   window with `drift.window_states: true`; its path must be `states`.
3. Raw (timed): a fresh child process runs the same detection with
   `drift.window_states: false` (every column from raw rows).
4. Per-feature table: method, both scores, their relative difference, both
   verdicts. The verdicts (and the dataset verdict) must be equal, else the
   exit code is 1.

The last line is `RESULT states_s=<a> raw_s=<b> speedup=<b/a>`. The store
folder is deleted at the end unless --keep is given. Cost of the full run on
2 cores: see docs/evidence.md ("Window states against raw rows").
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.detect import VARIANT, feature_sql, fmt, max_rss_mb, open_store  # noqa: E402

MODEL = "bench"
REFERENCE_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CURRENT_START = datetime(2026, 1, 2, tzinfo=timezone.utc)
INSERT_CHUNK = 1_000_000

NUMERIC = [f"f{i}" for i in range(18)]
CATEGORICAL = ["c0", "c1"]
FEATURES = NUMERIC + CATEGORICAL
INJECTED = {"f0", "f1", "f2", "f3", "f4", "f5", "f6", "c0"}


def registry_yaml(days: int, states: bool) -> str:
    features = ", ".join([f"{n}: numeric" for n in NUMERIC] + [f"{n}: categorical" for n in CATEGORICAL])
    return f"""\
models:
  - name: {MODEL}
    task: binary_classification
    features: {{{features}}}
    reference:
      range: {{start: {REFERENCE_START:%Y-%m-%dT%H:%M:%SZ}, end: {CURRENT_START:%Y-%m-%dT%H:%M:%SZ}}}
    window: {days}d
    drift: {{prediction: true, target: false, window_states: {str(states).lower()}}}
    multivariate: {{enabled: false}}   # both read the window's rows (samples, a pass over every row):
    estimation: {{enabled: false}}     # timed here is the univariate drift that states can serve
"""


def reference_rows(rows: int, days: int) -> int:
    return rows // days


def insert_sql(rows: int, days: int, seed: int, first: int, count: int) -> str:
    """INSERT rows [first, first + count): the reference day's rows first, then the window's, spread evenly in time."""
    ref = reference_rows(rows, days)
    features = ", ".join(f"'{name}', CAST({feature_sql(name, k, seed)} AS {VARIANT})" for k, name in enumerate(FEATURES))
    ref_ms, cur_ms = int(REFERENCE_START.timestamp() * 1000), int(CURRENT_START.timestamp() * 1000)
    span_ms = days * 86_400_000
    p = f"((toFloat64(sipHash64({seed}, number, 99, 0)) + 0.5) / 18446744073709551616.0)"
    return f"""
        INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, features,
                                 prediction, proba, latency_ms)
        SELECT 'bench', 0, toInt64(number), concat('e', toString(number)), '{MODEL}', 'v1',
               fromUnixTimestamp64Milli(toInt64(if(cur, {cur_ms} + intDiv((number - {ref}) * {span_ms}, {rows}),
                                                         {ref_ms} + intDiv(number * 86400000, {ref}))), 'UTC'),
               map({features}),
               CAST(if({p} < if(cur, 0.4, 0.3), '1', '0') AS {VARIANT}),
               map('1', {p}, '0', 1.0 - {p}),
               NULL
        FROM (SELECT number, number >= {ref} AS cur FROM numbers({first}, {count}))
        SETTINGS cast_string_to_variant_use_inference = 0
    """


def child_load(store: Path, rows: int, days: int, seed: int) -> dict[str, Any]:
    from driftline.store import window_states as ws

    client = open_store(store)
    total = reference_rows(rows, days) + rows
    t0 = time.perf_counter()
    for first in range(0, total, INSERT_CHUNK):
        count = min(INSERT_CHUNK, total - first)
        client.command(insert_sql(rows, days, seed, first, count))
        done = min(first + INSERT_CHUNK, total)
        elapsed = time.perf_counter() - t0
        print(f"  loaded {done:,}/{total:,} rows ({elapsed:.0f} s, {done / elapsed:,.0f} rows/s)", file=sys.stderr,
              flush=True)
    t1 = time.perf_counter()
    client.command("OPTIMIZE TABLE predictions FINAL")
    t2 = time.perf_counter()
    ws.refresh(client, MODEL, REFERENCE_START, REFERENCE_START + timedelta(days=days + 1))  # as a first detection
    t3 = time.perf_counter()
    client.command(f"OPTIMIZE TABLE {ws.TABLE} FINAL")
    sizes = {str(t): (int(r), int(b)) for t, r, b in client.query(
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() "
        "AND table IN ('predictions', {s:String}) GROUP BY table", parameters={"s": ws.TABLE}).result_rows}
    return {"rows": total, "insert_s": t1 - t0, "optimize_s": t2 - t1, "states_build_s": t3 - t2, "sizes": sizes,
            "peak_rss_mb": max_rss_mb()}


def child_detect(store: Path, days: int, states: bool) -> dict[str, Any]:
    from detectors.config import load_registry
    from detectors.run import run_stage
    from detectors.sources import Window

    path = store.parent / f"models-{'states' if states else 'raw'}.yaml"
    path.write_text(registry_yaml(days, states))
    model = load_registry(path).get(MODEL)
    client = open_store(store)
    window = Window(CURRENT_START, CURRENT_START + timedelta(days=days))
    t0 = time.perf_counter()
    result = run_stage(client, model, window, "drift")
    wall = time.perf_counter() - t0
    columns = client.query(
        "SELECT column, method, score, drifted, exact FROM drift_results WHERE run_id = {r:UUID}",
        parameters={"r": result.run_id}).result_rows
    return {"s": wall, "status": result.status, "error": result.error, "path": result.drift_path,
            "rows_scanned": result.rows_scanned, "dataset_drifted": result.dataset_drifted,
            "peak_rss_mb": max_rss_mb(),
            "columns": {str(c): {"method": m, "score": s, "drifted": bool(d), "exact": bool(e)}
                        for c, m, s, d, e in columns}}


def run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], check=False, stdout=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="rows in the window (the reference day adds 1/days)")
    parser.add_argument("--days", type=int, default=30, help="days in the window")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the store folder")
    parser.add_argument("--child", choices=["load", "states", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.days < 1 or args.rows < args.days * 100:
        parser.error("need --days >= 1 and at least 100 rows per day")

    if args.child:
        report = (child_load(args.store, args.rows, args.days, args.seed) if args.child == "load"
                  else child_detect(args.store, args.days, args.child == "states"))
        print(json.dumps(report))
        return

    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-windows-"))
    store = workdir / "store"
    common = ["--store", str(store), "--rows", str(args.rows), "--days", str(args.days), "--seed", str(args.seed)]
    try:
        print(f"bench/windows.py rows={args.rows:,} over {args.days} days (+{reference_rows(args.rows, args.days):,} "
              f"reference rows), {len(FEATURES)} features, store={store}", flush=True)
        load = run_child(["--child", "load", *common])
        sizes = ", ".join(f"{t} {r:,} rows {b / 2**20:,.0f} MiB" for t, (r, b) in sorted(load["sizes"].items()))
        print(f"load: {load['rows']:,} rows in {load['insert_s']:.0f} s, optimize {load['optimize_s']:.0f} s, "
              f"window states built in {load['states_build_s']:.1f} s; {sizes}",
              flush=True)
        states = run_child(["--child", "states", *common])
        print(f"states: {states['s']:.2f} s path={states['path']} status={states['status']} "
              f"rows_scanned={states['rows_scanned']:,} peak_rss_mb={states['peak_rss_mb']:.0f}", flush=True)
        raw = run_child(["--child", "raw", *common])
        print(f"raw:    {raw['s']:.2f} s path={raw['path']} status={raw['status']} "
              f"rows_scanned={raw['rows_scanned']:,} peak_rss_mb={raw['peak_rss_mb']:.0f}", flush=True)
        for run in (states, raw):
            if run["status"] != "ok":
                print(f"detection failed: {run['error']}", flush=True)
        print()
        head = f"{'column':<15} {'method':<14} {'states':>9} {'raw':>9} {'rel_diff':>9} {'st_drift':>8} {'raw_drift':>9} {'injected':>8}"
        print(head)
        print("-" * len(head))
        same = states["dataset_drifted"] == raw["dataset_drifted"] and states["path"] == "states"
        worst = 0.0
        for name in sorted(raw["columns"].keys() | states["columns"].keys()):
            s, r = states["columns"].get(name, {}), raw["columns"].get(name, {})
            ss, rs = s.get("score"), r.get("score")
            rel = abs(ss - rs) / abs(rs) if ss is not None and rs not in (None, 0) else None
            worst = max(worst, rel or 0.0)
            same = same and s.get("drifted") == r.get("drifted")
            print(f"{name:<15} {r.get('method', '-'):<14} {fmt(ss):>9} {fmt(rs):>9} {fmt(rel, 4):>9} "
                  f"{str(s.get('drifted', '-')).lower():>8} {str(r.get('drifted', '-')).lower():>9} "
                  f"{str(name in INJECTED).lower():>8}")
        print()
        flags = sorted(n for n, c in states["columns"].items() if c["drifted"])
        print(f"same verdicts: {str(same).lower()} (states path {states['path']}, dataset drifted "
              f"{states['dataset_drifted']} vs {raw['dataset_drifted']}); flagged {flags}; worst relative score "
              f"difference {worst:.4f}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        ok = same and states["status"] == raw["status"] == "ok"
        speedup = raw["s"] / states["s"] if ok else math.nan
        print(f"RESULT states_s={states['s']:.3f} raw_s={raw['s']:.3f} speedup={speedup:.1f}", flush=True)
        if not ok:
            raise SystemExit(1)
    finally:
        if args.keep:
            print(f"(store kept in {store})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
