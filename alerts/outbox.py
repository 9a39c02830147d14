"""The persisted outbox behind every channel: deliveries survive restarts and are never silently dropped.

A notification is written here (its body once, in `outbox_bodies`, and a
status row in `outbox`) before anyone tries to send it; the dispatcher then
works through due deliveries. Each attempt is recorded in
`delivery_attempts`, and the status row is replaced:

    pending --attempt ok--> delivered
    pending --retryable failure--> pending (next attempt after backoff with full jitter)
    pending --final failure or last attempt--> dead      (`driftline deliveries replay ID` re-queues)

Delivery ids are derived from what is being notified, so an evaluator that
crashed after queueing and runs the same pass again finds the delivery
already there and queues nothing twice. A process killed in the middle of an
attempt leaves the delivery pending: it is attempted again with the same id
(the `webhook-id` idempotency key, or the email's Message-ID), so webhook
receivers that honour the key accept it once. Emails have no such key at the
SMTP level: an email is sent at least once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, fields

from clickhouse_connect.driver.client import Client

from alerts.store import version_stamp
from driftline import metrics
from driftline.timestamps import as_utc

UTC = dt.timezone.utc
NAMESPACE = uuid.UUID("6f1d1c2e-8a53-4f4e-9a57-2f0c3b7d9e10")
STATUSES = ("pending", "delivered", "dead")


def delivery_id(*parts: str) -> str:
    """A deterministic id for a notification: same parts, same id."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join(parts)))


@dataclass
class Delivery:
    delivery_id: str
    channel: str
    kind: str  # email | webhook
    model: str
    event: str  # firing | resolved | test
    fingerprints: list[str]
    subject: str
    status: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str
    created_at: dt.datetime


COLUMNS = [f.name for f in fields(Delivery)]


def _from_row(row: tuple[object, ...]) -> Delivery:
    return Delivery(**{name: as_utc(v) for name, v in zip(COLUMNS, row, strict=True)})  # type: ignore[arg-type]


def write_status(client: Client, deliveries: list[Delivery]) -> None:
    if deliveries:
        client.insert("outbox", [[getattr(d, n) for n in COLUMNS] + [version_stamp()] for d in deliveries],
                      column_names=[*COLUMNS, "updated_at"])


def enqueue(client: Client, items: list[tuple[Delivery, bytes]]) -> list[Delivery]:
    """Queue new deliveries (body first, then status); ids already queued are skipped. Returns those queued."""
    if not items:
        return []
    ids = [d.delivery_id for d, _ in items]
    known = {r[0] for r in client.query("SELECT delivery_id FROM outbox WHERE delivery_id IN {ids:Array(String)}",
                                        parameters={"ids": ids}).result_rows}
    new = [(d, body) for d, body in items if d.delivery_id not in known]
    if not new:
        return []
    client.insert("outbox_bodies", [[d.delivery_id, body, d.created_at] for d, body in new],
                  column_names=["delivery_id", "body", "created_at"])
    write_status(client, [d for d, _ in new])
    for d, _ in new:
        metrics.NOTIFICATIONS_QUEUED.labels(d.kind).inc()
    return [d for d, _ in new]


def due(client: Client, now: dt.datetime, channels: list[str], limit: int = 100) -> list[Delivery]:
    """Pending deliveries of these channels whose next attempt is due, oldest first."""
    rows = client.query(
        f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL WHERE status = 'pending' AND channel IN {{ch:Array(String)}} "
        "AND next_attempt_at <= {now:DateTime64(3, 'UTC')} ORDER BY next_attempt_at, created_at LIMIT {limit:UInt32}",
        parameters={"now": now, "limit": limit, "ch": channels}).result_rows
    return [_from_row(r) for r in rows]


def next_due_at(client: Client, channels: list[str]) -> dt.datetime | None:
    rows = client.query("SELECT min(next_attempt_at), count() FROM outbox FINAL WHERE status = 'pending' "
                        "AND channel IN {ch:Array(String)}", parameters={"ch": channels}).result_rows
    return as_utc(rows[0][0]) if rows and rows[0][1] else None  # type: ignore[return-value]


