"""`GET /metrics`: Driftline's own Prometheus metrics, and the middleware that counts the API's requests.

The metrics themselves are defined in `driftline.metrics`. The endpoint needs
a `read` token without a team limit (the exposition names every team's
models); Prometheus sends it with `authorization: {credentials: ...}` in its
scrape config. Requests are labelled by route template (`/models/{model}`),
never by raw path: a path no route matches counts as `unmatched`. No `from
__future__ import annotations`: FastAPI reads annotations at run time.
"""

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftline import metrics
from driftline.api.auth import Principal
from driftline.api.context import FORBIDDEN, UNAUTHORIZED, ApiContext
from driftline.metrics import HTTP_IN_FLIGHT, HTTP_REQUESTS, HTTP_SECONDS, UNMATCHED, StoreGauges

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
EXAMPLE = """# HELP driftline_collector_events_stored_total Events written to their ClickHouse table ...
# TYPE driftline_collector_events_stored_total counter
driftline_collector_events_stored_total{kind="prediction"} 120345.0
"""


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["health"], responses={**UNAUTHORIZED, **FORBIDDEN})
    store = StoreGauges(lambda: ctx.client)

    @api.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {"example": EXAMPLE}},
                              "description": "Prometheus text exposition format 0.0.4"}})
    def prometheus(who: Annotated[Principal, Depends(ctx.needs("read"))]) -> Response:
        """Driftline's own counters, gauges and histograms (collector, detectors, notifications, API, process)."""
        if who.team is not None:
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; the service metrics "
                                     "cover every team's models: use a token without a team")
        return Response(metrics.exposition(store), media_type=CONTENT_TYPE)

    return api


def route_template(router: Router, scope: Scope) -> str:
    """The path template of the route that served (or would serve) `scope`, else `unmatched`."""
    route = scope.get("route")
    if route is None:  # answered before routing (e.g. 413 by Content-Length): match it ourselves
        partial = None
        for candidate in router.routes:
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
            if match is Match.PARTIAL and partial is None:
                partial = candidate
        route = route or partial
    return getattr(route, "path", None) or UNMATCHED


class RequestMetrics:
    """Counts each HTTP request by method, route template and status, and times it until its response is sent."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app, self.router = app, router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception before the response started is a 500 (ServerErrorMiddleware sends it)
        started = time.perf_counter()

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, recording_send)
        finally:
            HTTP_IN_FLIGHT.dec()
            method, route = metrics.http_method(scope["method"]), route_template(self.router, scope)
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
