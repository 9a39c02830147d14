"""SIGKILL of `driftline up` (collector + detector scheduler + alert evaluation + dispatcher) at random moments.

`up` runs against the session broker (DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS set,
so it starts no broker of its own) on its own chDB folder, with a model of
2-second windows detected every second and a dataset-drift rule routed to an
email channel (aiosmtpd) and a retrain webhook (a receiver answering some
500s). A producer streams live events whose distribution drifts every few
windows, so alerts fire and resolve while the kills land: mid-detection,
mid-evaluation, mid-delivery, mid-batch. After the last kill one `up` runs
until it has caught up with the stream, judged the last window and finished
its deliveries, and stops with SIGTERM; then the folder is read:

- events lost = 0 and duplicate rows = 0 (by offset and by event id);
- every window from the first event's to the last event's was judged exactly
  once: one finished drift run per window, none missing (the scheduler
  catches up the windows it missed while dead), and one result per
  (window, segment, column) in the results (a run killed after writing
  results but before recording itself is re-run and replaces them);
- notifications lost = 0: every outbox delivery is delivered, every webhook
  delivery accepted by the receiver, every email's Message-ID received;
  duplicate webhook deliveries accepted = 0.

What is not claimed: a window is judged with what had been ingested by its
grace time (3 s here); after a restart, windows whose events were still in
Kafka are judged on part of them (this is the scheduler's documented
trade-off of grace against latency, not a loss: the events are all stored).
Window claims (detectors/claims.py) are held by a worker id that is new in
every process; a restarted `up` on the same host sees that the killed one's
process is gone and takes its claimed windows at once (tested in
tests/integration/test_up_restarts.py). The scenario still sets a 4-second
lease (DRIFTLINE_DETECTOR_CLAIM_LEASE_SECONDS), the bound that applies to a
worker on another host.
Every restart joins its own consumer group (the collector resumes from the
ClickHouse checkpoint, not Kafka's group offsets), to spare the ~10 s
rebalance wait for the dead member.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest

from alerts.signing import WebhookSecret, verify_webhook
from collector.local_broker import free_port
from detectors.schedule import window_containing
from driftline.producer import PredictionLogger
from tests.conftest import driftline_env, query_store, run_driftline
from tests.fault.checks import duplicate_rows, row_counts_of_folder
from tests.fault.endpoints import FlakyInbox, message_ids
from tests.integration.collector_process import group_caught_up
from tests.integration.receivers import Receiver, smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.fault]

KILLS = 6
WINDOW = dt.timedelta(seconds=2)
GRACE_S = 3.0
LEASE_S = 4.0
RATE = 100  # events a second: 200 a window
MODEL = "faulty"
SECRET = WebhookSecret.generate()
READ_TOKEN = "fault-suite-read-token"


def features(rng: random.Random, drifted: bool) -> dict[str, object]:
    return {"x1": rng.gauss(2.5 if drifted else 0.0, 1.0), "x2": rng.gauss(10.0, 2.0),
            "c": rng.choices(["web", "app", "store"], [0.1, 0.2, 0.7] if drifted else [0.5, 0.3, 0.2])[0]}


class LiveTraffic:
    """Predictions stamped with the time they are sent; 6-second spells alternate undrifted and drifted."""

    def __init__(self, settings, rng: random.Random) -> None:  # type: ignore[no-untyped-def]
        self.rng = rng
        self.sent = 0
        self.first: dt.datetime | None = None
        self.last: dt.datetime | None = None
        self.drift_only = False  # the last spell: drifted to the end, so the final state is a firing alert
        self._stop = threading.Event()
        self._logger = PredictionLogger(settings.kafka_bootstrap_servers, topic_predictions=settings.topic_predictions,
                                        topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = dt.datetime.now(dt.timezone.utc)
            drifted = self.drift_only or int(now.timestamp() // 6) % 2 == 1
            for _ in range(RATE // 10):
                self._logger.log_prediction(MODEL, features(self.rng, drifted), self.rng.gauss(0.0, 1.0), ts=now)
                self.sent += 1
            self.first = self.first or now
            self.last = now
            time.sleep(0.1)

    def start(self) -> "LiveTraffic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._logger.flush(timeout=60)
        self._logger.close()


def test_up_sigkilled_at_random_moments_judges_each_window_once_and_loses_nothing(settings, tmp_path: Path,
                                                                                   tally) -> None:  # type: ignore[no-untyped-def]
    rng = tally.rng("scheduler")
    hook_port, smtp_port = free_port(), free_port()
    (tmp_path / "models.yaml").write_text(f"""
models:
  - name: {MODEL}
    task: regression
    features: {{x1: numeric, x2: numeric, c: categorical}}
    reference: {{upload: train}}
    window: 2s
    schedule: {{interval: 1s}}
    drift: {{min_rows: 100, prediction: false, target: false,
             methods: {{numeric: ks, categorical: chisquare, numeric_threshold: 0.001, categorical_threshold: 0.001}}}}
