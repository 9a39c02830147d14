"""`POST /ingest/{kind}`: batches of v1 events over HTTP, for teams without Kafka.

A batch is a JSON array of events (`application/json`) or one event per line
(`application/x-ndjson`). Each event keeps its exact bytes and goes through
the collector's validation: valid events are stored, the others become dead
letters (raw bytes and reason), and the answer lists the first reasons by
position. A team token may only post events of its team's models: a batch
naming another model is refused whole (403) before anything is stored. The
model of each event is read by the collector's own validator, the parser the
store and the detectors follow; an event it refuses could not be attributed
to a team (a truncated line, a repeated key, a name hidden elsewhere in the
bytes), so a team token's batch holding one is refused whole (422, with the
reasons by position) instead of leaving a dead letter another team's
data-quality check might count.
"""

import logging
from typing import Annotated, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from collector.http_source import HttpIngest
from collector.sink import StoreUnavailable
from driftline.api.auth import Principal
from driftline.api.context import FORBIDDEN, UNAUTHORIZED, ApiContext
from driftline.contracts import ContractError, EventKind, EventValidator

log = logging.getLogger(__name__)
KINDS = {"predictions": EventKind.PREDICTION, "labels": EventKind.LABEL, "metrics": EventKind.METRIC}
MAX_EVENTS = 100_000
MAX_REPORTED = 100
NDJSON_TYPES = {"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"}
Kind = Annotated[Literal["predictions", "labels", "metrics"], Path(description="the event contract (v1)")]
EXAMPLES = {
    "predictions": {"event_id": "7f1c2a", "model": "churn", "model_version": "3", "ts": "2026-12-01T10:00:00Z",
                    "features": {"tenure_months": 12, "contract": "monthly", "monthly_charges": None},
                    "prediction": "1", "proba": {"0": 0.3, "1": 0.7}, "latency_ms": 4.2},
    "labels": {"event_id": "7f1c2a", "model": "churn", "ts": "2026-12-03T08:00:00Z", "label": "0"},
    "metrics": {"model": "churn", "instance": "churn-api-0:8080", "ts": "2026-12-01T10:00:00Z",
                "metrics": {"latency_p99_ms": 61.5, "rps": 40, "error_rate": 0.01}},
}


class EventError(BaseModel):
    index: int = Field(description="position of the event in the batch (0-based)", examples=[3])
    error_kind: str = Field(examples=["invalid_type"])
    error: str = Field(examples=["feature 'age': Expected `boolean | number | string | null`, got `array` - at `$.features.age`"])


class IngestResult(BaseModel):
    """What happened to a batch: stored rows, dead letters (with their first reasons)."""

    accepted: int = Field(description="events stored", examples=[998])
    dead_lettered: int = Field(description="events kept as dead letters with their reason", examples=[2])
    errors: list[EventError] = Field(description=f"the first {MAX_REPORTED} dead letters' reasons")
    unknown_models: list[str] = Field(description="models the batch names that the registry does not define: their "
                                                  "events are stored (detectors start once registered), or dead-"
                                                  "lettered (reason unknown_model) with the registry's "
                                                  "`unknown_models: dead_letter`")


class _Model(msgspec.Struct):
    model: str = ""


def split_batch(body: bytes, content_type: str) -> list[bytes]:
    """The events of a body, each as its own bytes; 400 if a JSON body is not an array."""
    media = content_type.split(";")[0].strip().lower()
    if media in NDJSON_TYPES or (not media and not body.lstrip().startswith(b"[")):
        return [line for line in body.split(b"\n") if line.strip()]
    try:
        return [bytes(raw) for raw in msgspec.json.decode(body, type=list[msgspec.Raw])]
    except (msgspec.DecodeError, RecursionError) as exc:
        reason = "nested too deeply to decode" if isinstance(exc, RecursionError) else str(exc)
        raise HTTPException(400, f"the body is not a JSON array of events ({reason}); send one event per line as "
                                 "application/x-ndjson to have each bad event dead-lettered instead") from None


