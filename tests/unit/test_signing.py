"""Retrain webhook signatures interoperate with the Standard Webhooks library and reject what they must."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError as TheirError

from alerts.signing import WebhookSecret, WebhookVerificationError, signed_headers, verify_webhook

SECRET = WebhookSecret.generate()
NOW = 1_790_000_000

ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True)
texts = st.text(max_size=2048)


@settings(max_examples=200, deadline=None)
@given(msg_id=ids, text=texts, ts=st.integers(min_value=1_000_000_000, max_value=4_000_000_000))
def test_signature_equals_the_standard_webhooks_library(msg_id: str, text: str, ts: int) -> None:
    ours = WebhookSecret(SECRET).signature(msg_id, ts, text.encode())  # we sign the bytes sent: UTF-8 JSON
    theirs = Webhook(SECRET).sign(msg_id, dt.datetime.fromtimestamp(ts, dt.timezone.utc), text)
    assert ours == theirs


def test_the_library_verifies_our_deliveries_and_we_verify_its() -> None:
    body = json.dumps({"model": "churn", "reason": "dataset_drift"}).encode()
    headers = signed_headers(WebhookSecret(SECRET), "dl_retrain_0001", body)
    assert Webhook(SECRET).verify(body, headers) == {"model": "churn", "reason": "dataset_drift"}
    now = dt.datetime.now(dt.timezone.utc)
    theirs = {"webhook-id": "msg_1", "webhook-timestamp": str(int(now.timestamp())),
              "webhook-signature": Webhook(SECRET).sign("msg_1", now, body.decode())}
    assert verify_webhook(body, theirs, SECRET) == "msg_1"


def _headers(body: bytes = b'{"a": 1}', ts: int = NOW) -> dict[str, str]:
    return signed_headers(WebhookSecret(SECRET), "dl_1", body, timestamp=ts)


REJECTIONS = [
    ("wrong secret", b'{"a": 1}', _headers(), WebhookSecret.generate(), "no signature matches"),
    ("changed body", b'{"a": 2}', _headers(), SECRET, "no signature matches"),
    ("replayed after the tolerance", b'{"a": 1}', _headers(ts=NOW - 301), SECRET, "301 s old"),
    ("timestamp far ahead", b'{"a": 1}', _headers(ts=NOW + 400), SECRET, "in the future"),
    ("missing signature", b'{"a": 1}', {k: v for k, v in _headers().items() if k != "webhook-signature"}, SECRET,
     "missing header webhook-signature"),
    ("timestamp not a number", b'{"a": 1}', _headers() | {"webhook-timestamp": "soon"}, SECRET, "not an integer"),
    ("unknown signature version", b'{"a": 1}', _headers() | {"webhook-signature": "v2," + _headers()["webhook-signature"][3:]},
     SECRET, "no signature matches"),
]


# Ids name the case only: a generated secret in an id would differ between pytest-xdist's workers.
@pytest.mark.parametrize("case,body,headers,secret,message", REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections(case: str, body: bytes, headers: dict[str, str], secret, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WebhookVerificationError, match=message) as err:
        verify_webhook(body, headers, secret, now=NOW)
    assert SECRET.removeprefix("whsec_") not in str(err.value)


def test_accepts_within_tolerance_any_header_case_and_a_rotated_secret() -> None:
    body = b'{"a": 1}'
    old = WebhookSecret.generate()
    headers = {k.upper(): v for k, v in _headers(body, ts=NOW - 299).items()}
    headers["WEBHOOK-SIGNATURE"] = WebhookSecret(old).signature("dl_1", NOW - 299, body) + " " + headers["WEBHOOK-SIGNATURE"]
    assert verify_webhook(body, headers, SECRET, now=NOW) == "dl_1"
    with pytest.raises(TheirError):  # the library agrees a stale delivery is refused
        Webhook(SECRET).verify(body, _headers(body, ts=NOW - 10_000))


def test_secrets_are_hidden_and_validated() -> None:
    key = WebhookSecret(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key)
    with pytest.raises(ValueError, match="base64"):
        WebhookSecret("whsec_not base64!")
    with pytest.raises(ValueError, match="16 bytes"):
        WebhookSecret(b"short")


@pytest.mark.parametrize("msg_id", ["", "a b", "id\r\nX-Injected: 1", "x" * 129])
def test_ids_that_could_break_a_header_are_refused(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook-id must match"):
        signed_headers(WebhookSecret(SECRET), msg_id, b"{}")
