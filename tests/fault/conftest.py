"""The fault suite's seed and tally: every scenario adds its figures, the session prints one FAULTS line.

The seed is fixed so a failure reproduces; DRIFTLINE_FAULT_SEED overrides it
(the seed in use is printed by every scenario). Each scenario asserts its own
zeros; the FAULTS line at the end asserts the totals, and that the kill
scenarios together killed at least 20 processes when all of them ran.
"""

from __future__ import annotations

import datetime as dt
import os
import random
from collections import Counter
from collections.abc import Iterator

import pytest

DEFAULT_SEED = 20261201
KILL_SCENARIOS = {"collector", "scheduler", "notifier"}
MIN_KILLS = 20


@pytest.fixture(autouse=True)
def recent_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stamp the simulated events of `driftline.simulate` from two days ago instead of 1970.

    The suite counts every event in the store; events from 1970 would be past any retention TTL, and
    ClickHouse may drop expired rows at any merge. (The producers run in the test process, so the
    collector subprocesses store the same recent timestamps.)
    """
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    monkeypatch.setattr("driftline.simulate.EPOCH", now - dt.timedelta(days=2))


class Tally:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.figures: Counter[str] = Counter()
        self.scenarios: list[str] = []

    def rng(self, scenario: str) -> random.Random:
        """A generator of its own per scenario, so running one scenario alone replays the same faults."""
        return random.Random(f"{self.seed}:{scenario}")

    def record(self, scenario: str, **figures: int | float) -> None:
        self.scenarios.append(scenario)
        for name, value in figures.items():
            if name in ("kills", "events_lost", "duplicates", "notifications_lost", "duplicate_webhooks"):
                self.figures[name] += int(value)
        shown = " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
        print(f"\nFAULT scenario={scenario} seed={self.seed} {shown}", flush=True)


@pytest.fixture(scope="session")
def tally() -> Iterator[Tally]:
    t = Tally(int(os.environ.get("DRIFTLINE_FAULT_SEED", DEFAULT_SEED)))
    yield t
    if not t.scenarios:
        return
    f = t.figures
    print(f"\nFAULTS seed={t.seed} scenarios={len(t.scenarios)} kills={f['kills']} events_lost={f['events_lost']} "
          f"duplicates={f['duplicates']} notifications_lost={f['notifications_lost']} "
          f"duplicate_webhooks={f['duplicate_webhooks']}", flush=True)
    assert (f["events_lost"], f["duplicates"], f["notifications_lost"], f["duplicate_webhooks"]) == (0, 0, 0, 0)
    if KILL_SCENARIOS <= {s.split("/")[0] for s in t.scenarios}:
        assert f["kills"] >= MIN_KILLS, f"only {f['kills']} kills across the kill scenarios"
