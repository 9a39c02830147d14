"""Signing retrain webhooks the way the Standard Webhooks specification lays out, and verifying them.

A delivery carries three headers:

- `webhook-id`: the delivery's identity, the same on every retry, so a
  receiver can drop duplicates (the idempotency key);
- `webhook-timestamp`: seconds since the epoch when this attempt was signed;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
  possibly several separated by spaces (during a secret rotation).

Because the scheme is the standard one, receivers can verify with its
published libraries (the tests hold this module to the `standardwebhooks`
package in both directions) or with `verify_webhook` below. This module uses
the standard library only, so a receiver can copy it alone.

Secrets are written `whsec_<base64 of the key>`. They never appear in an
exception message or a repr.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300
"""How far a timestamp may be from the receiver's clock (either way) before the delivery counts as a replay."""


_MSG_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


class WebhookVerificationError(ValueError):
    """A delivery that must be rejected; the message says why (never with the secret)."""


class WebhookSecret:
    """A signing key, parsed once; its repr and str hide the key."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        if isinstance(secret, bytes):
            key = secret
        else:
            text = secret.strip()
            text = text.removeprefix(SECRET_PREFIX)
            try:
                key = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("a webhook secret must be `whsec_` followed by base64") from None
        if len(key) < 16:
            raise ValueError("a webhook secret must hold at least 16 bytes")
        self._key = key

    @classmethod
    def generate(cls) -> str:
        """A new secret in the `whsec_` form, 32 random bytes."""
        return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()

    def signature(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `v1,<base64>` signature of one attempt."""
        signed = f"{msg_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"

    def __repr__(self) -> str:
        return "WebhookSecret('***')"

    __str__ = __repr__


def signed_headers(secret: WebhookSecret, msg_id: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (a retry keeps `msg_id`, gets a fresh timestamp)."""
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError(f"webhook-id must match {_MSG_ID.pattern} (it goes into a header)")
    ts = int(time.time()) if timestamp is None else int(timestamp)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": secret.signature(msg_id, ts, body),
    }


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: WebhookSecret | str | bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Check a delivery as received (the raw body, before any JSON parsing); returns its `webhook-id`.

    Raises WebhookVerificationError for a missing header, a timestamp outside the tolerance (a replay, or a
    clock far off), or no `v1` signature that matches. Comparison is constant-time.
    """
    key = secret if isinstance(secret, WebhookSecret) else WebhookSecret(secret)
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id, raw_ts, raw_sigs = lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"]
    except KeyError as missing:
        raise WebhookVerificationError(f"missing header {missing.args[0]}") from None
    try:
        ts = int(raw_ts)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is {int(current - ts)} s old (tolerance {tolerance_s} s)")
    if ts > current + tolerance_s:
        raise WebhookVerificationError(f"webhook-timestamp is {int(ts - current)} s in the future (tolerance {tolerance_s} s)")
    expected = key.signature(msg_id, ts, body).split(",", 1)[1].encode()
    for candidate in raw_sigs.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value.encode(), expected):
            return msg_id
    raise WebhookVerificationError("no signature matches (wrong secret, or the body was changed)")
