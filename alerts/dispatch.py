"""The dispatcher: attempts due outbox deliveries through their channel, and retries or dead-letters them.

One dispatcher per store (it runs inside `driftline up`, or alone as
`driftline deliveries run`). Attempts are sequential: a slow endpoint delays
the others by at most its timeout, and no delivery is attempted twice at
once. Anything a channel raises becomes a recorded, retryable failure; the
dispatcher itself does not stop on one bad delivery. Deliveries of a channel
that was removed from `alerts.yaml` are held (logged at start), not dropped:
put the channel back, or look at them with `driftline deliveries list`.
`config` is read at every pass, so a reload that assigns a new one (a changed
webhook URL, a new channel, alerts.yaml added after the start) applies from
the next attempt on; with no configuration (None) nothing is attempted.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from email import message_from_bytes
from email.policy import SMTP

from clickhouse_connect.driver.client import Client

from alerts import outbox
from alerts.channels import MissingSecret, email_notifier, webhook_notifier
from alerts.config import AlertConfig, Channel, EmailChannel
from alerts.notify.outcome import Outcome, backoff_seconds
from driftline import metrics

log = logging.getLogger(__name__)
UTC = dt.timezone.utc


class Dispatcher:
    def __init__(self, client: Client, config: AlertConfig | None, *, clock: Callable[[], dt.datetime] | None = None,
                 rng: random.Random | None = None, tls_context: object | None = None) -> None:
        self.client = client
        self.config = config
        self.clock = clock or (lambda: dt.datetime.now(UTC))
        self.rng = rng or random.Random()
        self.tls_context = tls_context
        self.wake = threading.Event()

    @property
    def channels(self) -> dict[str, Channel]:
        return {} if self.config is None else dict(self.config.channels)

    def attempt(self, d: outbox.Delivery, channel: Channel | None) -> Outcome:
        if channel is None:
            return Outcome(False, False, f"channel {d.channel!r} is no longer configured")
        try:
            body = outbox.body_of(self.client, d.delivery_id)
            if isinstance(channel, EmailChannel):
                message = message_from_bytes(body, policy=SMTP)
                return email_notifier(channel, self.tls_context).notify(message)  # type: ignore[arg-type]
            return webhook_notifier(channel).notify(d.delivery_id, body)
        except MissingSecret as exc:
            return Outcome(False, True, str(exc))  # fixable without losing the delivery: keep retrying
        except Exception as exc:
            log.exception("delivery attempt failed unexpectedly", extra={"delivery": d.delivery_id})
            return Outcome(False, True, f"internal error: {type(exc).__name__}")

    def deliver_due(self, limit: int = 100) -> list[outbox.Delivery]:
        """Attempt every due delivery once; returns them with their new status."""
        done = []
        channels = self.channels  # one configuration for the whole pass, even if a reload swaps it meanwhile
        for d in outbox.due(self.client, self.clock(), list(channels), limit):
            started = time.monotonic()
            result = self.attempt(d, channels.get(d.channel))
            elapsed_ms = (time.monotonic() - started) * 1000
            now = self.clock()
            d.attempts += 1
            channel = channels.get(d.channel)
            max_attempts = channel.max_attempts if channel is not None else 1
            if result.delivered:
                d.status, d.last_error, outcome = "delivered", "", "delivered"
            elif result.retryable and d.attempts < max_attempts:
                assert channel is not None
                wait = backoff_seconds(d.attempts, base=channel.backoff.total_seconds(),
                                       cap=channel.backoff_cap.total_seconds(), rng=self.rng)
                d.status, d.last_error, outcome = "pending", result.detail, "retry"
                d.next_attempt_at = now + dt.timedelta(seconds=wait)
            else:
                d.status, d.last_error, outcome = "dead", result.detail, "dead"
            outbox.record_attempt(self.client, d, at=now, outcome=outcome, detail=result.detail, duration_ms=elapsed_ms)
            metrics.delivery_attempt(d, outcome, elapsed_ms / 1000)
            outbox.write_status(self.client, [d])
            level = logging.INFO if result.delivered else logging.WARNING
            log.log(level, "delivery attempt", extra={"delivery": d.delivery_id, "channel": d.channel, "model": d.model,
                                                      "attempt": d.attempts, "outcome": outcome, "detail": result.detail})
            done.append(d)
        return done

    def run(self, stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
        """Deliver until `stop` is set; `wake` cuts a wait short when something was queued."""
        try:
            for channel, count in outbox.held(self.client, list(self.channels)).items():
                log.warning("deliveries held: their channel is not configured", extra={"channel": channel,
                                                                                        "deliveries": count})
        except Exception:  # noqa: BLE001
            log.exception("cannot count held deliveries")
        while not stop.is_set():
            try:
                self.deliver_due()
                upcoming = outbox.next_due_at(self.client, list(self.channels))
            except Exception:
                log.exception("dispatcher pass failed; retrying")
                upcoming = None
            wait = poll_seconds
            if upcoming is not None:
                wait = min(poll_seconds, max(0.0, (upcoming - self.clock()).total_seconds()))
            self.wake.wait(wait)
            self.wake.clear()
