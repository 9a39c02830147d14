"""The HTTP API (first slice): health, models, their status and their detector results.

Every endpoint but `/healthz` and `/readyz` needs a bearer token (see
`driftline.api.auth`); 401 and 403 say what is missing. Model names in paths
are held to the identifier pattern, time ranges and page sizes are bounded,
and every value reaches ClickHouse as a query parameter. Results are read
with FINAL (the result tables are ReplacingMergeTrees). No `from __future__
import annotations` here: FastAPI reads the endpoints' annotations at run time.
"""


import datetime as dt
from collections.abc import Callable
from typing import Annotated, Any

from clickhouse_connect.driver.client import Client
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from detectors.config import ModelSpec, Registry
from driftline.api.auth import Authenticator, Principal, Scope
from driftline.names import IDENTIFIER_PATTERN
from driftline.timestamps import as_utc

MAX_SPAN = dt.timedelta(days=400)
MAX_BODY_BYTES = 1 << 20
ModelName = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$", description="a model of the registry")]
RESULT_TABLES = {
    "drift": ("drift_results", "column", ["column", "column_role", "column_type", "method", "statistic", "p_value",
                                          "adjusted_p_value", "score", "threshold", "effect_size", "drifted", "status",
                                          "reference_rows", "current_rows"]),
    "quality": ("quality_results", "check", ["column", "check", "value", "threshold", "failed", "status", "rows"]),
    "performance": ("performance_results", "metric", ["metric", "value", "baseline", "ci_low", "ci_high", "max_drop",
                                                      "degraded", "status", "labelled_rows", "prediction_rows"]),
}


class Page(BaseModel):
    items: list[dict[str, Any]]
    limit: int
    offset: int
    next_offset: int | None


class ModelSummary(BaseModel):
    name: str
    task: str
    owner: str | None
    features: list[str]
    window_seconds: float


def _summary(m: ModelSpec) -> ModelSummary:
    return ModelSummary(name=m.name, task=m.task.value, owner=m.owner, features=list(m.features),
                        window_seconds=m.window.total_seconds())


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return as_utc(v).isoformat()
    if isinstance(v, float) and v != v:
        return None
    return v


