"""Alert states and the audit trail in ClickHouse.

`alert_states` holds one row per alert and change (ReplacingMergeTree on
`updated_at`, read with FINAL); `alert_events` is append-only: every
transition, suppression, notification and human action, with who did it.
`updated_at` comes from `version_stamp`, which never goes backwards within a
process, so the latest write wins even when evaluation runs on an injected
clock (tests) or twice in one microsecond.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from dataclasses import dataclass, field, fields

from clickhouse_connect.driver.client import Client

from alerts.lifecycle import AlertState, Status
from driftline.timestamps import as_utc

UTC = dt.timezone.utc

_stamp_lock = threading.Lock()
_last_stamp = 0


def version_stamp() -> dt.datetime:
    """Wall-clock time in microseconds, strictly increasing within this process."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns() // 1000, _last_stamp + 1)
        return dt.datetime.fromtimestamp(_last_stamp / 1e6, UTC)


def fingerprint(labels: dict[str, str]) -> str:
    """Stable identity of an alert: a hash of its sorted identifying labels (rule, model, version, subject)."""
    canonical = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class AlertRecord:
    """An alert as stored: identity, lifecycle state, evaluation cursor and notification bookkeeping."""

    fingerprint: str
    rule: str
    model: str
    model_version: str
    kind: str
    subject: str
    severity: str
    labels: dict[str, str]
    status: str = Status.INACTIVE.value  # inactive | pending | firing (resolved alerts are inactive again)
    bad_streak: int = 0
    good_streak: int = 0
    active_since: dt.datetime | None = None
    evaluated_until: dt.datetime | None = None  # end of the last window this alert has seen
    last_value: float | None = None
    last_window_start: dt.datetime | None = None
    last_window_end: dt.datetime | None = None
    notified_firing_at: dt.datetime | None = None  # last firing notification of this episode
    notifications: int = 0  # firing notifications sent in this episode
    muted: str = ""  # why notifications are held back now: "" | "silenced:<id>" | "inhibited:<fingerprint>"
    updated_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def state(self) -> AlertState:
        since = self.active_since.isoformat() if self.active_since else None
        return AlertState(Status(self.status), self.bad_streak, self.good_streak, since)

    def apply(self, state: AlertState) -> None:
        self.status = state.status.value
        self.bad_streak, self.good_streak = state.bad_streak, state.good_streak
        self.active_since = dt.datetime.fromisoformat(state.active_since) if state.active_since else None


STATE_COLUMNS = [f.name for f in fields(AlertRecord)]


def load_states(client: Client, model: str | None = None) -> dict[str, AlertRecord]:
    """The latest state of every alert (of one model, if given)."""
    where = "WHERE model = {m:String}" if model is not None else ""
    rows = client.query(f"SELECT {', '.join(STATE_COLUMNS)} FROM alert_states FINAL {where}",
                        parameters={"m": model} if model is not None else None).result_rows
    out = {}
    for row in rows:
        record = AlertRecord(**{name: as_utc(v) for name, v in zip(STATE_COLUMNS, row, strict=True)})
        record.labels = dict(record.labels)
        out[record.fingerprint] = record
    return out


def save_states(client: Client, records: list[AlertRecord]) -> None:
    if not records:
        return
    rows = []
    for record in records:
        record.updated_at = version_stamp()
        rows.append([getattr(record, name) for name in STATE_COLUMNS])
    client.insert("alert_states", rows, column_names=STATE_COLUMNS)


@dataclass(frozen=True)
class AlertEvent:
    """One line of the audit trail."""

    at: dt.datetime
    event: str  # pending, fired, resolved, cancelled, silenced, inhibited, unmuted, queued, cooldown, ...
    actor: str  # "evaluator", "dispatcher" or the person who acted
    fingerprint: str = ""
    rule: str = ""
    model: str = ""
    model_version: str = ""
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    value: float | None = None
    detail: str = ""


EVENT_COLUMNS = [f.name for f in fields(AlertEvent)]


def record_events(client: Client, events: list[AlertEvent]) -> None:
    if events:
        client.insert("alert_events", [[getattr(e, n) for n in EVENT_COLUMNS] for e in events],
                      column_names=EVENT_COLUMNS)


def event_of(record: AlertRecord, event: str, at: dt.datetime, *, actor: str = "evaluator", detail: str = "",
             window: tuple[dt.datetime, dt.datetime] | None = None, value: float | None = None) -> AlertEvent:
    return AlertEvent(at=at, event=event, actor=actor, fingerprint=record.fingerprint, rule=record.rule,
                      model=record.model, model_version=record.model_version,
                      window_start=window[0] if window else None, window_end=window[1] if window else None,
                      value=value, detail=detail)
