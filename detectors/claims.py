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
import os
import socket
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
            f"SELECT stage, window_start, window_end, worker, claimed_at, claim_id FROM detector_claims "
            f"WHERE model = {{m:String}} AND window_start >= {{lo:{TS}}} AND window_start <= {{hi:{TS}}} "
            f"AND claimed_at > now64(6) - toIntervalMillisecond({{lease:Int64}})",
            parameters={"m": model, "lo": min(w.start for _, w in wanted), "hi": max(w.start for _, w in wanted),
                        "lease": int(self.lease.total_seconds() * 1000)},
        ).result_rows
        earliest: dict[Key, tuple[object, str, str]] = {}
        for stage, start, end, worker, claimed_at, claim_id in rows:
            if worker != self.worker and not _may_be_alive(str(worker)):
                continue  # an earlier run of this host's service (restarted): its claims died with it
            key, rank = (str(stage), Window(as_utc(start), as_utc(end))), (claimed_at, str(claim_id), str(worker))
            if key not in earliest or rank < earliest[key]:
                earliest[key] = rank
        winners = {key: worker for key, (_, _, worker) in earliest.items()}
        won = {key for key in wanted if winners.get(key) == self.worker}
        lost = {key: winners.get(key, "") for key in wanted if key not in won}
        for (stage, window), other in lost.items():
            log.warning("window claimed by another detector worker; skipping it (do two workers take this model? "
                        "check DRIFTLINE_DETECTOR_SHARD)",
                        extra={"model": model, "stage": stage, "window": str(window), "winner": other,
                               "worker": self.worker})
        return won, lost


_MINE: set[str] = set()  # worker ids made by this process


def new_worker_id() -> str:
    """`host-pid-random`: unique per process, and telling a later run on the same host whether it is alive."""
    made = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    _MINE.add(made)
    return made


def _may_be_alive(worker: str) -> bool:
    """False only for a worker id of this host whose process is gone.

    A restarted `up` would otherwise wait out the lease on its own earlier run's claims, told that
    "another detector worker" holds them. This host's pid of an id this process did not make is an earlier
    run (a container restarted as pid 1 again); a pid reused by another process looks alive, and the lease
    then decides, as it does for workers on other hosts.
    """
    parts = worker.rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return True
    pid = int(parts[1])
    if pid == os.getpid():
        return worker in _MINE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
