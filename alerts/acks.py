"""Acknowledging an alert: a person says "I know, I am on it", and the repeats stop for that episode.

An acknowledgement belongs to one episode of one alert, (fingerprint,
active_since): once the alert resolves and fires again, it is a new episode
and notifies as usual. It holds back repeat notifications only; the first
firing notice and the resolve notice still go out; repeats on every channel
(emails and retrain triggers) are held until the episode ends. Stored append-only in
`alert_acks` (never in `alert_states`, which the evaluator rewrites) and
recorded in the audit trail.
"""

from __future__ import annotations

import datetime as dt

from clickhouse_connect.driver.client import Client

from alerts.store import AlertRecord, event_of, record_events
from driftline.timestamps import as_utc

UTC = dt.timezone.utc


class AckError(ValueError):
    """The alert cannot be acknowledged now; the message says why."""


def acknowledge(client: Client, record: AlertRecord, *, author: str, comment: str,
                now: dt.datetime | None = None) -> dt.datetime:
    """Acknowledge the current episode of `record`; returns the episode's start."""
    now = now or dt.datetime.now(UTC)
    if record.active_since is None or record.status == "inactive":
        raise AckError(f"alert {record.fingerprint} is not pending or firing (status {record.status}); "
                       "there is nothing to acknowledge")
    if not author.strip():
        raise AckError("an acknowledgement needs an author")
    since = episode(record.active_since)
    client.insert("alert_acks", [[record.fingerprint, record.model, since, now, author[:200], comment[:2000]]],
                  column_names=["fingerprint", "model", "active_since", "acknowledged_at", "author", "comment"])
    record_events(client, [event_of(record, "acknowledged", now, actor=author[:200], detail=comment[:2000])])
    return since


def acknowledged(client: Client, model: str | None) -> dict[tuple[str, dt.datetime], tuple[str, dt.datetime]]:
    """(fingerprint, episode start) -> (who, when) of the first acknowledgement, for one model's alerts (None: all)."""
    where = "WHERE model = {m:String} " if model is not None else ""
    rows = client.query(
        "SELECT fingerprint, active_since, argMin(author, acknowledged_at), min(acknowledged_at) FROM alert_acks "
        f"{where}GROUP BY fingerprint, active_since", parameters={"m": model} if model is not None else None).result_rows
    return {(fp, episode(since)): (who, as_utc(at)) for fp, since, who, at in rows}  # type: ignore[misc]


def episode(active_since: dt.datetime) -> dt.datetime:
    """An episode's start as the store keeps it (UTC, milliseconds), so keys from memory and store compare equal."""
    t = as_utc(active_since)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)
