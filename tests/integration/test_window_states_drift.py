"""Drift from the window states against drift from raw rows, on the real engine: same verdicts, close scores.

One model, three days: a reference day, then a two-day window at three times its rate. Some features drift
(mean shift, variance, category frequencies), the others do not; methods cover the state paths
(Wasserstein from quantized bins, categorical counts, PSI on Sturges bins, counts of a few-valued numeric
column) and the ones that need raw rows (KS, the target).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from detectors.config import load_registry
from detectors.reference import upload
from detectors.run import run_stage
from detectors.sources import Window
from driftline.store import window_states as ws
from tests.conftest import own_database

pytestmark = pytest.mark.integration

MODEL = "states-drift"
REFERENCE_DAY = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)
WINDOW = Window(REFERENCE_DAY + dt.timedelta(days=1), REFERENCE_DAY + dt.timedelta(days=3))
REFERENCE_ROWS, WINDOW_ROWS = 12_000, 36_000
DRIFTED = {"shift", "scale", "color", "binned", "__prediction__"}

W1_TOLERANCE = 2e-3
"""Normed Wasserstein from quantized bins (width <= 2^-9 |x|) against the raw path (4,096 bins, refined):
both are within their binning error of the true value; measured differences are below 3e-4."""


def _u(k: int, j: int = 0) -> str:
    return f"((toFloat64(sipHash64(11, number, {k}, {j})) + 0.5) / 18446744073709551616.0)"


def _z(k: int) -> str:
    return f"(sqrt(-2.0 * log({_u(k)})) * cos(2.0 * pi() * {_u(k, 1)}))"


FEATURES = {
    "shift": f"({_z(0)} + if(cur, 0.5, 0.0))",
    "scale": f"(3.0 * {_z(1)} * if(cur, 1.5, 1.0))",
    "same": f"(50.0 + 5.0 * {_z(2)})",
    "skewed": f"exp(0.7 * {_z(3)})",
    "small": f"toFloat64(round(3.0 + 1.5 * {_z(4)}))",
    "binned": f"toFloat64(round(40.0 + 8.0 * {_z(5)} + if(cur, 4.0, 0.0)))",  # integers: exact Sturges counts
    "flat": f"(100.0 * {_u(6)})",
}
CATEGORIES = {
    "color": f"if(cur, multiIf({_u(7)} < 0.25, 'red', {_u(7)} < 0.5, 'green', {_u(7)} < 0.75, 'blue', 'grey'), "
             f"multiIf({_u(7)} < 0.4, 'red', {_u(7)} < 0.7, 'green', {_u(7)} < 0.9, 'blue', 'grey'))",
    "city": f"concat('c', toString(toUInt8(floor(12 * pow({_u(8)}, 2)))))",
}


def _registry(tmp_path: Path, *, states: bool = True, reference: str | None = None, extra: str = "") -> object:
    features = {**{n: "numeric" for n in FEATURES}, **{n: "categorical" for n in CATEGORIES}}
    features["binned"] = "{type: numeric, method: psi}"
    ref = (f"upload: {reference}" if reference else
           f"range: {{start: {REFERENCE_DAY:%Y-%m-%dT%H:%M:%SZ}, end: {WINDOW.start:%Y-%m-%dT%H:%M:%SZ}}}")
    body = ", ".join(f"{k}: {v}" for k, v in features.items())
    path = tmp_path / f"models-{states}-{reference}-{len(extra)}.yaml"
    path.write_text(f"""\
models:
  - name: {MODEL}
    task: binary_classification
    features: {{{body}}}
    reference: {{{ref}}}
    window: 2d
    drift: {{exact_max_rows: 10000, target: false, window_states: {str(states).lower()}{extra}}}
    multivariate: {{enabled: false}}
    estimation: {{enabled: false}}
