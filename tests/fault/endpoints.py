"""Endpoints that misbehave on a seeded script, and what the notifier logged, for the fault scenarios."""

from __future__ import annotations

import asyncio
import email
import json
import random
from collections import Counter
from email.policy import default
from pathlib import Path

from tests.integration.receivers import Inbox


class FlakyInbox(Inbox):
    """aiosmtpd answering by a seeded script: 421 or 451 (try later), a hold past the sender's timeout, or 250."""

    def __init__(self, rng: random.Random, hold_s: float) -> None:
        super().__init__()
        self.rng = rng
        self.hold_s = hold_s
        self.answers: Counter[str] = Counter()

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        r = self.rng.random()
        if r < 0.15:
            self.answers["421"] += 1
            return "421 4.3.2 service shutting down, try later"
        if r < 0.3:
            self.answers["451"] += 1
            return "451 4.3.0 local error, try later"
        if r < 0.4:
            self.answers["hold"] += 1
            await asyncio.sleep(self.hold_s)  # the sender has timed out; the message was taken all the same
        self.answers["250"] += 1
        return await super().handle_DATA(server, session, envelope)


def webhook_script(rng: random.Random, n: int) -> list[int | str]:
    return [rng.choices([500, 503, "sleep", 200], [0.2, 0.1, 0.15, 0.55])[0] for _ in range(n)]


def message_ids(inbox: Inbox) -> set[str]:
    return {email.message_from_bytes(raw, policy=default)["Message-ID"] for _, _, raw in inbox.messages}


def outcomes(log: Path) -> dict[str, str]:
    """The last logged outcome of every delivery attempted (the store is the running process's until it stops)."""
    out = {}
    for line in log.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("msg") == "delivery attempt":
            out[entry["delivery"]] = entry["outcome"]
    return out


def delivered(log: Path) -> set[str]:
    """Deliveries the notifiers logged as delivered."""
    return {d for d, outcome in outcomes(log).items() if outcome == "delivered"}
