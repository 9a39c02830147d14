"""Window claims: two detector workers never judge the same (model, stage, window), even when misconfigured.

ClickHouse has no compare-and-set, so a lease cannot be taken atomically.
What it does give: every insert is atomic and visible to reads once it
returns, and the server stamps rows with its own clock. So a worker inserts
a claim row per window it is about to run, waits `settle` (longer than an
insert takes to become visible), then reads back, per window, the earliest
live claim (server time, then claim id) and runs only the windows whose
earliest claim is its own. Every reader that reads after the settle sees the
same earliest claim, so exactly one worker proceeds. A claim lives for
`lease`; a worker that died holding one delays that window by at most the
lease, and the same worker re-claiming (a retry on its next tick) keeps it.

What it assumes: one server clock (on a cluster, keep `detector_claims` on a
single replicated shard and read it with `select_sequential_consistency`),
and no claim insert taking longer than `settle` to land.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

from clickhouse_connect.driver.client import Client

from detectors.sources import TS, Window
from driftline.timestamps import as_utc

log = logging.getLogger(__name__)

Key = tuple[str, Window]  # (stage, window)


class WindowClaims:
    def __init__(self, worker: str, *, settle: timedelta, lease: timedelta) -> None:
        self.worker = worker
        self.settle = settle
        self.lease = lease

    def acquire(self, client: Client, model: str, wanted: Sequence[Key]) -> tuple[set[Key], dict[Key, str]]:
        """Claim `wanted` windows of `model`; returns (the ones this worker won, the others -> their winner)."""
        if not wanted:
            return set(), {}
        client.insert(
            "detector_claims",
            [[model] * len(wanted), [s for s, _ in wanted], [w.start for _, w in wanted], [w.end for _, w in wanted],
             [self.worker] * len(wanted), [uuid.uuid4() for _ in wanted]],
            column_names=["model", "stage", "window_start", "window_end", "worker", "claim_id"],
            column_oriented=True,
        )
        time.sleep(self.settle.total_seconds())
        rows = client.query(
            f"SELECT stage, window_start, window_end, argMin(worker, (claimed_at, claim_id)) FROM detector_claims "
            f"WHERE model = {{m:String}} AND window_start >= {{lo:{TS}}} AND window_start <= {{hi:{TS}}} "
            f"AND claimed_at > now64(6) - toIntervalMillisecond({{lease:Int64}}) "
            f"GROUP BY stage, window_start, window_end",
            parameters={"m": model, "lo": min(w.start for _, w in wanted), "hi": max(w.start for _, w in wanted),
                        "lease": int(self.lease.total_seconds() * 1000)},
        ).result_rows
        winners = {(str(stage), Window(as_utc(start), as_utc(end))): str(worker) for stage, start, end, worker in rows}
        won = {key for key in wanted if winners.get(key) == self.worker}
        lost = {key: winners.get(key, "") for key in wanted if key not in won}
        for (stage, window), other in lost.items():
            log.warning("window claimed by another detector worker; skipping it (do two workers take this model? "
                        "check DRIFTLINE_DETECTOR_SHARD)",
                        extra={"model": model, "stage": stage, "window": str(window), "winner": other,
                               "worker": self.worker})
        return won, lost
