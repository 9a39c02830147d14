"""`driftline up` as a newcomer runs it: embedded store, its own broker, a first event, a clean stop."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collector.local_broker import free_port
from driftline.contracts import ContractError
from driftline.producer import PredictionLogger
from tests.conftest import clean_env, query_store, run_driftline
from tests.integration.receivers import Inbox, smtp_server

pytestmark = pytest.mark.integration


@contextmanager
def running_up(cwd: Path, env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], list[str]]]:
    """`driftline up` in `cwd` (log in up.log), its banner; stopped with SIGTERM on exit, which must exit 0."""
    with open(cwd / "up.log", "wb") as log:
        up = subprocess.Popen([sys.executable, "-m", "driftline.cli", "up"], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=log)
        try:
            yield up, [up.stdout.readline().decode() for _ in range(8)]  # type: ignore[union-attr]
        finally:
            up.send_signal(signal.SIGTERM)
            code = up.wait(timeout=60)
    assert code == 0


def wait_for_log(up: subprocess.Popen[bytes], cwd: Path, ready: Callable[[bytes], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready((cwd / "up.log").read_bytes()):
        assert up.poll() is None and time.monotonic() < deadline, (cwd / "up.log").read_text()
        time.sleep(0.2)


@pytest.mark.slow
def test_up_starts_a_broker_ingests_a_first_event_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(local_broker_port=port, kafka_session_timeout_ms=6000, kafka_max_poll_interval_ms=10000,
                    api_port=free_port())
    with running_up(tmp_path, env) as (up, banner):
        assert banner[0].startswith("Driftline is up."), banner
        assert f"127.0.0.1:{port}" in banner[1]
        sent = run_driftline(["send-example", "--bootstrap-servers", f"127.0.0.1:{port}"], env)
        assert sent.returncode == 0, sent.stderr
        wait_for_log(up, tmp_path, lambda log: b'"inserted": 3' in log)
        api = f"http://127.0.0.1:{env['DRIFTLINE_API_PORT']}"
        assert f"HTTP API                : {api}" in banner[6], banner
        with urllib.request.urlopen(f"{api}/healthz", timeout=10) as answer:
            assert json.loads(answer.read()) == {"status": "ok"}
        with urllib.request.urlopen(f"{api}/readyz", timeout=10) as answer:
            assert json.loads(answer.read()) == {"ready": True, "clickhouse": "ok", "kafka": "ok"}
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{api}/models", timeout=10)
        assert refused.value.code == 401  # no tokens configured: nothing but health is open
    status = run_driftline(["db", "status"], clean_env(clickhouse_url=f"chdb:{tmp_path / 'driftline-data'}"))
    assert json.loads(status.stdout)["rows"] == {"predictions": 1, "labels": 1, "infra_metrics": 1, "dead_letters": 0}
    rows = query_store(tmp_path / "driftline-data", "SELECT feature, value, category FROM prediction_features ORDER BY feature")
    assert rows == [["age", "42.0", ""], ["country", "", "NL"], ["income", "51000.0", ""]]


@pytest.mark.slow
def test_up_says_what_to_do_when_its_port_is_taken(tmp_path: Path, broker) -> None:
    env = clean_env(local_broker_port=broker.port, api_port=free_port())
    done = subprocess.run([sys.executable, "-m", "driftline.cli", "up"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 4
    assert "already in use" in done.stderr and "DRIFTLINE_LOCAL_BROKER_PORT" in done.stderr


def test_the_store_in_use_is_reported_not_a_stack_trace(tmp_path: Path, store_path: Path, store) -> None:
    # This test process holds the session store (the `store` client keeps it open); a second process must be told so.
    env = clean_env(clickhouse_url=f"chdb:{store_path}")
    assert store.query("SELECT 1").result_rows == [(1,)]
    done = run_driftline(["db", "status"], env)
    assert done.returncode == 3, done.stderr
    assert "in use by another process" in done.stderr and "Traceback" not in done.stderr


def test_prediction_logger_refuses_bad_names_before_sending(settings) -> None:
    with PredictionLogger(settings.kafka_bootstrap_servers, topic_predictions=settings.topic_predictions,
                          topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
        with pytest.raises(ContractError) as info:
            logger.log_prediction("ok-model", {"bad name; DROP": 1.0}, 0.5)
        assert info.value.kind == "invalid_name"
        with pytest.raises(ContractError):
            logger.log_metrics("ok-model", "pod-1", {"cpu": float("nan")})
        event_id = logger.log_prediction("ok-model", {"x": 1, "y": "a", "z": None}, 1, proba={"0": 0.2, "1": 0.8})
        assert len(event_id) == 32


@pytest.mark.slow
def test_db_query_is_read_only_and_explains_refusals(tmp_path: Path) -> None:
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}")
    assert run_driftline(["db", "migrate"], env).returncode == 0
    for sql in ("DROP TABLE predictions", "INSERT INTO labels (event_id) VALUES ('x')", "SELEC nonsense"):
        done = run_driftline(["db", "query", sql], env)
        assert done.returncode == 2, done.stderr
        assert "ClickHouse refused the query" in done.stderr and "Traceback" not in done.stderr
    assert query_store(tmp_path / "store", "EXISTS TABLE predictions") == [["1"]]


@pytest.mark.slow
def test_up_runs_the_detector_schedule_and_the_alert_dispatcher(tmp_path: Path) -> None:
    """With models.yaml and alerts.yaml beside it, `up` validates both, schedules each model, records its runs, and
    its dispatcher delivers what the outbox holds (here a test email queued before it started)."""
    (tmp_path / "models.yaml").write_text(
        "models:\n"
        "  - name: example-model\n"
        "    task: binary_classification\n"
        "    features: {age: numeric, income: numeric, country: categorical}\n"
        "    reference: {rolling: {offset: 1d}}\n"
        "    window: 1h\n")
    inbox = Inbox()
    with smtp_server(inbox) as smtp_port:
        (tmp_path / "alerts.yaml").write_text(
            "channels:\n"
            f"  owners: {{type: email, to: [owner@example.com], smtp_host: 127.0.0.1, smtp_port: {smtp_port}, "
            "security: none}\n"
            "rules:\n"
            "  - {name: drift, model: example-model, when: {dataset_drift: {}}, routes: [owners]}\n")
        port = free_port()
        env = clean_env(local_broker_port=port, kafka_session_timeout_ms=6000, kafka_max_poll_interval_ms=10000,
                        api_port=free_port(),
                        detector_catchup_windows=3, detector_grace_seconds=0)
        queued = subprocess.run([sys.executable, "-m", "driftline.cli", "alerts", "test", "--channel", "owners",
                                 "--model", "example-model"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
        assert queued.returncode == 0, queued.stderr
        with running_up(tmp_path, env) as (up, banner):
            assert "1 model(s) from models.yaml" in banner[4], banner
            assert "1 rule(s) from alerts.yaml" in banner[5], banner
            wait_for_log(up, tmp_path, lambda log: log.count(b'"msg": "detector run"') >= 6)  # 3 windows x 2 stages
            deadline = time.monotonic() + 30
            while not inbox.messages:
                assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
                time.sleep(0.2)
    assert len(inbox.messages) == 1 and b"[TEST] Driftline notification for model example-model" in inbox.messages[0][2]
    runs = query_store(tmp_path / "driftline-data",
                       "SELECT stage, status, count() FROM detector_runs GROUP BY stage, status ORDER BY stage")
    assert runs == [["drift", "no_data", "3"], ["performance", "no_data", "3"]]
    states = query_store(tmp_path / "driftline-data", "SELECT rule, status FROM alert_states FINAL")
    assert states == [["drift", "inactive"]]  # evaluated after each tick: no data, no alert


@pytest.mark.slow
def test_api_serves_alone_and_up_reports_a_taken_api_port(tmp_path: Path) -> None:
    token = "api-test-token-0123456789"
    (tmp_path / "tokens.yaml").write_text(f"tokens:\n  - {{name: t, sha256: {hashlib.sha256(token.encode()).hexdigest()}, "
                                          "scopes: [read]}\n")
    (tmp_path / "models.yaml").write_text("models:\n  - {name: m1, task: regression, features: {x: numeric}, "
                                          "reference: {rolling: {offset: 1d}}}\n")
    port = free_port()
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}", api_port=port)
    api = subprocess.Popen([sys.executable, "-m", "driftline.cli", "api"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert json.loads(api.stdout.readline())["api"] == f"http://127.0.0.1:{port}"  # type: ignore[union-attr]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/models", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert [m["name"] for m in json.loads(answer.read())] == ["m1"]
        # The port is taken now: `up` says so before serving anything.
        taken = subprocess.run([sys.executable, "-m", "driftline.cli", "up"], cwd=tmp_path / "..",
                               env=clean_env(clickhouse_url=f"chdb:{tmp_path / 'other'}", local_broker_port=free_port(),
                                             api_port=port), capture_output=True, text=True, timeout=120)
        assert taken.returncode == 2 and "cannot listen on 127.0.0.1" in taken.stderr, taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) == 0, api.stderr.read()  # type: ignore[union-attr]


@pytest.mark.slow
def test_up_refuses_an_invalid_registry_before_starting(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text("models:\n  - name: m\n    task: regresion\n")
    done = subprocess.run([sys.executable, "-m", "driftline.cli", "up"], cwd=tmp_path,
                          env=clean_env(local_broker_port=free_port(), api_port=free_port()), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "models.yaml:3: model 'm': task:" in done.stderr and "Traceback" not in done.stderr