def held(client: Client, channels: list[str]) -> dict[str, int]:
    """Pending deliveries of channels that are no longer configured: kept, not attempted, not dropped."""
    rows = client.query("SELECT channel, count() FROM outbox FINAL WHERE status = 'pending' "
                        "AND channel NOT IN {ch:Array(String)} GROUP BY channel", parameters={"ch": channels}).result_rows
    return {str(c): int(n) for c, n in rows}


def body_of(client: Client, delivery_id_: str) -> bytes:
    rows = client.query("SELECT body FROM outbox_bodies WHERE delivery_id = {d:String} LIMIT 1",
                        parameters={"d": delivery_id_}, column_formats={"body": "bytes"}).result_rows
    if not rows:
        raise LookupError(f"delivery {delivery_id_} has no body")
    return bytes(rows[0][0])


def get(client: Client, delivery_id_: str) -> Delivery | None:
    rows = client.query(f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL WHERE delivery_id = {{d:String}}",
                        parameters={"d": delivery_id_}).result_rows
    return _from_row(rows[0]) if rows else None


def list_deliveries(client: Client, *, status: str | None = None, model: str | None = None,
                    models: list[str] | None = None, limit: int = 100) -> list[Delivery]:
    """Newest first; `model` or `models` (e.g. a team's) narrow it in the query, not after it."""
    where, params = [], {"limit": limit}
    if status is not None:
        where.append("status = {s:String}")
        params["s"] = status
    if model is not None:
        where.append("model = {m:String}")
        params["m"] = model
    if models is not None:
        where.append("model IN {ms:Array(String)}")
        params["ms"] = models
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = client.query(f"SELECT {', '.join(COLUMNS)} FROM outbox FINAL {clause} ORDER BY created_at DESC "
                        "LIMIT {limit:UInt32}", parameters=params).result_rows
    return [_from_row(r) for r in rows]


def record_attempt(client: Client, d: Delivery, *, at: dt.datetime, outcome: str, detail: str, duration_ms: float,
                   actor: str = "dispatcher") -> None:
    client.insert("delivery_attempts", [[d.delivery_id, d.attempts, d.channel, d.model, at, outcome, detail[:1000],
                                         duration_ms, actor]],
                  column_names=["delivery_id", "attempt", "channel", "model", "at", "outcome", "detail",
                                "duration_ms", "actor"])


def last_webhook_at(client: Client, channel: str, model: str) -> dt.datetime | None:
    """When the last retrain trigger for `model` on `channel` was queued (for the cooldown)."""
    rows = client.query("SELECT max(created_at), count() FROM outbox FINAL WHERE channel = {c:String} "
                        "AND model = {m:String} AND kind = 'webhook' AND event = 'firing' AND status != 'dead'",
                        parameters={"c": channel, "m": model}).result_rows
    return as_utc(rows[0][0]) if rows and rows[0][1] else None  # type: ignore[return-value]


def replay(client: Client, delivery_id_: str, *, actor: str, now: dt.datetime | None = None) -> Delivery:
    """Queue a delivery again from its first attempt (a dead one, or a delivered one sent again on purpose)."""
    now = now or dt.datetime.now(UTC)
    found = get(client, delivery_id_)
    if found is None:
        raise LookupError(f"no delivery with id {delivery_id_!r}")
    if found.status == "pending":
        raise ValueError(f"delivery {delivery_id_} is already pending (attempt {found.attempts + 1} is due at "
                         f"{found.next_attempt_at.isoformat()})")
    found.status, found.attempts, found.next_attempt_at, found.last_error = "pending", 0, now, ""
    write_status(client, [found])
    record_attempt(client, found, at=now, outcome="replayed", detail="queued again", duration_ms=0.0, actor=actor)
    return found
