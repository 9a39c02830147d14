"""Drift-detection benchmark: Driftline's in-ClickHouse detector against Evidently, on the same rows.

    python bench/detect.py [--rows 1000000] [--seed 7] [--skip-evidently] [--keep]
    python bench/detect.py --rows 10000000 --skip-evidently
    python bench/detect.py --skip-evidently --numeric-method ks --exact-max-rows 100000000   # exact KS, every value
    python bench/detect.py --skip-evidently --multivariate    # multivariate drift too (off by default)

One model (`bench`), 20 numeric features (f0..f19) and 2 categorical ones
(c0, c1); a reference day (2026-01-01) and a current day (2026-01-02) of
`--rows` predictions each. Drift is injected in a known subset of features:

* f0..f4  normal, mean shifted by +0.5 std             (Wasserstein ~0.5)
* f5..f6  normal, variance x1.5                        (Wasserstein ~0.18)
* c0      4 categories, frequencies 40/30/20/10% -> 25% each (Jensen-Shannon ~0.17)

Every other feature is drawn from the same distribution on both days: normal
(f7..f11), log-normal (f12..f14), uniform (f15..f16), integer-valued
(f17..f19, about 25 distinct values) and a skewed 30-category c1. Values come
from a seeded hash of (seed, row, feature), so a run is reproducible.

Steps, in one run:

1. Load (not timed): a child process generates the rows in SQL
   (`INSERT ... SELECT FROM numbers()`, 1M rows per insert, nothing built in
   Python) into a fresh chDB folder, then `OPTIMIZE TABLE predictions FINAL`
   so detection reads settled parts, as it would after background merges.
2. Driftline (timed): a second child process opens the store, notes its RSS
   (baseline), runs `run_stage(..., "drift")` once on the current day and
   reports the wall time and `ru_maxrss` (peak RSS, chDB included since it runs
   in-process). Every statement the detector sends is timed (the client's
   query, command and insert are wrapped here) and listed by pass, with the
   RSS and peak RSS after each, so a slow or memory-hungry pass shows
   (multivariate drift: its two samples and the PCA error pass; the
   classifier runs in Python, between statements). The
   1-minute load average is printed too: other work on the machine skews the
   clock.
3. Evidently (timed, skipped with --skip-evidently): both days are pulled into
   pandas (not timed), then `Report([DataDriftPreset()], include_tests=True)`
   runs with numeric and categorical columns declared; the timed span covers
   building the two `Dataset`s and the report. Each column's score, method and
   verdict (its test's FAIL status) are read from the snapshot.
4. Per-feature table: Driftline's method and score (from drift_results FINAL),
   Evidently's score, relative difference, both verdicts, and whether both
   match the injected drift. agree=true when both flag exactly the same
   features.

Step 2 runs twice on the same rows: from the window states (the default for
hour-aligned windows; built once per hour by the first detection that reads
it, here right after the load: `states_build_s`, paid once, not per window) and from the raw rows (`drift.window_states: false`:
what a window the states cannot serve costs). The last line is
`RESULT detect_states_s=<a> detect_raw_s=<b> evidently_s=<y> speedup_states=<y/a> speedup_raw=<y/b> peak_rss_mb=<m> agree=<true|false> states_build_s=<c>`
(evidently_s and the speedups are nan with --skip-evidently; agree then
compares the two paths only). peak_rss_mb is the larger of the two
detection children's ru_maxrss. If detection fails (its run records
status `error`), the error is printed, Evidently still runs (for its time),
the line reads `detect_..._s=nan ... agree=false` and the exit code is 1. The
first line names a hash of detectors/**/*.py, to tell which detector code a
run measured. The store folder is deleted at the end unless --keep is given.

Cost on 2 cores: --rows 1000000 takes about 2 minutes (Evidently ~85 s of it)
and 1 GB of disk; --rows 10000000 --skip-evidently about 4 minutes of load
(generation and merge) plus detection, and 3 GB of disk.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "bench"
REFERENCE_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CURRENT_START = datetime(2026, 1, 2, tzinfo=timezone.utc)
DAY = timedelta(days=1)
DAY_MS = 86_400_000
INSERT_CHUNK = 1_000_000

NUMERIC = [f"f{i}" for i in range(20)]
CATEGORICAL = ["c0", "c1"]
FEATURES = NUMERIC + CATEGORICAL
INJECTED = {"f0", "f1", "f2", "f3", "f4", "f5", "f6", "c0"}

VARIANT = "Variant(Float64, String)"

def registry_yaml(numeric_method: str | None = None, exact_max_rows: int | None = None,
                  multivariate: bool = False, window_states: bool = True) -> str:
    """The bench model; `numeric_method`/`exact_max_rows` override the defaults (e.g. exact KS on every row).

    Multivariate drift is off unless asked for: Evidently's preset, the comparison here, has none.
    """
    drift = ["prediction: false", "target: false", f"window_states: {str(window_states).lower()}"]
    if numeric_method:
        drift.append(f"methods: {{numeric: {numeric_method}}}")
    if exact_max_rows is not None:
        drift.append(f"exact_max_rows: {exact_max_rows}")
    features = ", ".join([f"{n}: numeric" for n in NUMERIC] + [f"{n}: categorical" for n in CATEGORICAL])
    return f"""\
