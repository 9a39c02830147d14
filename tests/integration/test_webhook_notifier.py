"""The webhook notifier against a real HTTP receiver on 127.0.0.1, scripted to fail the way endpoints fail."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest

from alerts.notify.outcome import backoff_seconds, http_outcome
from alerts.notify.webhook import WebhookNotifier
from alerts.signing import WebhookSecret, verify_webhook
from collector.local_broker import free_port
from tests.integration.receivers import Receiver

SECRET = WebhookSecret.generate()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    with Receiver(request.param, SECRET) as r:
        yield r


@pytest.mark.parametrize("receiver", [[500, 500, 500, "sleep", 200]], indirect=True)
def test_retries_until_accepted_with_one_idempotency_key_and_valid_signatures(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, WebhookSecret(SECRET), timeout_s=0.5)
    body = b'{"schema": "driftline.retrain.v1", "model": "churn"}'
    outcomes = []
    rng = random.Random(1)
    for attempt in range(1, 10):
        outcome = notifier.notify("dl_retrain_42", body)
        outcomes.append(outcome.detail)
        if outcome.delivered or not outcome.retryable:
            break
        time.sleep(backoff_seconds(attempt, base=0.01, cap=0.05, rng=rng))
    assert outcomes == ["HTTP 500", "HTTP 500", "HTTP 500", "timeout", "HTTP 200"]
    time.sleep(1.6)  # let the late answer of the timed-out attempt finish
    assert receiver.accepted == ["dl_retrain_42"]  # exactly one accepted delivery
    ids = {headers["webhook-id"] for headers, _, _ in receiver.received}
    assert ids == {"dl_retrain_42"} and len(receiver.received) == 5
    for headers, got, _ in receiver.received:
        assert got == body
        assert verify_webhook(got, headers, SECRET) == "dl_retrain_42"
        assert SECRET not in str(headers)


@pytest.mark.parametrize("receiver,detail,retryable", [
    ([404], "HTTP 404", False),
    ([400], "HTTP 400", False),
    ([429], "HTTP 429", True),
    ([503], "HTTP 503", True),
    ([302], "HTTP 302", False),  # a redirect is not followed with a signed body
], indirect=["receiver"])
def test_answers_are_classified(receiver: Receiver, detail: str, retryable: bool) -> None:
    outcome = WebhookNotifier(receiver.url, WebhookSecret(SECRET), timeout_s=2).notify("dl_1", b"{}")
    assert (outcome.delivered, outcome.retryable, outcome.detail) == (False, retryable, detail)
    assert len(receiver.received) == 1


def test_an_unreachable_endpoint_is_retryable_not_a_crash() -> None:
    outcome = WebhookNotifier(f"http://127.0.0.1:{free_port()}/hook", WebhookSecret(SECRET), timeout_s=1).notify("dl_1", b"{}")
    assert not outcome.delivered and outcome.retryable and outcome.detail.startswith("unreachable")


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 15):
        ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff_seconds(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > 0.8 * ceiling  # the whole range is used, not a fixed delay
    assert http_outcome(204).delivered and not http_outcome(418).retryable
