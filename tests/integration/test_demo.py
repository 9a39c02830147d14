"""`driftline demo` as a newcomer runs it, in a fresh folder: it ends on its own, in time, with the promised story.

The drifting classifier fired (an email about its drift alert, a signed retrain webhook), the healthy
regressor did not, the broken pipeline raised a data-quality alert; the summary agrees with the files, and
the folder opens afterwards with the data in it.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import subprocess
import sys
import time
from email.policy import default
from pathlib import Path

import pytest

from alerts.signing import verify_webhook
from collector.local_broker import free_port
from driftline.demo.config import ACCURACY_RULE, BROKEN, CLASSIFIER, DRIFT_RULE, MISSING_RULE, REGRESSOR
from tests.conftest import clean_env, query_store, run_driftline

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_demo_runs_the_whole_story_and_leaves_a_folder_to_query(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    api_port = free_port()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "driftline.cli", "demo", "--dir", str(folder),
                           "--api-port", str(api_port)], cwd=tmp_path, env=clean_env(),
                          capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert elapsed < 180, f"the demo took {elapsed:.0f} s"
    print(f"demo took {elapsed:.1f} s")
    assert "Traceback" not in done.stderr
    assert "everything the demo promises happened" in done.stdout
    assert "traffic starts" in done.stderr and "ALERT fired" in done.stderr  # the progress view, on stderr

    # Emails: one file each, the classifier's drift alert among them (with Evidently's report attached).
    emails = {}
    for path in sorted((folder / "emails").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=default)
        emails[path.name] = message
    drift_emails = [m for m in emails.values() if m["Subject"].startswith("[FIRING]")
                    and f"model {CLASSIFIER}:" in m["Subject"]
                    and f"- {DRIFT_RULE}:" in m.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    assert drift_emails, list(emails)
    assert any(a.get_filename() == f"drift-report-{CLASSIFIER}.html" for a in drift_emails[0].iter_attachments())
    quality_emails = [m for m in emails.values() if f"model {BROKEN}:" in m["Subject"]
                      and f"- {MISSING_RULE}:" in m.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    assert quality_emails, list(emails)
    assert not [n for n, m in emails.items() if f"model {REGRESSOR}:" in m["Subject"]]

    # Webhooks: each line verifies with the folder's secret; the classifier's retrain call, nobody else's.
    secret = (folder / "webhook-secret").read_text().strip()
    calls = [json.loads(line) for line in (folder / "webhooks.jsonl").read_text().splitlines()]
    assert calls and all(c["verified"] for c in calls)
    for c in calls:  # as received: the receiver's verdict can be checked again
        received = dt.datetime.fromisoformat(c["received_at"]).timestamp()
        assert verify_webhook(c["body"].encode(), c["headers"], secret, now=received) == c["webhook_id"]
    assert {c["model"] for c in calls if c["accepted"]} == {CLASSIFIER}
    assert secret not in done.stdout + done.stderr + (folder / "summary.json").read_text()

    # The summary says the same as the files.
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["outcome"] == "ok" and summary["problems"] == []
    fired = {model: {a["rule"] for a in alerts} for model, alerts in summary["fired"].items()}
    assert fired[CLASSIFIER] >= {DRIFT_RULE, ACCURACY_RULE}
    assert fired[REGRESSOR] == set()
    assert MISSING_RULE in fired[BROKEN]
    assert {a["kind"] for a in summary["fired"][BROKEN]} == {"quality"}
    assert sorted(Path(e["file"]).name for e in summary["emails"]) == sorted(emails)
    assert [c["webhook_id"] for c in summary["webhooks"]] == [c["webhook_id"] for c in calls]
    assert summary["api"]["reports"][CLASSIFIER] == f"http://127.0.0.1:{api_port}/models/{CLASSIFIER}/report"
    assert summary["api"]["reports"][CLASSIFIER] in done.stdout
    report = summary["api"]["drift_report"]  # the API's page of the window that fired, saved before it stopped
    assert report["status"] == 200 and f"/models/{CLASSIFIER}/report?start=" in report["url"]
    assert (folder / report["file"]).stat().st_size > 10_000
    assert summary["duration_s"] < 180
    assert summary["afterwards"]["store"] == f"chdb:{folder.resolve() / 'data'}"

    # The folder opens afterwards: its data, its alerts.
    env = clean_env(clickhouse_url=summary["afterwards"]["store"])
    status = run_driftline(["db", "status"], env)
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["rows"]
    assert rows["predictions"] == sum(summary["sent"]["predictions"].values()) > 1000
    assert rows["labels"] == summary["sent"]["labels"] and rows["dead_letters"] == 0
    firing = query_store(folder / "data", "SELECT model, rule FROM alert_states FINAL WHERE status = 'firing' "
                                          "ORDER BY model, rule")
    assert [CLASSIFIER, DRIFT_RULE] in firing and [BROKEN, MISSING_RULE] in firing
    assert not [r for r in firing if r[0] == REGRESSOR]


def test_demo_refuses_a_folder_that_is_not_its_own(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    done = run_driftline(["demo", "--dir", str(tmp_path)], clean_env())
    assert done.returncode == 2 and "not a previous demo folder" in done.stderr and "--force" in done.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "data").exists()
