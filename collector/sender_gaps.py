"""The collector's log line for events a PredictionLogger sent and Driftline never stored.

See driftline/sequences.py for how they are counted, and why exactly. A gap can also be
momentary: an event still in flight (read from one partition while an earlier
one waits in another, or being resent by the logger after a broker outage)
fills it moments later. So the collector's log names a gap only once it has
lasted from one check to the next (`SenderGapWatch`), while `db status` and
/metrics show the count as it is now.
"""

from __future__ import annotations

import logging
import time

from clickhouse_connect.driver.client import Client

from driftline.sequences import sender_gaps

log = logging.getLogger(__name__)

CHECK_EVERY_S = 30.0


class SenderGapWatch:
    """Logs, at error level, each sender's missing events once they lasted from one check to the next."""

    def __init__(self, client: Client, every_s: float = CHECK_EVERY_S) -> None:
        self._client = client
        self._every_s = every_s
        self._last_check = time.monotonic()
        self._previous: dict[str, int] = {}  # sender -> missing at the last check
        self._reported: dict[str, int] = {}  # sender -> missing already logged

    def maybe_check(self) -> None:
        now = time.monotonic()
        if now - self._last_check < self._every_s:
            return
        self._last_check = now
        try:
            gaps = sender_gaps(self._client, limit=1000)
        except Exception as exc:  # the store is failing: the writer reports it; the next check tries again
            log.debug("sender gap check failed", extra={"error": type(exc).__name__})
            return
        current = {g.sender: g for g in gaps}
        for sender, gap in current.items():
            lasting = min(gap.missing, self._previous.get(sender, 0))
            if lasting > self._reported.get(sender, 0):
                log.error("events a PredictionLogger sent were never stored: a broker lost them after "
                          "acknowledging them (or, rarely, the logger dropped them and reported it)",
                          extra={"sender": sender, "events_missing": lasting, "highest_sequence": gap.highest,
                                 "events_stored": gap.stored,
                                 "newly_missing": lasting - self._reported.get(sender, 0)})
                self._reported[sender] = lasting
        self._previous = {s: g.missing for s, g in current.items()}
