"""The HTTP API: one FastAPI app over one registry and store, assembled from small routers.

Every endpoint but `/healthz` and `/readyz` needs a bearer token (see
`driftline.api.auth` and `driftline.api.context`); 401 and 403 say what is
missing. Request bodies are bounded (`DRIFTLINE_API_MAX_BODY_BYTES`, larger
for ingest and reference uploads). No `from __future__ import annotations`
here: FastAPI reads the endpoints' annotations at run time.
"""

from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from detectors.config import Registry
from driftline.api import alerting, ingest, metrics, models, references, report
from driftline.api.auth import Authenticator
from driftline.api.context import ApiContext, Reloaded
from driftline.api.docs import serve_docs
from driftline.api.encoding import RefuseUnencodableUrls, validation_error
from driftline.config import Settings
from driftline.privacy import Redactor
from driftline.unknown_models import ModelGate

DESCRIPTION = """Model monitoring and drift detection.

Authenticate with `Authorization: Bearer <token>`; tokens, their scopes (read < write < admin) and optional team
limits are configured in `DRIFTLINE_API_TOKENS_FILE`. Times are ISO 8601 (UTC when no zone is given)."""


def create_app(registry: Registry, authenticator: Authenticator, client_factory: Callable[[], Client], *,
               ready_checks: dict[str, Callable[[], None]] | None = None, settings: Settings | None = None,
               reload: Callable[[], Reloaded] | None = None, redactor: Redactor | None = None,
               gate: ModelGate | None = None, tokens_file: Path | None = None) -> FastAPI:
    """The API; `ready_checks` name the dependencies `/readyz` probes, `reload` re-reads the config files
    (and `tokens_file`, when given, so that tokens removed or changed there stop working at the reload).

    `redactor` holds the privacy policies HTTP ingest applies; by default they come from `registry`, and a
    policy without a key (DRIFTLINE_PRIVACY_KEY[_FILE]) refuses to build the app. `gate` holds the model
    names HTTP ingest counts events of unregistered models against; by default `registry`'s.
    """
    app = FastAPI(title="Driftline", version="1", description=DESCRIPTION, docs_url=None, redoc_url=None)
    serve_docs(app)  # from installed assets: air-gapped sites get them too
    settings = settings or Settings()
    if redactor is None:
        redactor = Redactor(registry.privacy_policies(), settings.privacy_key_bytes())
    ctx = ApiContext(registry, authenticator, client_factory(), settings, reload, redactor=redactor,
                     gate=gate or ModelGate.from_registry(registry), tokens_file=tokens_file)
    ctx.link_secret = ctx.settings.link_secret()  # a bad secret file fails the start, not the first click
    app.state.ctx = ctx
    checks = ready_checks or {"clickhouse": lambda: ctx.client.query("SELECT 1")}
    app.add_middleware(BodyLimit, small=ctx.settings.api_max_body_bytes, bulk=ctx.settings.api_max_upload_bytes)
    app.add_middleware(RefuseUnencodableUrls)
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_middleware(metrics.RequestMetrics, router=app.router)  # outermost: sees the 413s too

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

    app.include_router(models.router(ctx))
    app.include_router(references.router(ctx))
    app.include_router(ingest.router(ctx))
    app.include_router(alerting.router(ctx))
    app.include_router(report.router(ctx))
    app.include_router(metrics.router(ctx))
    return app


def is_bulk(path: str) -> bool:
    """Ingest batches and reference uploads may be larger than other bodies."""
    return path.startswith("/ingest/") or "/references/" in path


class BodyLimit:
    """413 for a body over the limit: by its Content-Length up front, and while it streams (chunked bodies)."""

    def __init__(self, app: ASGIApp, *, small: int, bulk: int) -> None:
        self.app, self.small, self.bulk = app, small, bulk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed = self.bulk if is_bulk(scope["path"]) else self.small
        too_large = JSONResponse({"detail": f"request body larger than {allowed} bytes"}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > allowed):
            await too_large(scope, receive, send)
            return
        if not is_bulk(scope["path"]):
            # Small bodies are read here, whole and bounded, because FastAPI turns any error raised while it
            # parses a body into a 400; the endpoint then gets the bytes as if from the network.
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return
                body += message.get("body", b"")
                if len(body) > allowed:
                    await too_large(scope, receive, send)
                    return
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send)
            return
        # Bulk bodies stream (ingest and uploads read them themselves); the count stops them at the limit.
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > allowed:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(scope, receive, send)


class BodyTooLarge(Exception):
    pass