def models_named(events: list[bytes]) -> set[str]:
    """The `model` of every event that parses far enough to have one (the rest is the validator's business)."""
    decoder = msgspec.json.Decoder(_Model)
    names = set()
    for raw in events:
        try:
            names.add(decoder.decode(raw).model)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            continue
    names.discard("")
    return names


def models_validated(kind: EventKind, events: list[bytes], max_event_bytes: int) -> set[str]:
    """The `model` of every event as the collector's validator reads it; 422 when any event fails it."""
    validator = EventValidator(kind, max_event_bytes)
    names, invalid = set(), []
    for i, raw in enumerate(events):
        try:
            names.add(validator.validate(raw).model)
        except ContractError as exc:
            invalid.append(f"#{i} {exc.kind}: {exc}")
    if invalid:
        raise HTTPException(422, f"{len(invalid)} events are not valid {kind.value} events, and a team-limited "
                                 "token's events must be (an invalid one cannot be attributed to a team); nothing "
                                 "was stored: " + "; ".join(invalid[:10]))
    return names


def public_reason(error_kind: str, error: str) -> str:
    """A dead letter's reason as the sender may read it: the validator's own words, never the store's.

    ClickHouse's text for a refused row names the server's version, tables and
    settings; it stays in the dead-letter table for an operator.
    """
    if error_kind == "store_rejected":
        return "the store refused this event; its reason is kept with the dead letter for an operator"
    return error


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["ingest"], responses={**UNAUTHORIZED, **FORBIDDEN})
    sink = HttpIngest(ctx.client, partition=ctx.settings.api_ingest_partition,
                      max_event_bytes=ctx.settings.max_event_bytes, redactor=ctx.redactor, gate=ctx.gate)
    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": {}, "description": "v1 events of the path's "
                                        "kind; an element that is not one is dead-lettered, not refused"},
                             "examples": {k: {"value": [v]} for k, v in EXAMPLES.items()}},
        "application/x-ndjson": {"schema": {"type": "string"}, "example": "\n".join(
            msgspec.json.encode(EXAMPLES["predictions"]).decode() for _ in range(2)) + "\n"},
    }}}

    @api.post("/ingest/{kind}", openapi_extra=body_doc, responses={
        400: {"description": "a JSON body that is not an array of events"},
        422: {"description": "a team-limited token's batch holding an invalid event (nothing is stored)"},
        413: {"description": "body or batch too large"},
        503: {"description": "the store is unavailable; retry the batch (delivery is at least once)"}})
    async def ingest(kind: Kind, request: Request, who: Annotated[Principal, Depends(ctx.needs("write"))]) -> IngestResult:
        """Store a batch of events of one kind; invalid ones become dead letters, explained in the answer."""
        events = split_batch(await request.body(), request.headers.get("content-type", ""))
        if len(events) > MAX_EVENTS:
            raise HTTPException(413, f"at most {MAX_EVENTS} events per request, got {len(events)}")
        if who.team is None:
            named = models_named(events)
        else:
            named = models_validated(KINDS[kind], events, ctx.settings.max_event_bytes)
            foreign = sorted(m for m in named if not ctx.may_see(who, m))
            if foreign:
                raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; the batch names "
                                         f"other models: {foreign[:10]}; nothing was stored")
        try:
            outcome = await run_in_threadpool(sink.write, KINDS[kind], events) if events else None
        except StoreUnavailable as exc:  # the store's own text stays in the log: it describes the server, not the batch
            log.warning("ingest refused: store unavailable", extra={"kind": kind.value, "reason": str(exc)})
            raise HTTPException(503, "the store is unavailable (the reason is in the service log); retry the "
                                     "batch") from None
        letters = sorted(outcome.dead_letters, key=lambda d: d.origin.offset) if outcome else []
        base = outcome.first_offset if outcome else 0
        return IngestResult(accepted=outcome.written if outcome else 0, dead_lettered=len(letters),
                            errors=[EventError(index=d.origin.offset - base, error_kind=d.error_kind,
                                               error=public_reason(d.error_kind, d.error))
                                    for d in letters[:MAX_REPORTED]],
                            unknown_models=ctx.gate.unknown(named))

    return api
