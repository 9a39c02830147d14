"""Issue 17, must-show 3: alerts.yaml and tokens.yaml added to a running `up`, reloaded, work at once.

A real `up` (embedded store, its own broker) starts with a registry only: no
tokens, no alerts. The test then writes tokens.yaml and alerts.yaml (an email
channel on aiosmtpd and a signed webhook on a local receiver) and reloads by
`driftline reload` (SIGHUP underneath): the new token answers 200 and drifted
traffic fires one email and one webhook. Then alerts.yaml is removed and `up`
reloaded by a bare SIGHUP: the rules are reported removed. A broken file is
refused with its reason and the running configuration stays.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from alerts.signing import WebhookSecret
from collector.local_broker import free_port
from driftline.producer import PredictionLogger
from driftline.reloads import OUTCOME_FILE
from tests.conftest import run_driftline, wait_for
from tests.integration.receivers import Inbox, Receiver, smtp_server
from tests.integration.test_up_restarts import start_up, up_env

pytestmark = pytest.mark.integration

TOKEN = "reload-added-token-0123456789"
SECRET = WebhookSecret.generate()


def features(rng: random.Random, drifted: bool) -> dict[str, object]:
    return {"x1": rng.gauss(3.0 if drifted else 0.0, 1.0), "c": rng.choice(["a", "b"] if not drifted else ["c"])}


@pytest.mark.slow
def test_tokens_and_alerts_added_to_a_running_up_work_after_a_reload(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: reloaded\n    task: regression\n    features: {x1: numeric, c: categorical}\n"
        "    reference: {upload: train}\n    window: 2s\n    schedule: {interval: 1s}\n"
        "    drift: {min_rows: 50, prediction: false, target: false}\n")
    rng = random.Random(5)
    pd.DataFrame([features(rng, False) for _ in range(500)]).to_csv(tmp_path / "train.csv", index=False)
    port = free_port()
    env = up_env(port, detector_grace_seconds=0.5, outbox_poll_seconds=0.2, api_tokens_file=tmp_path / "tokens.yaml",
                 alerts_file=tmp_path / "alerts.yaml", models_file=tmp_path / "models.yaml")
    env["RELOAD_HOOK_SECRET"] = SECRET
    env["DRIFTLINE_CLICKHOUSE_URL"] = f"chdb:{tmp_path / 'driftline-data'}"  # the CLI runs elsewhere than `up`
    uploaded = run_driftline(["reference", "upload", "--model", "reloaded", "--name", "train", "--quiet",
                              str(tmp_path / "train.csv")], env)
    assert uploaded.returncode == 0, uploaded.stderr
    api_port = int(env["DRIFTLINE_API_PORT"])
    inbox = Inbox()
    with smtp_server(inbox) as smtp_port, Receiver([], SECRET) as receiver:
        up = start_up(tmp_path, env)
        try:
            base = f"http://127.0.0.1:{api_port}"
            assert httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
            (tmp_path / "tokens.yaml").write_text(
                f"tokens:\n  - {{name: added, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, scopes: [read]}}\n")
            (tmp_path / "alerts.yaml").write_text(f"""channels:
  owners: {{type: email, to: [owner@example.com], smtp_host: 127.0.0.1, smtp_port: {smtp_port}, security: none,
           backoff: 100ms, attach_report: false}}
  retrain: {{type: webhook, url: "{receiver.url}", secret_env: RELOAD_HOOK_SECRET, backoff: 100ms}}
rules:
  - {{name: dataset-drift, model: reloaded, routes: [owners, retrain], for: 1, clear_for: 1, repeat_interval: 1h,
      when: {{dataset_drift: {{fire_share: 0.5, clear_share: 0.3}}}}}}
""")
            done = run_driftline(["reload"], env, timeout=90)
            assert done.returncode == 0, done.stderr
            result = json.loads(done.stdout)
            assert result["tokens"]["added"] == ["added"]
            assert result["alerts"]["rules_added"] == ["dataset-drift"]
            assert sorted(result["alerts"]["channels_added"]) == ["owners", "retrain"]
            assert httpx.get(f"{base}/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200

            with PredictionLogger(f"127.0.0.1:{port}") as logger:
                deadline = time.monotonic() + 90
                while not (inbox.messages and receiver.accepted):
                    assert time.monotonic() < deadline, ("no email and webhook", (tmp_path / "up.log").read_text()[-3000:])
                    for _ in range(40):
                        logger.log_prediction("reloaded", features(rng, True), rng.gauss(0, 1))
                    logger.flush(timeout=10)
                    time.sleep(0.2)
            assert b"[FIRING]" in inbox.messages[0][2] and len(receiver.accepted) == 1

            (tmp_path / "alerts.yaml").write_text("channels: [unclosed\n")
            refused = run_driftline(["reload"], env, timeout=90)
            assert refused.returncode == 2 and "still running the previous one" in refused.stderr, refused.stderr
            assert "invalid YAML" in refused.stderr or "alerts.yaml" in refused.stderr, refused.stderr

            (tmp_path / "alerts.yaml").unlink()
            outcome = tmp_path / "driftline-data" / OUTCOME_FILE
            before = outcome.stat().st_mtime_ns
            up.send_signal(signal.SIGHUP)  # the Prometheus and Alertmanager convention, without the CLI
            wait_for("the SIGHUP reload", lambda: outcome.stat().st_mtime_ns != before, timeout=30, every=0.1)
            off = json.loads(outcome.read_text())
            assert off["ok"] and off["result"]["alerts"]["rules_removed"] == ["dataset-drift"], off
            up.send_signal(signal.SIGTERM)
            assert up.wait(timeout=60) == 0
            assert not (tmp_path / "driftline-data" / "up.pid").exists()
        finally:
            if up.poll() is None:
                up.kill()
