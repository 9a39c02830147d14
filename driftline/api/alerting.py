"""Alerts, silences and notification deliveries: list them, acknowledge, silence, replay.

Reads and writes go through the same functions the CLI uses (`alerts.store`,
`alerts.acks`, `alerts.silences`, `alerts.outbox`), so the audit trail names
the token that acted. A team token sees and touches only its team's models:
alerts and deliveries by their model; silences by an equality matcher on
`model` (a team may only create silences that name one of its models).
"""

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts import outbox
from alerts.acks import AckError, acknowledge, acknowledged, episode
from alerts.silences import Matcher, Silence, SilenceError, create_silence, expire_silence, list_silences
from alerts.store import load_states
from driftline.api.auth import Principal
from driftline.api.context import FORBIDDEN, MALFORMED, NOT_FOUND, UNAUTHORIZED, ApiContext
from driftline.api.models import json_row, json_value
from driftline.durations import parse_duration
from driftline.timestamps import as_utc

UTC = dt.timezone.utc
Fingerprint = Annotated[str, Path(pattern="^[0-9a-f]{16}$", description="the alert's fingerprint",
                                  examples=["3f2a9c0d41b7e865"])]
SilenceId = Annotated[str, Path(pattern="^[0-9a-f-]{36}$", description="the silence's id")]
DeliveryId = Annotated[str, Path(pattern="^[0-9a-f-]{36}$", description="the delivery's id")]


