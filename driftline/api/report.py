"""The drift report as an HTML page: `GET /models/{model}/report`, Evidently's DataDriftPreset for one window.

The page is what `driftline report` writes (`detectors.report.render_report`,
one bounded, deterministic sample per side), for the window asked for or the
model's latest complete window. Rendering takes seconds, so it runs on a
worker thread (a sync endpoint), at most `RENDERERS` at a time, and the page is
kept in a small LRU per (model, window, sample_rows) for `CACHE_SECONDS`, so
a reload, or a team opening the same alert email, is instant.

Auth: the `read` scope and the token's team limit, as everywhere; or, for this
endpoint alone, a signed link (`expires` and `sig`, see `driftline.api.links`),
which is what alert emails carry when a link secret is configured. No `from
__future__ import annotations`: FastAPI reads annotations at run time.
"""

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response

from detectors.config import ModelSpec
from detectors.report import NothingToReport, render_report, report_window
from detectors.sources import Window
from driftline.api import links
from driftline.api.auth import Principal
from driftline.api.context import FORBIDDEN, UNAUTHORIZED, ApiContext
from driftline.api.models import ModelName, time_range

log = logging.getLogger(__name__)

MIN_SAMPLE_ROWS, MAX_SAMPLE_ROWS, DEFAULT_SAMPLE_ROWS = 100, 200_000, 50_000
CACHE_ENTRIES = 8  # a page is 3 to 5 MB (Evidently inlines its scripts)
CACHE_SECONDS = 600.0  # late events may still change a window: a cached page is at most this old
RENDERERS = 2
LINK_PRINCIPAL = Principal(name="signed-link", scope="read", team=None)
MAX_EXPIRES = 253_402_300_799  # 9999-12-31T23:59:59Z

Key = tuple[str, dt.datetime, dt.datetime, int]


