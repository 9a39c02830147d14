"""Text that cannot be encoded is refused at the door: a 4xx naming where it was, never a 500 further in.

Two places let such text in. URLs: Starlette decodes a percent-encoded path or
query with replacement characters, so `%FF` would silently become U+FFFD and a
query run on a value nobody sent; NUL has no place in a name or a filter
either. JSON bodies: `"\\udcff"` is valid JSON escape syntax for a lone
surrogate, which no UTF-8 encoder accepts. Pydantic refuses it with a 422, but
the default answer echoes the input and then fails to encode itself. So the
URL is checked here from its raw bytes, and validation errors are answered
with every string made encodable.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send


def printable(value: Any) -> Any:
    """`value` as JSON can carry it: strings encodable as UTF-8 (a lone surrogate shown as `\\udcff`), inf as "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {printable(k): printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [printable(v) for v in value]
    return value


def _problem(raw: bytes) -> str | None:
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"is not valid UTF-8 (byte {exc.start} of the decoded value)"
    if b"\x00" in decoded:
        return "holds a NUL character"
    return None


def url_problem(raw_path: bytes, query: bytes) -> tuple[list[str], str] | None:
    """Where the URL holds text that cannot be used, and why: (`loc`, reason), or None."""
    for segment in raw_path.split(b"/"):
        if (why := _problem(segment)) is not None:
            shown = unquote_to_bytes(segment).decode("utf-8", "backslashreplace")
            return ["path", shown], f"the path segment {shown!r} {why}"
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        shown = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "backslashreplace")
        for part, what in ((name, "the name of query parameter"), (value, "query parameter")):
            if (why := _problem(part)) is not None:
                return ["query", shown], f"{what} {shown!r} {why}"
    return None


class RefuseUnencodableUrls:
    """422 for a path or query that is not UTF-8 once percent-decoded, or holds NUL, naming the parameter."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = url_problem(scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape"),
                                scope.get("query_string", b""))
            if found is not None:
                loc, reason = found
                answer = JSONResponse({"detail": [{"loc": loc, "msg": reason, "type": "unencodable_text"}]},
                                      status_code=422)
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with the offending input made printable so that the answer itself can be encoded."""
    return JSONResponse({"detail": printable(jsonable_encoder(exc.errors()))}, status_code=422)