class Ack(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is an error, not silently dropped

    comment: str = Field("", max_length=2000, examples=["looking into the feature pipeline"])


class AckAnswer(BaseModel):
    fingerprint: str = Field(examples=["3f2a9c0d41b7e865"])
    episode_started: str = Field(description="start of the acknowledged episode (active_since)",
                                 examples=["2026-12-01T10:00:00+00:00"])
    acknowledged_by: str = Field(description="the token's name", examples=["oncall-ml"])


class SilenceRequest(BaseModel):
    """Matchers as `name=value`, `name!=value`, `name=~regex` or `name!~regex`; `duration` or `ends_at`."""

    model_config = ConfigDict(extra="forbid")  # the author is the token's name, never a field

    matchers: list[str] = Field(min_length=1, max_length=20, examples=[["model=churn", "rule=feature-drift"]])
    comment: str = Field(min_length=1, max_length=2000, examples=["retraining in progress"])
    duration: str | None = Field(None, max_length=32, examples=["2h"])
    ends_at: dt.datetime | None = None
    starts_at: dt.datetime | None = None

    @model_validator(mode="after")
    def _one_end(self) -> "SilenceRequest":
        if (self.duration is None) == (self.ends_at is None):
            raise ValueError("give exactly one of duration or ends_at")
        return self


def _silence_json(s: Silence, now: dt.datetime) -> dict[str, Any]:
    return {"id": s.id, "matchers": [str(m) for m in s.matchers], "author": s.author, "comment": s.comment,
            "starts_at": json_value(s.starts_at), "ends_at": json_value(s.ends_at), "active": s.active(now)}


def _silence_models(matchers: tuple[Matcher, ...] | list[Matcher]) -> set[str]:
    return {m.value for m in matchers if m.name == "model" and m.op == "="}


# OpenAPI links (followed by clients and by schemathesis' stateful tests): a silence's `id` is what expires it.
EXPIRE_OPERATION = "expire_silence"


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(responses={**UNAUTHORIZED, **FORBIDDEN, **NOT_FOUND, **MALFORMED})
    reader, writer = Depends(ctx.needs("read")), Depends(ctx.needs("write"))

    def alert_or_404(fp: str, who: Principal):  # type: ignore[no-untyped-def]
        rows = ctx.client.query("SELECT DISTINCT model FROM alert_states WHERE fingerprint = {f:String}",
                                parameters={"f": fp}).result_rows
        if not rows:
            raise HTTPException(404, f"no alert with fingerprint {fp!r}")
        model = rows[0][0]
        if not ctx.may_see(who, model):
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; alert {fp} belongs to "
                                     f"model {model!r}")
        return load_states(ctx.client, model)[fp]

    def silence_or_404(silence_id: str, who: Principal) -> Silence:
        found = {s.id: s for s in list_silences(ctx.client)}.get(silence_id)
        if found is None:
            raise HTTPException(404, f"no silence with id {silence_id!r}")
        if who.team is not None and not any(ctx.may_see(who, m) for m in _silence_models(found.matchers)):
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; this silence names none "
                                     "of its models")
        return found

    @api.get("/alerts", tags=["alerts"])
    def alerts(who: Annotated[Principal, reader],
               model: Annotated[str | None, Query(max_length=128)] = None,
               status: Annotated[Literal["active", "firing", "pending", "inactive", "all"], Query(
                   description="active: pending or firing")] = "active") -> list[dict[str, Any]]:
        """Alert states of the models this token may see, with who acknowledged the current episode."""
        if model is not None:
            ctx.model_for(model, who)  # 404 / 403
        names = {model} if model is not None else {m.name for m in ctx.visible(who)}
        acks = acknowledged(ctx.client, model)  # one query each, whatever the number of models
        out = []
        for r in sorted(load_states(ctx.client, model).values(), key=lambda r: (r.model, r.rule, r.subject)):
            if r.model not in names:
                continue
            if status == "all" or r.status == status or (status == "active" and r.status != "inactive"):
                ack = acks.get((r.fingerprint, episode(r.active_since))) if r.active_since else None
                out.append({"fingerprint": r.fingerprint, "model": r.model, "model_version": r.model_version,
                            "rule": r.rule, "kind": r.kind, "subject": r.subject, "severity": r.severity,
                            "status": r.status, "since": json_value(r.active_since), "muted": r.muted,
                            "last_value": json_value(r.last_value),
                            "last_window_end": json_value(r.last_window_end),
                            "acknowledged_by": ack[0] if ack else None,
                            "acknowledged_at": json_value(ack[1]) if ack else None})
        return out

    @api.get("/alerts/{fingerprint}", tags=["alerts"], responses=NOT_FOUND)
    def alert(fingerprint: Fingerprint, who: Annotated[Principal, reader]) -> dict[str, Any]:
        """One alert: its state and its audit trail, oldest first."""
        record = alert_or_404(fingerprint, who)
        history = ctx.client.query(
            "SELECT at, event, actor, window_start, window_end, value, detail FROM alert_events "
            "WHERE model = {m:String} AND fingerprint = {f:String} ORDER BY at LIMIT 1000",
            parameters={"m": record.model, "f": fingerprint}).named_results()
        state = {k: json_value(v) for k, v in record.__dict__.items() if k != "updated_at"}
        return {"alert": state, "history": [json_row(h) for h in history]}

    @api.post("/alerts/{fingerprint}/ack", tags=["alerts"], responses={
        **NOT_FOUND, 409: {"description": "the alert is not pending or firing"}})
    def ack(fingerprint: Fingerprint, body: Ack, who: Annotated[Principal, writer]) -> AckAnswer:
        """Acknowledge the alert's current episode: its repeat notifications stop until it resolves."""
        record = alert_or_404(fingerprint, who)
        try:
            since = acknowledge(ctx.client, record, author=f"token:{who.name}", comment=body.comment)
        except AckError as exc:
            raise HTTPException(409, str(exc)) from None
        return AckAnswer(fingerprint=fingerprint, episode_started=since.isoformat(), acknowledged_by=who.name)

    @api.get("/silences", tags=["silences"], responses={200: {"links": {"ExpireFirstSilence": {
        "operationId": EXPIRE_OPERATION, "parameters": {"silence_id": "$response.body#/0/id"}}}}})
    def silences(who: Annotated[Principal, reader],
                 all: Annotated[bool, Query(description="include ended silences")] = False) -> list[dict[str, Any]]:
        """Silences, newest last; by default only those not yet ended."""
        now = dt.datetime.now(UTC)
        names = None if who.team is None else {m.name for m in ctx.visible(who)}
        return [_silence_json(s, now) for s in list_silences(ctx.client)
                if (all or s.ends_at > now) and (names is None or _silence_models(s.matchers) & names)]

    @api.post("/silences", tags=["silences"], status_code=201, responses={
        422: {"description": "bad matcher or time"},
        201: {"links": {"ExpireSilence": {"operationId": EXPIRE_OPERATION, "parameters": {"silence_id": "$response.body#/id"}}}}})
    def add_silence(body: SilenceRequest, who: Annotated[Principal, writer]) -> dict[str, Any]:
        """Mute the notifications of matching alerts for a while (their states still change and are recorded)."""
        now = dt.datetime.now(UTC)
        try:
            matchers = [Matcher.parse(m) for m in body.matchers]
            ends = now + parse_duration(body.duration) if body.duration else body.ends_at
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        if who.team is not None:
            named = _silence_models(matchers)
            if not named or not all(ctx.may_see(who, m) for m in named):
                raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}: a silence needs a "
                                         "`model=NAME` matcher naming one of its models, and no other model")
        try:
            silence = create_silence(ctx.client, matchers, author=f"token:{who.name}", comment=body.comment,
                                     ends_at=as_utc(ends), starts_at=as_utc(body.starts_at), now=now)
        except SilenceError as exc:
            raise HTTPException(422, str(exc)) from None
        return _silence_json(silence, now)

    @api.post("/silences/{silence_id}/expire", tags=["silences"], operation_id=EXPIRE_OPERATION, responses={
        **NOT_FOUND, 409: {"description": "the silence has already ended"}})
    def expire(silence_id: SilenceId, who: Annotated[Principal, writer]) -> dict[str, Any]:
        """End a silence now."""
        silence_or_404(silence_id, who)
        try:
            ended = expire_silence(ctx.client, silence_id, author=f"token:{who.name}")
        except SilenceError as exc:
            raise HTTPException(409, str(exc)) from None
        return _silence_json(ended, dt.datetime.now(UTC))

    @api.get("/deliveries", tags=["deliveries"])
    def deliveries(who: Annotated[Principal, reader],
                   status: Annotated[Literal["pending", "delivered", "dead"] | None, Query()] = None,
                   model: Annotated[str | None, Query(max_length=128)] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        """The notification outbox, newest first."""
        if model is not None:
            ctx.model_for(model, who)
        team_models = None if who.team is None else [m.name for m in ctx.visible(who)]
        found = outbox.list_deliveries(ctx.client, status=status, model=model, models=team_models, limit=limit)
        return [{k: json_value(v) for k, v in d.__dict__.items()} for d in found]

    @api.post("/deliveries/{delivery_id}/replay", tags=["deliveries"], responses={
        **NOT_FOUND, 409: {"description": "the delivery is still pending"}})
    def replay(delivery_id: DeliveryId, who: Annotated[Principal, writer]) -> dict[str, Any]:
        """Queue a dead (or delivered) notification again, from its first attempt, with the same id."""
        found = outbox.get(ctx.client, delivery_id)
        if found is None:
            raise HTTPException(404, f"no delivery with id {delivery_id!r}")
        if not ctx.may_see(who, found.model):
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; this delivery is for "
                                     f"model {found.model!r}")
        try:
            d = outbox.replay(ctx.client, delivery_id, actor=f"token:{who.name}")
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return {"replayed": d.delivery_id, "channel": d.channel, "status": d.status}

    return api