""")
    return load_registry(path).get(MODEL)


@pytest.fixture(scope="module")
def loaded(base_settings):  # type: ignore[no-untyped-def]
    # A database of its own: the tests delete an hour of states and compare paths; on the shared tables, late
    # in a full run, the DELETEs that cleared this model first took 72 s of setup (CI), and what other tests
    # stored could never reach these windows.
    _, store = own_database(base_settings)
    values = ", ".join([f"'{n}', CAST({sql} AS Variant(Float64, String))" for n, sql in FEATURES.items()]
                       + [f"'{n}', CAST({sql} AS Variant(Float64, String))" for n, sql in CATEGORIES.items()])
    ref_ms, cur_ms = int(REFERENCE_DAY.timestamp() * 1000), int(WINDOW.start.timestamp() * 1000)
    store.command(f"""
        INSERT INTO predictions (topic, partition, offset, event_id, model, model_version, ts, features, prediction,
                                 proba, latency_ms)
        SELECT 'states-drift', 0, toInt64(number), concat('e', toString(number)), '{MODEL}', 'v1',
               fromUnixTimestamp64Milli(toInt64(if(cur, {cur_ms} + intDiv((number - {REFERENCE_ROWS}) * 172800000, {WINDOW_ROWS}),
                                                   {ref_ms} + intDiv(number * 86400000, {REFERENCE_ROWS}))), 'UTC'),
               map({values}),
               CAST(if({_u(9)} < if(cur, 0.6, 0.3), 'yes', 'no') AS Variant(Float64, String)),
               map(), NULL
        FROM (SELECT number, number >= {REFERENCE_ROWS} AS cur FROM numbers({REFERENCE_ROWS + WINDOW_ROWS}))
        SETTINGS cast_string_to_variant_use_inference = 0""")
    return store


def _scores(store, result) -> dict[str, tuple[str, float, bool]]:  # type: ignore[no-untyped-def]
    rows = store.query("SELECT column, method, score, drifted FROM drift_results WHERE run_id = {r:UUID}",
                       parameters={"r": result.run_id}).result_rows
    return {str(c): (str(m), float(s) if s is not None else float("nan"), bool(d)) for c, m, s, d in rows}


def _compare(states: dict, raw: dict) -> None:  # type: ignore[type-arg]
    assert states.keys() == raw.keys()
    for column, (method, score, drifted) in raw.items():
        s_method, s_score, s_drifted = states[column]
        assert (s_method, s_drifted) == (method, drifted), column
        if method == "wasserstein":
            assert abs(s_score - score) <= W1_TOLERANCE, (column, s_score, score)
        else:  # counts, Sturges bins (exact from states or raw) and raw-path columns: the same numbers
            assert s_score == pytest.approx(score, rel=1e-9, abs=1e-12), (column, s_score, score)


def test_states_give_the_raw_verdicts_on_a_realistic_window(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from_states = run_stage(loaded, _registry(tmp_path), WINDOW, "drift")
    states = _scores(loaded, from_states)  # read before the next run of the window replaces its results
    from_raw = run_stage(loaded, _registry(tmp_path, states=False), WINDOW, "drift")
    assert (from_states.status, from_states.drift_path, from_states.rows_scanned) == ("ok", "states", 0)
    assert (from_raw.status, from_raw.drift_path) == ("ok", "raw") and from_raw.rows_scanned >= 2 * (12_000 + 36_000)
    assert set(from_states.drifted_columns) == set(from_raw.drifted_columns) == DRIFTED
    raw = _scores(loaded, from_raw)
    assert {raw[c][0] for c in raw} >= {"wasserstein", "jensenshannon", "psi"}
    _compare(states, raw)


def test_methods_that_need_rows_take_the_raw_path_for_their_columns_only(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    extra = ", methods: {numeric: ks}"  # KS needs exact ECDF sums: numeric columns (but `binned`, PSI) go raw
    mixed = run_stage(loaded, _registry(tmp_path, extra=extra), WINDOW, "drift")
    from_mixed = _scores(loaded, mixed)
    raw = run_stage(loaded, _registry(tmp_path, states=False, extra=extra), WINDOW, "drift")
    assert mixed.drift_path == "states+raw" and 0 < mixed.rows_scanned <= raw.rows_scanned
    assert {from_mixed[c][0] for c in FEATURES if c != "binned"} == {"ks"}
    _compare(from_mixed, _scores(loaded, raw))


@pytest.mark.slow
def test_unaligned_windows_and_incomplete_states_fall_back_to_raw_rows(loaded, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    model = _registry(tmp_path)
    shifted = Window(WINDOW.start + dt.timedelta(minutes=30), WINDOW.end)
    assert run_stage(loaded, model, shifted, "drift").drift_path == "raw"
    hour = {"m": MODEL, "b": WINDOW.start + dt.timedelta(hours=5)}
    one_hour = f"FROM {ws.TABLE} WHERE model = {{m:String}} AND bucket = {{b:DateTime('UTC')}}"
    events = f"SELECT sum(rows) {one_hour} AND feature = ''"
    # States missing an hour (a process died between a rebuild's delete and its insert): rebuilt, then read.
    loaded.command(f"DELETE {one_hour}", parameters=hour)
    assert loaded.query(events, parameters=hour).result_rows[0][0] == 0
    assert run_stage(loaded, model, WINDOW, "drift").drift_path == "states"
    assert loaded.query(events, parameters=hour).result_rows[0][0] > 0
    # Rows that changed after the refresh (another process, or the collector, in between): not trusted.
    monkeypatch.setattr(ws, "refresh", lambda *args: [])
    loaded.command(f"DELETE {one_hour}", parameters=hour)
    assert run_stage(loaded, model, WINDOW, "drift").drift_path == "raw"
    monkeypatch.undo()
    assert run_stage(loaded, model, WINDOW, "drift").drift_path == "states"


@pytest.mark.slow
def test_an_uploaded_reference_is_read_raw_beside_the_windows_states(loaded, tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = list(FEATURES) + list(CATEGORIES)
    exprs = [f"variantElement(features['{n}'], 'Float64') AS `{n}`" for n in FEATURES]
    exprs += [f"variantElement(features['{n}'], 'String') AS `{n}`" for n in CATEGORIES]
    frame = loaded.query_df(
        f"SELECT {', '.join(exprs)}, variantElement(prediction, 'String') AS prediction FROM predictions "
        "WHERE model = {m:String} AND ts < {e:DateTime64(3, 'UTC')} ORDER BY offset",
        parameters={"m": MODEL, "e": WINDOW.start})
    assert len(frame) == REFERENCE_ROWS and list(frame.columns) == [*names, "prediction"]
    csv = tmp_path / "reference.csv"
    pd.DataFrame(frame).to_csv(csv, index=False)
    upload(loaded, _registry(tmp_path, reference="day1"), "day1", csv, show_progress=False)
    states = run_stage(loaded, _registry(tmp_path, reference="day1"), WINDOW, "drift")
    from_states = _scores(loaded, states)
    raw = run_stage(loaded, _registry(tmp_path, states=False, reference="day1"), WINDOW, "drift")
    assert (states.status, states.drift_path) == ("ok", "states") and set(states.drifted_columns) == DRIFTED
    _compare(from_states, _scores(loaded, raw))