def create_app(registry: Registry, authenticator: Authenticator, client_factory: Callable[[], Client], *,
               ready_checks: dict[str, Callable[[], None]] | None = None) -> FastAPI:
    """The API over one registry and store; `ready_checks` name the dependencies `/readyz` probes."""
    app = FastAPI(title="Driftline", version="1", description="Model monitoring and drift detection.")
    client = client_factory()
    checks = ready_checks or {"clickhouse": lambda: client.query("SELECT 1")}

    @app.middleware("http")
    async def limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    def principal(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise HTTPException(401, "missing bearer token: send `Authorization: Bearer <token>` (tokens are "
                                     "configured in DRIFTLINE_API_TOKENS_FILE)", headers={"WWW-Authenticate": "Bearer"})
        found = authenticator.identify(token.strip())
        if found is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        return found

    def needs(scope: Scope) -> Callable[[Principal], Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.allows(scope):
                raise HTTPException(403, f"token {who.name!r} has scope {who.scope!r}; this needs {scope!r}")
            return who
        return check

    def visible(who: Principal) -> list[ModelSpec]:
        return [m for m in registry.models if who.team is None or m.owner == who.team]

    def model_for(name: str, who: Principal) -> ModelSpec:
        spec = next((m for m in registry.models if m.name == name), None)
        if spec is None:
            raise HTTPException(404, f"unknown model {name!r}")
        if who.team is not None and spec.owner != who.team:
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; model {name!r} is not "
                                     "one of its models")
        return spec

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up (no dependency is checked)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "a dependency is unavailable"}})
    def readyz() -> JSONResponse:
        """Every dependency answers: ClickHouse (and Kafka, when configured)."""
        report, ok = {}, True
        for name, check in checks.items():
            try:
                check()
                report[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - the reason is the answer
                report[name] = f"unavailable: {type(exc).__name__}"
                ok = False
        return JSONResponse({"ready": ok, **report}, status_code=200 if ok else 503)

    @app.get("/models", tags=["models"])
    def models(who: Annotated[Principal, Depends(needs("read"))]) -> list[ModelSummary]:
        """The models of the registry this token may see."""
        return [_summary(m) for m in visible(who)]

    @app.get("/models/{model}", tags=["models"])
    def model_detail(model: ModelName, who: Annotated[Principal, Depends(needs("read"))]) -> dict[str, Any]:
        """One model's full registry entry."""
        return model_for(model, who).model_dump(mode="json")

    @app.get("/models/{model}/status", tags=["models"])
    def status(model: ModelName, who: Annotated[Principal, Depends(needs("read"))]) -> dict[str, Any]:
        """The latest window's dataset drift, the latest performance verdicts and the alerts firing now."""
        spec = model_for(model, who)
        drift = client.query(
            "SELECT window_start, window_end, status, score FROM drift_results FINAL WHERE model = {m:String} "
            "AND segment = '' AND column = '__dataset__' ORDER BY window_end DESC LIMIT 1",
            parameters={"m": spec.name}).named_results()
        perf = client.query(
            "SELECT metric, argMax(value, window_end) AS value, argMax(status, window_end) AS status FROM "
            "performance_results FINAL WHERE model = {m:String} AND segment = '' GROUP BY metric ORDER BY metric",
            parameters={"m": spec.name}).named_results()
        firing = client.query(
            "SELECT rule, subject, severity, active_since FROM alert_states FINAL WHERE model = {m:String} "
            "AND status = 'firing' ORDER BY rule, subject", parameters={"m": spec.name}).named_results()
        latest = next(iter(drift), None)
        return {"model": spec.name,
                "drift": {k: _json_value(v) for k, v in latest.items()} if latest else None,
                "performance": [{k: _json_value(v) for k, v in r.items()} for r in perf],
                "firing_alerts": [{k: _json_value(v) for k, v in r.items()} for r in firing]}

    def results(kind: str):  # type: ignore[no-untyped-def]
        table, key, columns = RESULT_TABLES[kind]

        def endpoint(
            model: ModelName,
            who: Annotated[Principal, Depends(needs("read"))],
            start: Annotated[dt.datetime | None, Query(description="windows ending after this (ISO 8601)")] = None,
            end: Annotated[dt.datetime | None, Query(description="windows starting before this")] = None,
            segment: Annotated[str, Query(max_length=300, description="`key=value`; empty: all rows")] = "",
            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
            offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        ) -> Page:
            spec = model_for(model, who)
            end_ = as_utc(end) if end else dt.datetime.now(dt.timezone.utc)
            start_ = as_utc(start) if start else end_ - dt.timedelta(days=1)
            if start_ >= end_:
                raise HTTPException(422, "start must be before end")
            if end_ - start_ > MAX_SPAN:
                raise HTTPException(422, f"the time range may span at most {MAX_SPAN.days} days")
            rows = client.query(
                f"SELECT window_start, window_end, model_version, segment, {', '.join(columns)} FROM {table} FINAL "
                "WHERE model = {m:String} AND segment = {seg:String} AND window_end > {s:DateTime64(3, 'UTC')} "
                "AND window_start < {e:DateTime64(3, 'UTC')} "
                f"ORDER BY window_start, {key} LIMIT {{lim:UInt32}} OFFSET {{off:UInt32}}",
                parameters={"m": spec.name, "seg": segment, "s": start_, "e": end_, "lim": limit + 1,
                            "off": offset}).named_results()
            items = [{k: _json_value(v) for k, v in r.items()} for r in rows]
            more = len(items) > limit
            return Page(items=items[:limit], limit=limit, offset=offset, next_offset=offset + limit if more else None)

        endpoint.__name__ = f"{kind}_results"
        endpoint.__doc__ = f"{kind.capitalize()} results of the model's windows in [start, end), oldest first."
        return endpoint

    for kind in RESULT_TABLES:
        app.get(f"/models/{{model}}/{kind}", tags=["results"], name=f"{kind} results")(results(kind))
    return app

