"""The README's "A first model", followed as written: a scikit-learn model's held-out frame, `driftline init`,
`driftline up`, the frame logged with PredictionLogger.log_frame, then its window detected.

The frame has what pandas and scikit-learn really give: int64 numbers, an int64 column of 4 values
(categorical by Evidently's rule), strings, bools, float 0.0/1.0 predictions and labels, two proba columns.
Logged back, the same rows must land without a dead letter and show no drift against themselves.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from collector.local_broker import free_port
from tests.conftest import clean_env, query_store
from tests.integration.test_up_restarts import start_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"


def first_model_section() -> tuple[str, list[str], str]:
    """(the training script, the shell commands, the logging snippet) of the README's "A first model"."""
    text = README.read_text()
    section = text[text.index("## A first model"):text.index("\n## ", text.index("## A first model") + 5)]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, flags=re.S)
    assert [kind for kind, _ in blocks] == ["python", "", "python"], "the section's code blocks changed: update this test"
    return blocks[0][1], [line for line in blocks[1][1].splitlines() if line.strip()], blocks[2][1]


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = command.split()
    argv = [sys.executable, *argv[1:]] if argv[0] == "python" else [sys.executable, "-m", "driftline.cli", *argv[1:]]
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (command, done.stderr[-3000:])
    return done


def test_the_readme_first_model_lands_every_row_and_sees_no_drift_in_its_own_reference(tmp_path: Path) -> None:
    script, commands, logging_snippet = first_model_section()
    (tmp_path / "first_model.py").write_text(script)
    port = free_port()
    env = clean_env(local_broker_port=port, api_port=free_port(), kafka_session_timeout_ms=6000)
    python_cmd, init_cmd, up_cmd = commands
    assert python_cmd == "python first_model.py" and init_cmd.startswith("driftline init ") and up_cmd == "driftline up"
    run(python_cmd, tmp_path, env)
    init = json.loads(run(init_cmd, tmp_path, env).stdout)
    assert init["warnings"] == [] and init["skipped"] == {}, init
    assert init["features"] == {"tenure_months": "numeric", "monthly_fee": "numeric", "plan": "categorical",
                                "support_calls": "categorical", "paperless": "categorical"}, init
    assert init["task"] == "binary_classification" and init["reference"]["rows"] == 1000
    checked = json.loads(run("driftline models check", tmp_path, env).stdout.splitlines()[0])
    assert checked["model"] == "churn" and checked["features"] == 5
    run("driftline alerts check", tmp_path, env)  # the starter alerts.yaml is valid as written

    up = start_up(tmp_path, env)
    try:
        snippet = logging_snippet.replace("127.0.0.1:9092", f"127.0.0.1:{port}")
        assert snippet != logging_snippet, "the snippet no longer names the local broker's default address"
        held_out = pd.read_parquet(tmp_path / "held_out.parquet")
        now = dt.datetime.now(dt.timezone.utc)
        if now.minute == 59 and now.second >= 45:  # the rows (ts = now) must all fall into one hour-long window
            time.sleep(61 - now.second)
        logged_at = dt.datetime.now(dt.timezone.utc)
        exec(compile(snippet, "README.md", "exec"), {"held_out": held_out})  # noqa: S102 - the README's own code
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]

    store = tmp_path / "driftline-data"
    counts = query_store(store, "SELECT (SELECT count() FROM predictions WHERE model = 'churn'), "
                                "(SELECT count() FROM labels WHERE model = 'churn'), (SELECT count() FROM dead_letters)")
    assert counts == [["1000", "1000", "0"]], counts
    hour = logged_at.replace(minute=0, second=0, microsecond=0)
    window = ["--start", hour.isoformat(), "--end", (hour + dt.timedelta(hours=1)).isoformat()]
    env_store = {**env, "DRIFTLINE_CLICKHOUSE_URL": f"chdb:{store}"}
    argv = [sys.executable, "-m", "driftline.cli", "detect", "--quiet", *window]
    done = subprocess.run(argv, cwd=tmp_path, env=env_store, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    drift = query_store(store, "SELECT column, drifted, status, current_rows FROM drift_results FINAL "
                               f"WHERE model = 'churn' AND window_start = '{hour:%Y-%m-%d %H:%M:%S}' ORDER BY column")
    assert {row[0] for row in drift} >= {"__dataset__", "tenure_months", "monthly_fee", "plan", "support_calls",
                                         "paperless"}, drift
    assert all(row[1] == "0" and row[2] == "ok" for row in drift), drift  # its own reference: nothing drifted
    assert all(row[3] == "1000" for row in drift if row[0] != "__dataset__"), drift

    # The results as a notebook reads them: DriftlineClient over the HTTP API of the running service.
    (tmp_path / "tokens.yaml").write_text("tokens:\n  - {name: notebook, env: NOTEBOOK_TOKEN, scopes: [read]}\n")
    up = start_up(tmp_path, {**env, "NOTEBOOK_TOKEN": "nb-" + "x" * 40})
    try:
        from driftline.client import DriftlineAPIError, DriftlineClient

        client = DriftlineClient(f"http://127.0.0.1:{env['DRIFTLINE_API_PORT']}", token="nb-" + "x" * 40)
        frame = client.drift("churn", start=hour, end=hour + dt.timedelta(hours=1))
        assert sorted(frame["column"]) == sorted(row[0] for row in drift)
        assert str(frame["window_start"].dtype) == "datetime64[ns, UTC]" and (frame["window_start"] == hour).all()
        assert not frame["drifted"].astype(bool).any()
        assert client.status("churn")["drift"]["status"] == "ok"
        assert client.alerts().empty
        with pytest.raises(DriftlineAPIError) as denied:
            DriftlineClient(client.url, token="wrong").drift("churn")
        assert denied.value.status == 401
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0