models:
  - name: {MODEL}
    task: binary_classification
    features: {{{features}}}
    reference:
      range: {{start: {REFERENCE_START:%Y-%m-%dT%H:%M:%SZ}, end: {(REFERENCE_START + DAY):%Y-%m-%dT%H:%M:%SZ}}}
    window: 1d
    drift: {{{", ".join(drift)}}}
    multivariate: {{enabled: {str(multivariate).lower()}}}
"""


# --------------------------------------------------------------------------- helpers


def rss_mb() -> float:
    """Current resident set size of this process (VmRSS), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def max_rss_mb() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_store(store: Path) -> Any:
    from driftline.config import Settings
    from driftline.store import connect, migrate

    client = connect(Settings(clickhouse_url=f"chdb:{store}"))
    migrate(client)
    return client


def load_model(store: Path, numeric_method: str | None = None, exact_max_rows: int | None = None,
               multivariate: bool = False, window_states: bool = True) -> Any:
    from detectors.config import load_registry

    path = store.parent / "models.yaml"
    path.write_text(registry_yaml(numeric_method, exact_max_rows, multivariate, window_states))
    return load_registry(path).get(MODEL)


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script with `args` in a fresh interpreter; its last stdout line is a JSON report."""
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], check=False, stdout=subprocess.PIPE,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def code_fingerprint() -> str:
    """A short hash of detectors/**/*.py, to tell which version of the detector code a run measured."""
    import hashlib

    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in sorted((root / "detectors").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


# --------------------------------------------------------------------------- data generation (SQL)


def _uniform(seed: int, k: int, j: int) -> str:
    """A uniform draw in (0, 1) from a hash of (seed, row, feature k, draw j): reproducible."""
    return f"((toFloat64(sipHash64({seed}, number, {k}, {j})) + 0.5) / 18446744073709551616.0)"


def _normal(seed: int, k: int) -> str:
    """A standard normal draw (Box-Muller on two hashed uniforms)."""
    return f"(sqrt(-2.0 * log({_uniform(seed, k, 0)})) * cos(2.0 * pi() * {_uniform(seed, k, 1)}))"


def feature_sql(name: str, k: int, seed: int) -> str:
    """SQL of feature `name` (the k-th) for the row `number`; `cur` is 1 on the current day."""
    z = _normal(seed, k)
    u = _uniform(seed, k, 2)
    i = int(name[1:])
    if name == "c0":
        # reference 40/30/20/10 %, current 25 % each
        return (f"if(cur, multiIf({u} < 0.25, 'a', {u} < 0.5, 'b', {u} < 0.75, 'c', 'd'), "
                f"multiIf({u} < 0.4, 'a', {u} < 0.7, 'b', {u} < 0.9, 'c', 'd'))")
    if name == "c1":
        # 30 categories, skewed: P(k) = sqrt((k+1)/30) - sqrt(k/30)
        return f"concat('k', leftPad(toString(toUInt8(least(floor(30 * pow({u}, 2)), 29))), 2, '0'))"
    if i <= 4:  # mean shift of 0.5 std
        mu, sigma = float(i), 1.0 + 0.25 * i
        return f"({mu} + {sigma} * ({z} + if(cur, 0.5, 0.0)))"
    if i <= 6:  # variance x1.5
        sigma = 2.0 + i
        return f"({sigma} * {z} * if(cur, sqrt(1.5), 1.0))"
    if i <= 11:
        return f"({10.0 * i} + {float(i)} * {z})"
    if i <= 14:
        return f"exp(0.5 * {z})"
    if i <= 16:
        return f"(100.0 * {u})"
    return f"toFloat64(round(10.0 + 3.0 * {z}))"


def insert_sql(rows: int, seed: int, first: int, count: int) -> str:
    """INSERT rows [first, first + count) of 2 * rows: the reference day first, then the current day."""
    features = ", ".join(f"'{name}', CAST({feature_sql(name, k, seed)} AS {VARIANT})" for k, name in enumerate(FEATURES))
    ref_ms = int(REFERENCE_START.timestamp() * 1000)
    cur_ms = int(CURRENT_START.timestamp() * 1000)
    p = _uniform(seed, 99, 0)
    return f"""
        INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, features,
                                 prediction, proba, latency_ms)
        SELECT 'bench', 0, toInt64(number), concat('e', toString(number)), '{MODEL}', 'v1',
               fromUnixTimestamp64Milli(toInt64(if(cur, {cur_ms} + intDiv((number - {rows}) * {DAY_MS}, {rows}),
                                                         {ref_ms} + intDiv(number * {DAY_MS}, {rows}))), 'UTC'),
               map({features}),
               CAST(if({p} < 0.3, '1', '0') AS {VARIANT}),
               map('1', {p}, '0', 1.0 - {p}),
               NULL
        FROM (SELECT number, number >= {rows} AS cur FROM numbers({first}, {count}))
        SETTINGS cast_string_to_variant_use_inference = 0
    """


def child_load(store: Path, rows: int, seed: int) -> dict[str, Any]:
    client = open_store(store)
    t0 = time.perf_counter()
    total = 2 * rows
    for first in range(0, total, INSERT_CHUNK):
        client.command(insert_sql(rows, seed, first, min(INSERT_CHUNK, total - first)))
    t1 = time.perf_counter()
    client.command("OPTIMIZE TABLE predictions FINAL")
    t2 = time.perf_counter()
    from driftline.store.window_states import refresh

    refresh(client, MODEL, REFERENCE_START, CURRENT_START + DAY)  # what the first detection reading them does
    t3 = time.perf_counter()
    counts = client.query(
        "SELECT ts >= {c:DateTime64(3, 'UTC')} AS cur, count() FROM predictions GROUP BY cur ORDER BY cur",
        parameters={"c": CURRENT_START},
    ).result_rows
    parts = client.query("SELECT count() FROM system.parts WHERE active AND table = 'predictions' "
                         "AND database = currentDatabase()").result_rows[0][0]
    return {"insert_s": t1 - t0, "optimize_s": t2 - t1, "states_build_s": t3 - t2, "counts": [int(c) for _, c in counts], "parts": int(parts),
            "peak_rss_mb": max_rss_mb()}


# --------------------------------------------------------------------------- Driftline detection (child)


def _pass_of(sql: str) -> str:
    """Which detector pass a statement belongs to (see detectors/aggregates.py)."""
    for marker, name in (
        ("quantilesTDigestIf", "3 refine: quantiles"),
        ("roundDown", "3 refine: counts"),
        ("uniqUpTo", "1 profile"),
        ("leadInFrame", "4 exact_cdf"),
        ("uniqExact", "2 pooled distinct (hellinger)"),
        ("countIfResample", "2 histograms"),
        ("sumMapIf", "2 histograms"),
        ("model_version, count()", "version"),
        ("DELETE FROM", "replace_window"),
        ("arrayDotProduct", "multivariate: PCA error of every row"),
        ("ORDER BY cityHash64(features, prediction) LIMIT", "multivariate: samples"),
    ):
        if marker in sql:
            return name
    return "other: " + " ".join(sql.split())[:60]


def _trace(client: Any, log: list[dict[str, Any]]) -> None:
    """Time every query, command and insert the detector sends, with the process's peak RSS after it."""
    for attr in ("query", "query_df", "command", "insert"):
        original = getattr(client, attr)

        def wrapper(*args: Any, _original: Any = original, _attr: str = attr, **kwargs: Any) -> Any:
            first = args[0] if args else kwargs.get("query", kwargs.get("cmd", kwargs.get("table", "")))
            label = f"insert {first}" if _attr == "insert" else _pass_of(str(first))
            t0 = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                log.append({"pass": label, "s": time.perf_counter() - t0, "rss_mb": rss_mb(), "max_rss_mb": max_rss_mb()})

        setattr(client, attr, wrapper)


