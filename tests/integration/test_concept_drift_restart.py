"""Must-show: the concept drift runner killed with SIGKILL mid-stream and restarted reaches the same verdict.

The same 120,000-row stream (seeded by a hash) twice: in this process's store, where the runner goes through
it uninterrupted, and in a chDB folder of its own (a folder belongs to one process), where `driftline
concept-drift run` is killed with SIGKILL right after a persisted batch (its progress line), twice, then run
to the end. The firings (detector, position, event, statistic, threshold) and the final state (cursor, rows
seen, every detector's state to the bit) must be equal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from detectors import concept_drift
from detectors.config import load_registry
from tests.conftest import clean_env, query_store, run_driftline
from tests.integration.concept_stream import STABLE_ROWS, seed_stream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cd-restart"
TOTAL = STABLE_ROWS + 20_000
BATCH = 4000
REGISTRY = f"""\
models:
  - name: {MODEL}
    task: binary_classification
    features: {{x: numeric}}
    reference: {{rolling: {{offset: 7d}}}}
    concept_drift: {{batch_rows: {BATCH}}}
"""
# The state row first, then the firings, as text; one query (each read of a folder costs a process start).
OUTCOME = (
    "SELECT * FROM (SELECT 0 AS k, toString(rows_seen) AS a, toString(firings) AS b, toString(cursor_offset) AS c, "
    f"config AS d, state AS e, '' AS f FROM concept_drift_state FINAL WHERE model = '{MODEL}' UNION ALL "
    "SELECT 1, detector, toString(position), event_id, toString(label_ts), toString(statistic), toString(threshold) "
    f"FROM concept_drift_events FINAL WHERE model = '{MODEL}') ORDER BY k, toUInt64OrZero(b), a")


def _run_args(models: Path) -> list[str]:
    return ["concept-drift", "run", "--model", MODEL, "--models-file", str(models)]


def _seed(folder: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "tests.integration.concept_stream", str(folder), MODEL], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _kill_after_batches(folder: Path, models: Path, batches: int) -> None:
    """Start a run and SIGKILL it as soon as it has printed `batches` progress lines (each after a persisted batch)."""
    proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", *_run_args(models)],
                            env=clean_env(clickhouse_url=f"chdb:{folder}", log_level="WARNING"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    seen = 0
    try:
        for line in proc.stdout:
            if '"batch"' in line:
                seen += 1
                if seen == batches:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert seen == batches and proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_stream_and_restart_reach_the_same_firings_and_state(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    models = tmp_path / "models.yaml"
    models.write_text(REGISTRY)
    killed = tmp_path / "killed"
    _seed(killed)
    seed_stream(store, MODEL)  # the uninterrupted run, in this process's store
    concept_drift.run(store, load_registry(models).get(MODEL))
    expected = [[str(v) for v in row] for row in store.query(OUTCOME).result_rows]
    state, firings = expected[0], expected[1:]
    assert state[0] == "0" and int(state[1]) == TOTAL and int(state[2]) == len(firings)
    assert {row[1] for row in firings} == {"page_hinkley", "adwin", "ddm"}
    assert all(int(row[2]) > STABLE_ROWS for row in firings)

    _kill_after_batches(killed, models, 1)
    first_kill = int(query_store(killed, OUTCOME)[0][1])
    assert 0 < first_kill < TOTAL  # stopped mid-stream, with a batch persisted
    _kill_after_batches(killed, models, 3)  # a second kill, later in the stream
    done = run_driftline(_run_args(models), clean_env(clickhouse_url=f"chdb:{killed}"))
    assert done.returncode == 0, done.stderr
    batches = sum('"batch"' in line for line in done.stdout.splitlines())
    assert 0 < batches <= TOTAL // BATCH - 4  # it continued from the stored cursor, not from the start

    assert query_store(killed, OUTCOME) == expected
