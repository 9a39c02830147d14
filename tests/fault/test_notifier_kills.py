"""SIGKILL of `driftline deliveries run` at random moments while the endpoints are down, slow and erroring.

Webhooks go to a real HTTP receiver on 127.0.0.1 that answers by a seeded
script: 5xx, a hold past the notifier's timeout (the request is still
processed, as a slow real endpoint would), or 200; it verifies each
signature and accepts each `webhook-id` once, as the Standard Webhooks spec
advises receivers to. Emails go to aiosmtpd answering 421/451 or holding past
the timeout by the same kind of script. Both endpoints are down (port
closed) for the first seconds. After the last kill a notifier runs until
everything arrived, stops with SIGTERM, and the outbox is read:

- notifications lost = queued deliveries not `delivered` (none may be dead:
  max_attempts, 100, is far above what the faults cost), plus webhooks never
  accepted, plus emails whose Message-ID never arrived;
- duplicate webhook deliveries accepted = notifications accepted twice, by
  payload (each body carries its number): a re-sent notification under a new
  id would count here. Redeliveries under the same id (after a kill or a
  timeout) are expected and reported; the receiver drops them by id.
- emails are at least once (SMTP has no idempotency key): distinct
  Message-IDs received == emails queued; extra copies are reported.
"""

from __future__ import annotations

import email
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from email.policy import default
from pathlib import Path

import pytest

from alerts.signing import WebhookSecret, verify_webhook
from collector.local_broker import free_port
from tests.conftest import clean_env, query_store
from tests.fault.endpoints import FlakyInbox, delivered, message_ids, webhook_script
from tests.integration.receivers import Receiver, smtp_server

pytestmark = [pytest.mark.integration, pytest.mark.fault]

KILLS = 7
HOOKS, MAILS = 24, 12
SECRET = WebhookSecret.generate()
REPO = Path(__file__).resolve().parents[2]


def test_notifier_sigkilled_while_endpoints_are_down_slow_and_erroring(tmp_path: Path, tally) -> None:  # type: ignore[no-untyped-def]
    rng = tally.rng("notifier")
    hook_port, smtp_port = free_port(), free_port()
    (tmp_path / "models.yaml").write_text("models:\n  - {name: m, task: regression, features: {x: numeric}, "
                                          "reference: {rolling: {offset: 7d}}}\n")
    (tmp_path / "alerts.yaml").write_text(f"""channels:
  hook: {{type: webhook, url: "http://127.0.0.1:{hook_port}/hook", secret_env: HOOK_SECRET, timeout: 500ms,
         backoff: 50ms, backoff_cap: 400ms, max_attempts: 100}}
  mail: {{type: email, to: [owner@example.com], smtp_host: 127.0.0.1, smtp_port: {smtp_port}, security: none,
         timeout: 1s, backoff: 50ms, backoff_cap: 400ms, max_attempts: 100}}
""")
    store = tmp_path / "store"
    env = clean_env(clickhouse_url=f"chdb:{store}", models_file=tmp_path / "models.yaml",
                    alerts_file=tmp_path / "alerts.yaml", outbox_poll_seconds=0.2, log_format="json")
    env["HOOK_SECRET"] = SECRET
    queued = subprocess.run([sys.executable, "-m", "tests.fault.queue_deliveries", str(store), str(HOOKS), str(MAILS)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert queued.returncode == 0, queued.stderr
    ids = json.loads(queued.stdout)
    started = time.monotonic()
    log = open(tmp_path / "notifier.log", "ab")

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "driftline.cli", "deliveries", "run"], env=env,
                                stdout=log, stderr=log)

    receiver = Receiver(webhook_script(rng, 1000), SECRET, sleep_s=1.0, port=hook_port)
    inbox = FlakyInbox(random.Random(rng.randrange(2**31)), hold_s=1.5)
    kills = 0
    with ExitStack() as endpoints:
        for i in range(KILLS):
            proc = start()
            time.sleep(rng.uniform(0.8, 3.0))
            if i == 1:  # down (ports closed) until now: the endpoints come up during the second notifier's life
                endpoints.enter_context(receiver)
                endpoints.enter_context(smtp_server(inbox, port=smtp_port))
            assert proc.poll() is None, f"the notifier exited by itself ({proc.returncode}); see notifier.log"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            kills += 1
        final = start()
        try:
            # Stalled, not slow, is the failure: every endpoint fault costs at most a timeout (1 s) and a capped
            # backoff (0.4 s), so 60 s without one more delivery means the notifier stopped making progress. (A
            # total of 120 s failed by 0.08 s on a 2-core machine running two test workers, with everything sent.)
            done: set[str] = set()
            progress = time.monotonic()
            while (now_done := delivered(tmp_path / "notifier.log")) != set(ids["webhook"] + ids["email"]):
                if now_done != done:
                    done, progress = now_done, time.monotonic()
                assert final.poll() is None and time.monotonic() < progress + 60, \
                    (len(done), len(receiver.accepted), len(message_ids(inbox)))
                time.sleep(0.2)
            time.sleep(1.5)  # a held request finishing now may only be a redelivery
        finally:
            final.send_signal(signal.SIGTERM)
            code = final.wait(timeout=60)
        assert code == 0
    log.close()
    statuses = dict(tuple(r) for r in query_store(store, "SELECT delivery_id, status FROM outbox FINAL"))  # type: ignore[misc]
    all_ids = ids["webhook"] + ids["email"]
    not_delivered = [d for d in all_ids if statuses.get(d) != "delivered"]
    # Every body received under an id is that id's body (signed for it), and each notification is accepted once.
    numbers: dict[str, set[int]] = {}
    for headers, body, _ in receiver.received:
        numbers.setdefault(verify_webhook(body, headers, SECRET), set()).add(json.loads(body)["n"])
    assert all(len(n) == 1 for n in numbers.values()) and set(numbers) <= set(ids["webhook"])
    accepted_numbers = [next(iter(numbers[d])) for d in receiver.accepted]
    mids = message_ids(inbox)
    lost_n = len(not_delivered) + len(set(ids["webhook"]) - set(receiver.accepted)) + (MAILS - len(mids))
    figures = {"kills": kills, "queued": len(all_ids), "notifications_lost": lost_n,
               "duplicate_webhooks": len(accepted_numbers) - len(set(accepted_numbers)),
               "webhook_requests": len(receiver.received), "webhook_redeliveries_dropped": len(receiver.duplicates),
               "smtp_answers": sum(inbox.answers.values()), "email_copies": len(inbox.messages),
               "seconds": time.monotonic() - started}
    tally.record("notifier", **figures)
    print(f"FAULT notifier smtp_answers={dict(inbox.answers)} webhook_actions="
          f"{dict(Counter(str(a) for _, _, a in receiver.received))}", flush=True)
    assert kills == KILLS
    assert not_delivered == [] and lost_n == 0
    assert figures["duplicate_webhooks"] == 0
    assert sorted(mids) == sorted(f"<fault-{n}@driftline>" for n in range(HOOKS, HOOKS + MAILS))
    assert Counter(str(a) for _, _, a in receiver.received)["500"] > 0 and inbox.answers["421"] + inbox.answers["451"] > 0

