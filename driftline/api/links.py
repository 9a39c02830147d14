"""Signed report links: a URL that opens one model's drift report for one window, without a bearer token.

An ML owner clicking the report link in an alert email cannot send an
`Authorization` header, so when a link secret is configured
(`DRIFTLINE_API_LINK_SECRET_FILE` or `DRIFTLINE_API_LINK_SECRET`) the link
carries `expires` (Unix seconds) and `sig`: the hex HMAC-SHA256, under that
secret, of the API path, the model, the window's start and end and `expires`.
A valid, unexpired signature is accepted by the report endpoint alone, for that
model and window; anything else falls back to bearer authentication.

The signed path is the API's own route (`/models/{model}/report`), not the
public URL's path, so a reverse proxy that mounts the API under a prefix does
not break the links. Times are signed in one canonical form (UTC ISO 8601), so
`Z` and `+00:00` spellings of the same instant verify alike. Standard library
only: the alert evaluator signs links without importing the web stack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from urllib.parse import quote, urlencode

VERSION = b"driftline-report-link-v1"
MIN_SECRET_BYTES = 16
DEFAULT_LIFETIME = dt.timedelta(days=7)


def report_path(model: str) -> str:
    """The API route of a model's report (what is signed)."""
    return f"/models/{quote(model, safe='')}/report"


def canonical_time(value: dt.datetime | None) -> str:
    """One spelling per instant: UTC, ISO 8601 with offset; empty when absent (the latest window)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat()


def signature(secret: bytes, path: str, model: str, start: dt.datetime | None, end: dt.datetime | None,
              expires: int) -> str:
    """Hex HMAC-SHA256 over the fields, newline-separated (none of them can hold a newline)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the link secret must be at least {MIN_SECRET_BYTES} bytes")
    message = b"\n".join([VERSION, path.encode(), model.encode(), canonical_time(start).encode(),
                          canonical_time(end).encode(), str(int(expires)).encode()])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def signed_query(secret: bytes, model: str, start: dt.datetime, end: dt.datetime, *, now: dt.datetime,
                 lifetime: dt.timedelta = DEFAULT_LIFETIME) -> dict[str, str]:
    """The query parameters of a signed report link: start, end, expires, sig."""
    expires = int((now + lifetime).timestamp())
    return {"start": canonical_time(start), "end": canonical_time(end), "expires": str(expires),
            "sig": signature(secret, report_path(model), model, start, end, expires)}


def report_url(public_url: str, model: str, start: dt.datetime, end: dt.datetime, *, secret: bytes | None = None,
               now: dt.datetime | None = None, lifetime: dt.timedelta = DEFAULT_LIFETIME) -> str:
    """The report link under `public_url`: signed when a secret is given, else plain (a token is needed)."""
    if secret is None:
        query = {"start": canonical_time(start), "end": canonical_time(end)}
    else:
        query = signed_query(secret, model, start, end, now=now or dt.datetime.now(dt.timezone.utc),
                             lifetime=lifetime)
    return f"{public_url.rstrip('/')}{report_path(model)}?{urlencode(query)}"


def check(secret: bytes | None, path: str, model: str, start: dt.datetime | None, end: dt.datetime | None,
          expires: int | None, sig: str | None, *, now: dt.datetime | None = None) -> str | None:
    """None if the link is valid now; else why not (for a 401 that explains itself, never echoing the secret)."""
    if secret is None:
        return "signed links are not enabled on this server (no DRIFTLINE_API_LINK_SECRET)"
    if expires is None or not sig:
        return "a signed link needs both `expires` and `sig`"
    expected = signature(secret, path, model, start, end, expires)
    # Constant time, and compared as bytes so a non-ASCII `sig` is simply unequal.
    if not hmac.compare_digest(expected.encode(), sig.strip().lower().encode("utf-8", "replace")):
        return "the link's signature is invalid (altered or signed with another secret)"
    current = now or dt.datetime.now(dt.timezone.utc)
    if current.timestamp() >= expires:
        try:
            when = dt.datetime.fromtimestamp(expires, dt.timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            when = str(expires)
        return f"the link expired at {when}"
    return None