class ReportCache:
    """A bounded LRU of rendered pages; concurrent requests for one key render it once."""

    def __init__(self, entries: int = CACHE_ENTRIES, seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.entries, self.seconds, self.clock = entries, seconds, clock
        self._pages: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._rendering: dict[Key, threading.Lock] = {}
        self._renderers = threading.BoundedSemaphore(RENDERERS)

    def _cached(self, key: Key) -> bytes | None:
        with self._lock:
            hit = self._pages.get(key)
            if hit is None:
                return None
            if self.clock() - hit[0] > self.seconds:
                del self._pages[key]
                return None
            self._pages.move_to_end(key)
            return hit[1]

    def get(self, key: Key, render: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(page, from_cache)."""
        page = self._cached(key)
        if page is not None:
            return page, True
        with self._lock:
            key_lock = self._rendering.setdefault(key, threading.Lock())
        with key_lock:
            page = self._cached(key)  # rendered by the request we waited for
            if page is not None:
                return page, True
            try:
                with self._renderers:
                    page = render()
            finally:
                with self._lock:
                    self._rendering.pop(key, None)
            with self._lock:
                self._pages[key] = (self.clock(), page)
                self._pages.move_to_end(key)
                while len(self._pages) > self.entries:
                    self._pages.popitem(last=False)
            return page, False


Start = Annotated[dt.datetime | None, Query(description="window start (ISO 8601); give start and end, or neither "
                                                        "for the latest complete window",
                                            examples=["2026-11-30T10:00:00Z"])]
End = Annotated[dt.datetime | None, Query(description="window end (exclusive)", examples=["2026-11-30T11:00:00Z"])]
SampleRows = Annotated[int, Query(ge=MIN_SAMPLE_ROWS, le=MAX_SAMPLE_ROWS,
                                  description="rows sampled per side (reference and window)")]
Expires = Annotated[int | None, Query(ge=0, le=MAX_EXPIRES, description="signed links: expiry, Unix seconds")]
Sig = Annotated[str | None, Query(max_length=128, description="signed links: hex HMAC-SHA256 (see docs/reference.md, HTTP API)")]

REPORT_CSP = ("sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
              "img-src data: blob:; font-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The report page runs in a sandbox: a unique origin (no cookies, storage or same-origin requests to the
service), its own inline scripts and styles only (the page is self-contained), nothing fetched or sent."""

RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/html": {}}, "description": "the report, one self-contained HTML page"},
    404: {"description": "no such model, or the window has no predictions"},
    409: {"description": "the model's reference has no rows (not uploaded yet, or an empty range)"},
    422: {"description": "start without end, an inverted or too long range, or a sample size out of bounds"},
}


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["report"], responses={**UNAUTHORIZED, **FORBIDDEN})
    cache = ReportCache()
    reader = ctx.needs("read")

    def caller(request: Request, model: str, start: dt.datetime | None, end: dt.datetime | None,
               expires: int | None, sig: str | None) -> Principal:
        """The signed link's principal if the link is valid; else the bearer token's (or 401)."""
        if expires is not None or sig is not None:
            problem = links.check(ctx.link_secret, links.report_path(model), model, start, end, expires, sig)
            if problem is None:
                return LINK_PRINCIPAL
            if not request.headers.get("authorization"):
                raise HTTPException(401, f"{problem}; open a fresh link, or send `Authorization: Bearer <token>`",
                                    headers={"WWW-Authenticate": "Bearer"})
        return reader(ctx.principal(request))

    def window_of(spec: ModelSpec, start: dt.datetime | None, end: dt.datetime | None) -> Window:
        if (start is None) != (end is None):
            raise HTTPException(422, "give start and end, or neither (the latest complete window)")
        if start is None:
            return report_window(spec, None, None)
        start_, end_ = (t.astimezone(dt.timezone.utc) for t in time_range(start, end))
        return Window(start_, end_)

    @api.get("/models/{model}/report", response_class=Response, responses=RESPONSES)
    def report(request: Request, model: ModelName, start: Start = None, end: End = None,
               sample_rows: SampleRows = DEFAULT_SAMPLE_ROWS, expires: Expires = None, sig: Sig = None) -> Response:
        """Evidently's data drift report (DataDriftPreset) of one window, as an HTML page.

        Reference and window are each a deterministic sample of `sample_rows` rows; the stored verdicts
        (`/models/{model}/drift`) come from every row. The first render of a window takes seconds; the
        page is then cached for a few minutes. Alert emails link here with a signed link when the server
        has a link secret (`expires` and `sig`), so the link opens without a token until it expires.
        """
        who = caller(request, model, start, end, expires, sig)
        if who is LINK_PRINCIPAL and sample_rows != DEFAULT_SAMPLE_ROWS:
            # The signature covers model and window only: a link holder choosing the sample would force a
            # fresh render per value. The link renders what the email meant; another sample needs a token.
            if not request.headers.get("authorization"):
                raise HTTPException(403, f"a signed link renders the default sample ({DEFAULT_SAMPLE_ROWS} rows); "
                                         "another sample_rows needs `Authorization: Bearer <token>`")
            who = reader(ctx.principal(request))
        spec = ctx.model_for(model, who)
        window = window_of(spec, start, end)

        def render() -> bytes:
            began = time.monotonic()
            page = render_report(ctx.client, spec, window, sample_rows=sample_rows).encode("utf-8")
            log.info("drift report rendered", extra={"model": spec.name, "window": str(window),
                                                     "sample_rows": sample_rows, "bytes": len(page),
                                                     "seconds": round(time.monotonic() - began, 2)})
            return page

        try:
            page, cached = cache.get((spec.name, window.start, window.end, sample_rows), render)
        except NothingToReport as exc:
            if exc.side == "reference":
                raise HTTPException(409, f"model {spec.name!r} has no reference rows for {window} (is its "
                                         "reference uploaded? see `driftline reference upload`); nothing to "
                                         "compare against") from None
            raise HTTPException(404, f"model {spec.name!r} has no predictions in {window}; nothing to "
                                     "report") from None
        return Response(page, media_type="text/html; charset=utf-8", headers={
            "Cache-Control": "private, max-age=300",
            "Content-Security-Policy": REPORT_CSP,
            # The URL may carry a signature: never send it on to another site.
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "X-Driftline-Report-Cache": "hit" if cached else "miss",
        })

    return api