def child_detect(store: Path, numeric_method: str | None = None, exact_max_rows: int | None = None,
                 multivariate: bool = False, window_states: bool = True) -> dict[str, Any]:
    from detectors.run import run_stage
    from detectors.sources import Window

    model = load_model(store, numeric_method, exact_max_rows, multivariate, window_states)
    client = open_store(store)
    baseline_rss, baseline_max = rss_mb(), max_rss_mb()
    queries: list[dict[str, Any]] = []
    _trace(client, queries)
    window = Window(CURRENT_START, CURRENT_START + DAY)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = run_stage(client, model, window, "drift")
    wall = time.perf_counter() - t0
    return {
        "detect_s": wall, "run_duration_s": result.duration_s, "status": result.status, "error": result.error,
        "drifted": result.drifted_columns, "rows_scanned": result.rows_scanned,
        "baseline_rss_mb": baseline_rss, "baseline_max_rss_mb": baseline_max, "peak_rss_mb": max_rss_mb(),
        "queries": queries, "load_avg_1m": [load_before, os.getloadavg()[0]],
    }


# --------------------------------------------------------------------------- results and Evidently (parent)


def driftline_results(client: Any) -> dict[str, dict[str, Any]]:
    rows = client.query(
        "SELECT column, method, score, drifted, status, exact FROM drift_results FINAL "
        "WHERE model = {m:String} AND segment = '' AND window_start = {s:DateTime64(3, 'UTC')}",
        parameters={"m": MODEL, "s": CURRENT_START},
    ).result_rows
    return {r[0]: {"method": r[1], "score": r[2], "drifted": bool(r[3]), "status": r[4], "exact": bool(r[5])}
            for r in rows}


