"""Must-show 2 and 3: the outbox delivers exactly once through failing endpoints, restarts and a killed notifier.

Real endpoints on 127.0.0.1: a scripted HTTP receiver that checks signatures
and accepts each idempotency key once, and aiosmtpd.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import os
import signal
import subprocess
import sys
import time
from email.policy import default
from pathlib import Path

import pytest

from alerts import outbox
from alerts.config import AlertConfig
from alerts.dispatch import Dispatcher
from alerts.signing import WebhookSecret, verify_webhook
from collector.local_broker import free_port
from tests.conftest import clean_env, query_store, run_driftline
from tests.integration.alerting import tag
from tests.integration.receivers import Inbox, Receiver, smtp_server

UTC = dt.timezone.utc
SECRET = WebhookSecret.generate()


def queue(store, channel: str, kind: str, body: bytes) -> str:  # type: ignore[no-untyped-def]
    now = dt.datetime.now(UTC)
    did = outbox.delivery_id("test", channel, now.isoformat())
    queued = outbox.enqueue(store, [(outbox.Delivery(did, channel, kind, "m", "firing", [], "s", "pending", 0, now, "",
                                                     now), body)])
    assert [d.delivery_id for d in queued] == [did]
    assert outbox.enqueue(store, [(queued[0], body)]) == []  # the same id again queues nothing
    return did


def drain(dispatcher: Dispatcher, did: str, store, timeout: float = 30.0) -> outbox.Delivery:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        dispatcher.deliver_due()
        d = outbox.get(store, did)
        assert d is not None
        if d.status != "pending":
            return d
        assert time.monotonic() < deadline, f"still pending after {d.attempts} attempts: {d.last_error}"
        time.sleep(0.05)


def test_webhook_retried_through_500s_and_a_timeout_is_accepted_once(store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    name = f"hook-{tag()}"
    with Receiver([500, 500, 500, "sleep", 200], SECRET, sleep_s=1.0) as receiver:
        config = AlertConfig.model_validate({"channels": {name: {
            "type": "webhook", "url": receiver.url, "secret_env": "TEST_HOOK_SECRET", "timeout": "300ms",
            "backoff": "50ms", "backoff_cap": "200ms"}}})
        body = b'{"schema": "driftline.retrain.v1"}'
        did = queue(store, name, "webhook", body)
        done = drain(Dispatcher(store, config), did, store)
        assert done.status == "delivered" and done.attempts == 5
        time.sleep(1.2)  # the timed-out request finishes on the receiver's side
    assert receiver.accepted == [did]  # exactly one accepted delivery
    assert [h["webhook-id"] for h, _, _ in receiver.received] == [did] * 5  # one idempotency key on every attempt
    for headers, got, _ in receiver.received:
        assert got == body and verify_webhook(got, headers, SECRET) == did
    attempts = store.query("SELECT attempt, outcome, detail FROM delivery_attempts WHERE delivery_id = {d:String} "
                           "ORDER BY attempt", parameters={"d": did}).result_rows
    assert attempts == [(1, "retry", "HTTP 500"), (2, "retry", "HTTP 500"), (3, "retry", "HTTP 500"),
                        (4, "retry", "timeout"), (5, "delivered", "HTTP 200")]


def test_an_endpoint_that_never_recovers_is_dead_lettered_and_can_be_replayed(store, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    name = f"gone-{tag()}"
    port = free_port()
    config = AlertConfig.model_validate({"channels": {name: {
        "type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret_env": "TEST_HOOK_SECRET", "timeout": "1s",
        "max_attempts": 3, "backoff": "10ms", "backoff_cap": "20ms"}}})
    did = queue(store, name, "webhook", b"{}")
    dead = drain(Dispatcher(store, config), did, store)
    assert (dead.status, dead.attempts) == ("dead", 3) and dead.last_error.startswith("unreachable")
    with Receiver([200], SECRET, port=port) as receiver:
        outbox.replay(store, did, actor="alice")
        assert drain(Dispatcher(store, config), did, store).status == "delivered"
    assert receiver.accepted == [did]
    with pytest.raises(LookupError):
        outbox.replay(store, "no-such-delivery", actor="alice")


def test_email_waits_for_the_smtp_server_and_arrives_once(store) -> None:  # type: ignore[no-untyped-def]
    name = f"mail-{tag()}"
    port = free_port()
    config = AlertConfig.model_validate({"channels": {name: {
        "type": "email", "to": ["owner@example.com"], "smtp_host": "127.0.0.1", "smtp_port": port, "security": "none",
        "timeout": "2s", "backoff": "100ms", "backoff_cap": "300ms", "max_attempts": 100}}})
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = "driftline@localhost", "owner@example.com", "drift"
    message["Message-ID"] = "<once@driftline>"
    message.set_content("x1 drifted")
    did = queue(store, name, "email", bytes(message))
    dispatcher = Dispatcher(store, config)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:  # the server is down: attempts fail and stay pending
        dispatcher.deliver_due()
        time.sleep(0.05)
    waiting = outbox.get(store, did)
    assert waiting is not None and waiting.status == "pending" and waiting.attempts >= 3
    assert waiting.last_error.startswith("unreachable")
    inbox = Inbox()
    with smtp_server(inbox, port=port):
        assert drain(dispatcher, did, store).status == "delivered"
        for _ in range(5):
            dispatcher.deliver_due()
    assert len(inbox.messages) == 1
    got = email.message_from_bytes(inbox.messages[0][2], policy=default)
    assert got["Message-ID"] == "<once@driftline>" and got["Subject"] == "drift"


@pytest.mark.slow
def test_notifier_killed_mid_retry_and_restarted_delivers_once(tmp_path: Path) -> None:
    """`driftline deliveries run` is SIGKILLed while the receiver holds its fourth attempt; a new one finishes."""
    (tmp_path / "models.yaml").write_text("models:\n  - {name: churn, task: regression, features: {x: numeric}, "
                                          "reference: {rolling: {offset: 7d}}}\n")
    with Receiver([500, 500, 500, "sleep", 200], SECRET, sleep_s=4.0) as receiver:
        (tmp_path / "alerts.yaml").write_text(
            f"channels:\n  retrain:\n    type: webhook\n    url: {receiver.url}\n    secret_env: HOOK_SECRET\n"
            f"    timeout: 2s\n    backoff: 100ms\n    backoff_cap: 300ms\n")
        env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}", models_file=tmp_path / "models.yaml",
                        alerts_file=tmp_path / "alerts.yaml", outbox_poll_seconds=0.2, log_format="json")
        env["HOOK_SECRET"] = SECRET
        queued = run_driftline(["alerts", "test", "--channel", "retrain", "--model", "churn"], env)
        assert queued.returncode == 0, queued.stderr
        did = json.loads(queued.stdout)["queued"]

        def start() -> subprocess.Popen[str]:
            return subprocess.Popen([sys.executable, "-m", "driftline.cli", "deliveries", "run"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        first = start()
        for _ in range(4):  # three 500s, then the attempt the receiver holds past the timeout
            assert receiver.arrived.acquire(timeout=60), "the dispatcher stopped attempting"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        assert first.returncode == -signal.SIGKILL
        second = start()
        try:
            assert receiver.arrived.acquire(timeout=60), "the restarted dispatcher did not attempt again"
            time.sleep(5)  # the held request completes; nothing more may arrive
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = second.communicate(timeout=30)
        assert second.returncode == 0, err
    assert SECRET not in err
    assert receiver.accepted == [did]  # exactly one accepted delivery
    assert {h["webhook-id"] for h, _, _ in receiver.received} == {did} and len(receiver.received) == 5
    for headers, body, _ in receiver.received:
        assert verify_webhook(body, headers, SECRET) == did
    status = query_store(tmp_path / "store", f"SELECT status, attempts FROM outbox FINAL WHERE delivery_id = '{did}'")
    assert status == [["delivered", "4"]]  # the killed attempt was never recorded; the next one counts as the 4th
