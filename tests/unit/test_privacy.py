"""Privacy policies (pure logic): validation, tokens, event rewriting and what dead letters keep."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from collector.batch import Batch, Origin
from collector.decode import RecordDecoder
from driftline.contracts import EventKind
from driftline.privacy import TOKEN_PREFIX, PrivacyKeyMissing, PrivacySpec, Redactor

KEY = b"k" * 32
TOPICS = {EventKind.PREDICTION: "p", EventKind.LABEL: "l", EventKind.METRIC: "m"}
POLICY = {"churn": PrivacySpec(drop=("email",), hash=("user_id", "event_id"))}


def event(model: str = "churn", **features: object) -> bytes:
    return json.dumps({"event_id": "ev-1", "model": model, "model_version": "1", "ts": "2026-12-01T10:00:00Z",
                       "features": features, "prediction": 0.5}).encode()


def decode(payloads: list[bytes], redactor: Redactor | None, topic: str = "p") -> Batch:
    batch = Batch()
    RecordDecoder(TOPICS, 1 << 20, redactor).add_records(
        batch, topic, 0, [Origin(topic, 0, i, None, p) for i, p in enumerate(payloads)])
    return batch


@pytest.mark.parametrize("spec, message", [
    ({"drop": ["email"], "hash": ["email"]}, "both drop and hash"),
    ({"drop": ["event_id"]}, "event_id cannot be dropped"),
    ({"hash": ["a", "a"]}, "names a field twice"),
    ({"hash": ["bad name"]}, "does not match"),
    ({"mask": ["x"]}, "Extra inputs"),
])
def test_invalid_policies_are_refused(spec: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PrivacySpec.model_validate(spec)


def test_a_policy_without_a_key_refuses_and_a_short_key_too() -> None:
    with pytest.raises(PrivacyKeyMissing, match="DRIFTLINE_PRIVACY_KEY"):
        Redactor(POLICY, None)
    with pytest.raises(ValueError, match="16 bytes"):
        Redactor(POLICY, b"short")
    assert Redactor({}, None).policies == {}


def test_tokens_are_keyed_stable_and_typed_like_the_contract() -> None:
    r, other = Redactor(POLICY, KEY), Redactor(POLICY, b"x" * 32)
    assert r.token("alice") == r.token("alice") != other.token("alice")
    assert r.token("alice").startswith(TOKEN_PREFIX) and len(r.token("alice")) == len(TOKEN_PREFIX) + 22
    assert r.token(42) == r.token(42.0)  # a JSON 42 decodes as a float; a dead letter's int must match
    assert r.token("42") != r.token(42.0)


def test_governed_events_are_rewritten_and_others_keep_their_bytes() -> None:
    r = Redactor(POLICY, KEY)
    governed = event(email="alice@example.org", user_id="u-12345", age=41.0, phone=None)
    other = event("other", email="bob@example.org")
    batch = decode([governed, other], r)
    rows = [json.loads(row) for row in batch.rows[EventKind.PREDICTION]]
    assert rows[0]["features"] == {"user_id": r.token("u-12345"), "age": 41.0, "phone": None}
    assert rows[0]["event_id"] == r.token("ev-1") and rows[0]["offset"] == 0
    assert batch.rows[EventKind.PREDICTION][1].endswith(other[1:])  # untouched bytes
    assert batch.origins[EventKind.PREDICTION][0].value is not governed  # a refused row dead-letters redacted bytes
    assert b"alice" not in batch.origins[EventKind.PREDICTION][0].value


def test_labels_of_a_governed_model_get_the_same_event_id_token() -> None:
    r = Redactor(POLICY, KEY)
    label = json.dumps({"event_id": "ev-1", "model": "churn", "ts": "2026-12-02T10:00:00Z", "label": 1}).encode()
    (row,) = decode([label], r, "l").rows[EventKind.LABEL]
    assert json.loads(row)["event_id"] == r.token("ev-1")


def test_without_policies_the_fast_path_is_byte_identical() -> None:
    payload = event(email="alice@example.org")
    assert decode([payload], Redactor({}, None)).rows == decode([payload], None).rows


@pytest.mark.parametrize("payload, kept", [
    # a governed model's malformed event: the policy is applied at every depth, the rest kept
    (b'{"model": "churn", "features": {"email": "alice@example.org", "user_id": "u-12345", "x": []}}', "redacted"),
    (b'{"model": "churn", "extra": {"email": "alice@example.org"}, "features": {}}', "redacted"),
    # another model's event that mentions a governed name: every policy at once
    (b'{"model": "churnn", "features": {"email": "alice@example.org"}}', "redacted"),
    # a layout the policy cannot reason about, or bytes that do not parse: digest only
    (b'{"model": "churn", "features": [["email", "alice@example.org"]]}', "digest"),
    (b'{"model": "churn", "features": {"email": "alice@example.org"', "digest"),
    (b'[{"user_id": "u-12345"}]', "digest"),
    (b'{"model": 7, "features": {"\\u0065mail": "alice@example.org"}', "digest"),
    (b"alice@example.org,u-12345", "digest"),
    (b'{"model": "other", "features": {"x": 1}', "digest"),
    # an escaped governed name is still a governed name
    (b'{"model": "churnn", "features": {"\\u0065mail": "alice@example.org"}}', "redacted"),
    # a whole object with nothing governed in sight: kept as is, for debugging
    (b'{"model": "other", "features": {"x": [1]}}', "raw"),
])
def test_dead_letters_never_keep_governed_values(payload: bytes, kept: str) -> None:
    r = Redactor(POLICY, KEY)
    (letter,) = decode([payload], r).dead_letters
    stored = letter.origin.value
    assert b"alice@example.org" not in stored and b"u-12345" not in stored
    if kept == "raw":
        assert stored is payload and "redacted" not in letter.error
    elif kept == "redacted":
        assert "[raw redacted under the privacy policy" in letter.error
        assert r.token("u-12345").encode() in stored or b"u-12345" not in payload
    else:
        assert json.loads(stored) == {"redacted": "digest", "digest": r.token(payload), "bytes": len(payload)}
        assert "[raw replaced by its digest" in letter.error


def test_replace_swaps_policies_and_refuses_a_policy_without_a_key() -> None:
    r = Redactor({}, None)
    with pytest.raises(PrivacyKeyMissing):
        r.replace(POLICY)
    keyed = Redactor({}, KEY)
    keyed.replace(POLICY)
    assert set(keyed.policies) == {"churn"}