""")
    (tmp_path / "alerts.yaml").write_text(f"""channels:
  owners: {{type: email, to: [owner@example.com], smtp_host: 127.0.0.1, smtp_port: {smtp_port}, security: none,
           timeout: 1s, backoff: 100ms, backoff_cap: 500ms, max_attempts: 100}}
  retrain: {{type: webhook, url: "http://127.0.0.1:{hook_port}/hook", secret_env: HOOK_SECRET, timeout: 1s,
            backoff: 100ms, backoff_cap: 500ms, max_attempts: 100}}
rules:
  - {{name: dataset-drift, model: {MODEL}, routes: [owners, retrain], for: 1, clear_for: 1, repeat_interval: 1h,
      when: {{dataset_drift: {{fire_share: 0.5, clear_share: 0.3}}}}}}
""")
    train_rng = random.Random(rng.randrange(2**31))
    pd.DataFrame([features(train_rng, False) for _ in range(1500)]).to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: reader, sha256: {hashlib.sha256(READ_TOKEN.encode()).hexdigest()}, scopes: [read]}}\n")
    store = tmp_path / "store"
    service = settings.model_copy(update={"clickhouse_url": f"chdb:{store}", "batch_max_seconds": 0.2})
    env = driftline_env(service, models_file=tmp_path / "models.yaml", alerts_file=tmp_path / "alerts.yaml",
                        detector_grace_seconds=GRACE_S, detector_catchup_windows=60, outbox_poll_seconds=0.2,
                        detector_claim_lease_seconds=LEASE_S,
                        api_tokens_file=tmp_path / "tokens.yaml", log_format="json")
    env["HOOK_SECRET"] = SECRET
    uploaded = run_driftline(["reference", "upload", "--model", MODEL, "--name", "train", "--quiet",
                              str(tmp_path / "train.csv")], env)
    assert uploaded.returncode == 0, uploaded.stderr
    log_path = tmp_path / "up.log"
    log = open(log_path, "ab")

    def start(i: int | str) -> tuple[subprocess.Popen[bytes], object, int, int]:
        group = service.model_copy(update={"consumer_group": f"{settings.consumer_group}-{i}"})
        port = free_port()
        run_env = env | {"DRIFTLINE_CONSUMER_GROUP": group.consumer_group, "DRIFTLINE_API_PORT": str(port)}
        offset = log_path.stat().st_size if log_path.exists() else 0
        return subprocess.Popen([sys.executable, "-m", "driftline.cli", "up"], cwd=tmp_path, env=run_env,
                                stdout=subprocess.DEVNULL, stderr=log), group, port, offset

    started = time.monotonic()
    receiver = Receiver([rng.choice([500, 200, 200]) for _ in range(200)], SECRET, port=hook_port)
    inbox = FlakyInbox(random.Random(rng.randrange(2**31)), hold_s=1.5)
    kills = 0
    with ExitStack() as endpoints:
        endpoints.enter_context(receiver)
        endpoints.enter_context(smtp_server(inbox, port=smtp_port))
        traffic = LiveTraffic(service, random.Random(rng.randrange(2**31))).start()
        try:
            for i in range(KILLS):
                proc, _, _, offset = start(i)
                if i % 2 == 0:  # while it works: detecting, evaluating, delivering, ingesting
                    _wait_for_log(log_path, offset, '"msg": "detector scheduler started"', proc)
                    time.sleep(rng.uniform(0.2, 2.5))
                else:  # anywhere from its start on
                    time.sleep(rng.uniform(1.0, 4.5))
                assert proc.poll() is None, f"`driftline up` exited by itself ({proc.returncode}); see {log_path}"
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                kills += 1
            final, group, port, offset = start("last")
            traffic.drift_only = True
            time.sleep(rng.uniform(5.0, 6.0))
        finally:
            traffic.stop()
        try:
            assert traffic.last is not None
            last_window = window_containing(traffic.last, WINDOW)
            deadline = time.monotonic() + 120
            last_run = f'"stage": "drift", "window": "[{last_window.start.isoformat()}, {last_window.end.isoformat()})"'
            _wait_for_log(log_path, offset, last_run, final, timeout=120)  # the last window judged
            # Its alert evaluation (after the tick) queues what it queues: wait until the rule has seen the
            # last window judged `ok`, not for a time that measures the machine.
            _wait_for_evaluation(port, _last_ok_window_end(log_path), final, deadline)
            settled = 0  # consecutive polls with nothing pending in the outbox (the service's own API says so)
            while settled < 2:
                assert final.poll() is None and time.monotonic() < deadline, f"see {log_path}"
                time.sleep(0.5)
                settled = settled + 1 if group_caught_up(group) and _nothing_pending(port) else 0
        finally:
            final.send_signal(signal.SIGTERM)
            code = final.wait(timeout=60)
        assert code == 0, f"see {log_path}"
    log.close()

    # Events: every prediction once.
    rows = row_counts_of_folder(store)
    stored = int(query_store(store, f"SELECT count() FROM predictions WHERE model = '{MODEL}'")[0][0])
    events_lost = max(0, traffic.sent - stored)
    # Windows: one finished drift run per window of the stream, one result per (window, segment, column).
    runs = {r[0]: (int(r[1]), int(r[2])) for r in query_store(store, (
        "SELECT formatDateTime(window_start, '%Y-%m-%d %H:%i:%S'), countIf(status IN ('ok', 'no_data')), countIf(status = 'ok') FROM detector_runs "
        f"WHERE model = '{MODEL}' AND stage = 'drift' GROUP BY window_start"))}
    wanted, w = [], window_containing(traffic.first, WINDOW)  # type: ignore[arg-type]
    while w.start <= last_window.start:
        wanted.append(w.start.strftime("%Y-%m-%d %H:%M:%S"))
        w = type(w)(w.end, w.end + WINDOW)
    not_once = {s: runs.get(s, (0, 0))[0] for s in wanted if runs.get(s, (0, 0))[0] != 1}
    results = query_store(store, (
        "SELECT formatDateTime(window_start, '%Y-%m-%d %H:%i:%S'), count(), uniqExact(segment, column_role, column) FROM drift_results FINAL "
        f"WHERE model = '{MODEL}' GROUP BY window_start"))
    result_dups = sum(int(n) - int(u) for _, n, u in results)
    columns_per_window = Counter(int(u) for _, _, u in results)
    rejudged = int(query_store(store, f"SELECT count() - uniqExact(window_start) FROM detector_runs "
                                      f"WHERE model = '{MODEL}' AND stage = 'drift'")[0][0])
    # Notifications: every queued delivery delivered; webhooks accepted once each; each email's Message-ID arrived.
    outbox = query_store(store, "SELECT delivery_id, kind, status FROM outbox FINAL")
    hooks = {d for d, kind, _ in outbox if kind == "webhook"}
    mails = [d for d, kind, _ in outbox if kind == "email"]
    undelivered = [d for d, _, status in outbox if status != "delivered"]
    ids_seen = [verify_webhook(body, headers, SECRET) for headers, body, _ in receiver.received]
    lost_n = len(undelivered) + len(hooks - set(receiver.accepted)) + max(0, len(mails) - len(message_ids(inbox)))
    figures = {"kills": kills, "events": traffic.sent, "events_lost": events_lost, "duplicates": duplicate_rows(rows),
               "windows": len(wanted), "windows_not_judged_once": len(not_once), "result_duplicates": result_dups,
               "runs_repeated_after_a_kill": rejudged, "notifications": len(outbox),
               "notifications_lost": lost_n, "duplicate_webhooks": len(receiver.accepted) - len(set(receiver.accepted)),
               "webhook_redeliveries_dropped": len(receiver.duplicates), "seconds": time.monotonic() - started}
    tally.record("scheduler", **figures)
    assert kills == KILLS
    assert events_lost == 0 and stored == traffic.sent and figures["duplicates"] == 0, rows
    assert not_once == {}, not_once
    assert result_dups == 0 and len(columns_per_window) == 1, columns_per_window  # every judged window has all columns
    assert sum(ok for _, ok in runs.values()) >= len(wanted) // 2  # most windows had the rows to be judged
    assert hooks and mails, "no alert fired: the drifted spells should have fired the rule"
    assert undelivered == [] and lost_n == 0
    assert figures["duplicate_webhooks"] == 0 and set(ids_seen) <= hooks
    assert len(message_ids(inbox)) == len(mails)


def _last_ok_window_end(log: Path) -> str | None:
    """The end of the latest window that any `up` of the run logged as judged `ok` (what the rule observes)."""
    ends = []
    for line in log.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("msg") == "detector run" and entry.get("stage") == "drift" and entry.get("status") == "ok":
            ends.append(dt.datetime.fromisoformat(entry["window"].split(", ")[1].rstrip(")")))
    return max(ends).isoformat() if ends else None


def _wait_for_evaluation(port: int, window_end: str | None, proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the rule's alert state (GET /alerts) has evaluated the window ending at `window_end`.

    The evaluator queues a window's deliveries before it saves the alert state, so once the state has
    seen that window, everything its evaluation queued is in the outbox.
    """
    if window_end is None:
        return
    wanted = dt.datetime.fromisoformat(window_end)
    while True:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts?model={MODEL}&status=all",
                                         headers={"authorization": f"Bearer {READ_TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                seen = [dt.datetime.fromisoformat(a["last_window_end"]) for a in json.loads(answer.read())
                        if a["last_window_end"]]
        except OSError:
            seen = []  # not serving yet
        if seen and max(seen) >= wanted:
            return
        assert proc.poll() is None and time.monotonic() < deadline, f"the rule never evaluated {window_end}"
        time.sleep(0.2)


def _nothing_pending(port: int) -> bool:
    """True when the running service's outbox holds no pending delivery (GET /deliveries?status=pending)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/deliveries?status=pending",
                                     headers={"authorization": f"Bearer {READ_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return json.loads(answer.read()) == []
    except OSError:
        return False  # not serving yet


def _wait_for_log(log: Path, offset: int, message: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with open(log, "rb") as f:
            f.seek(offset)
            if message.encode() in f.read():
                return
        assert proc.poll() is None and time.monotonic() < deadline, f"no {message!r} in {log}"
        time.sleep(0.1)
