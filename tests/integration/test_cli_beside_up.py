"""The CLI's store commands beside a running `up` on the embedded store: the same answers as without it.

chDB opens a folder in one process only; `up` lends its store to these commands over a local socket
(driftline/store/service_link.py). Each command runs first against the stopped store, then beside `up`,
in a subprocess as a user runs it, and the answers are compared: stdout and exit code, and the
`driftline:` line of an error.
"""

from __future__ import annotations

import base64
import json
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from collector.local_broker import free_port
from tests.conftest import clean_env, run_driftline
from tests.integration.test_up_restarts import start_up

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOUR = ["--start", "2026-11-02T10:00:00Z", "--end", "2026-11-02T12:00:00Z"]


def answer(done) -> tuple[int, str, list[str]]:  # type: ignore[no-untyped-def]
    """What a user reads: exit code, stdout (run times left out), the error lines."""
    lines = []
    for line in done.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(row, dict):
            row.pop("duration_s", None)
        lines.append(json.dumps(row, sort_keys=True))
    return done.returncode, "\n".join(lines), [e for e in done.stderr.splitlines() if e.startswith("driftline")]


def test_store_commands_answer_the_same_beside_a_running_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"amount": rng.gamma(2, 40, 400), "plan": rng.choice(["a", "b"], 400),
                          "prediction": rng.integers(0, 2, 400).astype(float)})
    frame["label"] = frame["prediction"]
    frame.to_csv(tmp_path / "ref.csv", index=False)
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: fraud\n    task: binary_classification\n    features: {amount: numeric, plan: categorical}\n"
        "    reference: {upload: train}\n")
    (tmp_path / "alerts.yaml").write_text(
        "channels:\n  hook: {type: webhook, url: 'http://127.0.0.1:9/hook', secret_env: HOOK_SECRET}\n"
        "rules:\n  - {name: fraud-drift, model: fraud, when: {dataset_drift: {}}, routes: [hook]}\n")
    store = tmp_path / "driftline-data"
    env = clean_env(clickhouse_url=f"chdb:{store}", models_file=tmp_path / "models.yaml",
                    alerts_file=tmp_path / "alerts.yaml", local_broker_port=free_port(), api_port=free_port())
    env["HOOK_SECRET"] = "whsec_" + base64.b64encode(b"k" * 32).decode()

    def cli(*args: str) -> tuple[int, str, list[str]]:
        return answer(run_driftline(list(args), env))

    assert cli("reference", "upload", "--quiet", "--model", "fraud", "--name", "train", str(tmp_path / "ref.csv"))[0] == 0
    assert cli("alerts", "test", "--channel", "hook", "--model", "fraud")[0] == 0  # a delivery in the outbox
    silence = json.loads(cli("silence", "add", "--match", "model=fraud", "--duration", "2h", "--comment", "x")[1])
    delivery = json.loads(cli("deliveries", "list")[1].splitlines()[0])["delivery_id"]
    reads = [
        ("db", "status"),
        ("db", "query", "SELECT model, reference, count() FROM reference_rows GROUP BY model, reference"),
        ("db", "query", "SELECT model, count() AS n FROM reference_rows GROUP BY model FORMAT JSONEachRow"),
        ("alerts", "list", "--status", "all"),
        ("silence", "list"),
        ("deliveries", "list"),
        ("reference", "list", "--model", "fraud"),
        ("concept-drift", "status"),
        ("detect", "--quiet", "--model", "fraud", *HOUR),  # a backfill: the same windows, the same verdicts
        ("report", "--model", "fraud", *HOUR[:2], "--end", "2026-11-02T11:00:00Z", "--out", str(tmp_path / "r.html")),
        ("deliveries", "replay", delivery),  # not dead: the same refusal
        ("reference", "delete", "--model", "fraud", "--name", "train"),  # the registry names it: refused alike
        ("alerts", "history", "0" * 16),
        ("alerts", "ack", "0" * 16, "--comment", "seen"),  # no such alert: the same refusal
        ("models", "check"),
    ]
    stopped = {cmd: cli(*cmd) for cmd in reads}
    assert stopped[("db", "status")][0] == 0 and '"train"' in stopped[("reference", "list", "--model", "fraud")][1]
    assert stopped[("reference", "delete", "--model", "fraud", "--name", "train")][0] == 2

    # Beside `up`: its dispatcher has no alerts.yaml, so the queued delivery stays as it is.
    up = start_up(tmp_path, {**env, "DRIFTLINE_ALERTS_FILE": str(tmp_path / "none.yaml")})
    try:
        beside = {cmd: cli(*cmd) for cmd in reads}
        for cmd in reads:
            assert beside[cmd] == stopped[cmd], (cmd, stopped[cmd], beside[cmd])
        # Changes made beside `up` land in its store, and read back through it.
        assert cli("reference", "upload", "--quiet", "--model", "fraud", "--name", "r2", str(tmp_path / "ref.csv"))[0] == 0
        refs = [json.loads(line)["reference"] for line in cli("reference", "list", "--model", "fraud")[1].splitlines()]
        assert refs == ["r2", "train"]
        assert json.loads(cli("reference", "delete", "--model", "fraud", "--name", "r2")[1])["deleted_rows"] == 400
        assert cli("silence", "expire", silence["silence"])[0] == 0
        assert cli("silence", "list")[1] == ""  # expired: no longer listed as active
        assert cli("db", "query", "SELECT 1 FORMAT Native")[0] == 0
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=120) == 0, (tmp_path / "up.log").read_text()[-3000:]
    assert not (store / "store.key").exists()  # a clean stop takes the key away
    rc, _, errors = cli("db", "status")  # and the store is the CLI's own again
    assert rc == 0 and not errors