def pull_frame(client: Any, start: datetime) -> Any:
    """One day's features as a DataFrame: numeric columns float64, categorical ones str (object)."""
    import pandas as pd

    exprs = [f"variantElement(features['{n}'], 'Float64') AS {n}" for n in NUMERIC]
    exprs += [f"variantElement(features['{n}'], 'String') AS {n}" for n in CATEGORICAL]
    result = client.query(
        f"SELECT {', '.join(exprs)} FROM predictions WHERE model = {{m:String}} "
        f"AND ts >= {{s:DateTime64(3, 'UTC')}} AND ts < {{e:DateTime64(3, 'UTC')}} ORDER BY ts",
        parameters={"m": MODEL, "s": start, "e": start + DAY},
    )
    columns = result.result_columns
    frame = pd.DataFrame({n: pd.array(columns[i], dtype="float64") if n in NUMERIC
                          else pd.Series(columns[i], dtype=object) for i, n in enumerate(FEATURES)})
    return frame


def run_evidently(reference: Any, current: Any) -> tuple[float, dict[str, dict[str, Any]]]:
    """Seconds for Evidently's DataDriftPreset on the two frames, and each column's method, score and verdict."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    t0 = time.perf_counter()
    cur = Dataset.from_pandas(current, data_definition=definition)
    ref = Dataset.from_pandas(reference, data_definition=definition)
    snapshot = Report([DataDriftPreset()], include_tests=True).run(cur, ref)
    seconds = time.perf_counter() - t0
    doc = snapshot.dict()
    out: dict[str, dict[str, Any]] = {}
    for metric in doc["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = {"method": config.get("method"), "score": float(metric["value"]),
                                     "threshold": config.get("threshold"), "drifted": None}
    for test in doc.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in out:
            out[params["column"]]["drifted"] = test["status"] == "FAIL"
    for row in out.values():
        if row["drifted"] is None:  # no test reported: Evidently's own rule for distances
            row["drifted"] = row["threshold"] is not None and row["score"] >= row["threshold"]
    return seconds, out


# --------------------------------------------------------------------------- report


def print_queries(queries: list[dict[str, Any]]) -> None:
    print("  detector statements (wall s, RSS and peak RSS after each, MiB):")
    for q in queries:
        print(f"    {q['pass']:<34} {q['s']:8.3f} s  rss={q['rss_mb']:7.0f}  peak={q['max_rss_mb']:7.0f}")
    by_pass: dict[str, float] = {}
    for q in queries:
        by_pass[q["pass"]] = by_pass.get(q["pass"], 0.0) + q["s"]
    total = sum(by_pass.values())
    print(f"  statements total {total:.3f} s: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(by_pass.items(), key=lambda kv: -kv[1])))


def print_table(dl: dict[str, dict[str, Any]], ev: dict[str, dict[str, Any]] | None) -> None:
    head = f"{'feature':<8} {'dl_method':<14} {'exact':<5} {'dl_score':>9} {'ev_score':>9} {'rel_diff':>9} {'dl_drift':>8} {'ev_drift':>8} {'injected':>8}"
    print(head)
    print("-" * len(head))
    for name in FEATURES:
        d = dl.get(name, {})
        e = (ev or {}).get(name, {})
        ds, es = d.get("score"), e.get("score")
        rel = abs(ds - es) / abs(es) if ds is not None and es not in (None, 0) else None
        print(f"{name:<8} {d.get('method', '-'):<14} {str(d.get('exact', '-')).lower():<5} {fmt(ds):>9} {fmt(es):>9} "
              f"{fmt(rel, 3):>9} {str(d.get('drifted', '-')).lower():>8} {str(e.get('drifted', '-')).lower():>8} "
              f"{str(name in INJECTED).lower():>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per window (reference and current)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the store folder")
    parser.add_argument("--numeric-method", help="drift method for the numeric features (default: Evidently's rule)")
    parser.add_argument("--exact-max-rows", type=int,
                        help="drift.exact_max_rows (e.g. 100000000: exact ECDF statistics on every row)")
    parser.add_argument("--multivariate", action="store_true",
                        help="run multivariate drift too (PCA reconstruction error and domain classifier)")
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--detect-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw-rows", action="store_true", help=argparse.SUPPRESS)  # the child: window_states off
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.load_only or args.detect_only:
        report = (child_load(args.store, args.rows, args.seed) if args.load_only
                  else child_detect(args.store, args.numeric_method, args.exact_max_rows, args.multivariate,
                                    window_states=not args.raw_rows))
        print(json.dumps(report))
        return

    workdir = Path(tempfile.mkdtemp(prefix="driftline-bench-detect-"))
    store = workdir / "store"
    try:
        print(f"bench/detect.py rows={args.rows:,} per window, seed={args.seed}, store={store}, "
              f"detectors code {code_fingerprint()}", flush=True)
        load = run_child(["--load-only", "--store", str(store), "--rows", str(args.rows), "--seed", str(args.seed)])
        print(f"load: {load['counts']} rows (reference, current) in {load['insert_s']:.1f} s, "
              f"optimize {load['optimize_s']:.1f} s, window states built in {load['states_build_s']:.2f} s, "
              f"{load['parts']} part(s), loader peak RSS {load['peak_rss_mb']:.0f} MiB",
              flush=True)
        if load["counts"] != [args.rows, args.rows]:
            raise SystemExit(f"expected {args.rows} rows per window, got {load['counts']}")

        overrides = ([f"--numeric-method={args.numeric_method}"] if args.numeric_method else []) + (
            [f"--exact-max-rows={args.exact_max_rows}"] if args.exact_max_rows is not None else []) + (
            ["--multivariate"] if args.multivariate else [])
        # Both paths on the same rows: from the window states (hour-aligned windows, the default), and from
        # the raw rows (what a window the states cannot serve costs). Each child's results are read before
        # the next one replaces them.
        runs: dict[str, dict[str, Any]] = {}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for path, extra in (("states", []), ("raw", ["--raw-rows"])):
            det = run_child(["--detect-only", "--store", str(store), *overrides, *extra])
            runs[path] = det
            print(f"driftline ({path}): status={det['status']} detect_s={det['detect_s']:.3f} "
                  f"baseline_rss_mb={det['baseline_rss_mb']:.0f} peak_rss_mb={det['peak_rss_mb']:.0f} "
                  f"(+{det['peak_rss_mb'] - det['baseline_rss_mb']:.0f} over baseline) "
                  f"rows_scanned={det['rows_scanned']:,} load_avg_1m={det['load_avg_1m'][0]:.1f}->"
                  f"{det['load_avg_1m'][1]:.1f} on {os.cpu_count()} cores", flush=True)
            print_queries(det["queries"])
            if det["status"] != "ok":
                print(f"driftline ({path}): detection FAILED: {det['error']}", flush=True)
            results[path] = driftline_results(open_store(store)) if det["status"] == "ok" else {}
        ok = all(det["status"] == "ok" for det in runs.values())

        client = open_store(store)
        ev: dict[str, dict[str, Any]] | None = None
        evidently_s = math.nan
        if not args.skip_evidently:
            reference, current = pull_frame(client, REFERENCE_START), pull_frame(client, CURRENT_START)
            print(f"evidently: pulled {len(reference):,} + {len(current):,} rows into pandas; running ...", flush=True)
            evidently_s, ev = run_evidently(reference, current)
            del reference, current
            print(f"evidently: {evidently_s:.1f} s", flush=True)
        flags = {}
        for path in runs:
            print(f"\n{path}:")
            print_table(results[path], ev)
            flags[path] = {n for n in FEATURES if results[path].get(n, {}).get("drifted")}
            print(f"driftline flags ({path}): {sorted(flags[path]) if results[path] else 'none (detection failed)'} "
                  f"(matches injected: {flags[path] == INJECTED})")
        print()
        times = {path: det["detect_s"] if det["status"] == "ok" else math.nan for path, det in runs.items()}
        agree_paths = ok and flags["states"] == flags["raw"]
        if ev is None:
            agree = str(agree_paths).lower() if ok else "false"
            speedups = {path: math.nan for path in runs}
        else:
            ev_flags = {n for n in FEATURES if ev.get(n, {}).get("drifted")}
            print(f"evidently flags: {sorted(ev_flags)} (matches injected: {ev_flags == INJECTED})")
            agree = str(agree_paths and flags["states"] == ev_flags).lower()
            speedups = {path: evidently_s / t for path, t in times.items()}
        peak = max(det["peak_rss_mb"] for det in runs.values())
        print(f"RESULT detect_states_s={times['states']:.3f} detect_raw_s={times['raw']:.3f} "
              f"evidently_s={evidently_s:.3f} speedup_states={speedups['states']:.1f} "
              f"speedup_raw={speedups['raw']:.1f} peak_rss_mb={peak:.0f} agree={agree} "
              f"states_build_s={load['states_build_s']:.3f}", flush=True)
        if not ok:
            raise SystemExit(1)
    finally:
        if args.keep:
            print(f"(store kept in {store})", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
