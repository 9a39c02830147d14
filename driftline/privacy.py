"""Per-model privacy policies applied at ingest, so personal data never reaches ClickHouse.

A model's registry entry may name fields to drop and fields to replace by a
keyed HMAC (`privacy: {drop: [email], hash: [user_id, event_id]}`). The
collector and HTTP ingest apply the policy after validation, before a row is
built: dropped features vanish, hashed values become `hmac:<token>`.

Why a keyed HMAC and not a plain hash: a plain SHA-256 of a phone number or a
user id is reversed by hashing every candidate; with a secret key it is not,
yet the same input still gives the same token, so joins, group-bys and
cardinality keep working (and a hashed categorical feature still drifts like
the original). Tokens are HMAC-SHA256 over the value's JSON encoding,
truncated to 128 bits and base64url-encoded: 27 characters with the prefix.
Null stays null (missing-value checks keep working, and there is nothing to
hide).

Dead letters would otherwise keep the raw bytes of exactly the events that
are malformed; see `Redactor.dead_letter` for what they keep instead.
Models without a policy pay nothing: the decoder keeps its fast path
whenever no policy is in force.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import Field, model_validator

from driftline.contracts import Event, LabelEvent, PredictionEvent
from driftline.values import stored
from driftline.yamlfile import Identifier, Strict

TOKEN_PREFIX = "hmac:"
TOKEN_BYTES = 16
EVENT_ID = "event_id"
MIN_KEY_BYTES = 16


class PrivacyKeyMissing(ValueError):
    """A policy is configured but no HMAC key is: refusing to start beats storing values unhashed."""


class PrivacySpec(Strict):
    """One model's policy: feature names to drop, and feature names (or `event_id`) to hash."""

    drop: tuple[Identifier, ...] = Field((), description="Features removed from every event of the model.")
    hash: tuple[Identifier, ...] = Field(
        (), description="Features (or `event_id`) whose values are replaced by `hmac:<token>`."
    )

    @model_validator(mode="after")
    def _disjoint(self) -> "PrivacySpec":
        for what, names in (("drop", self.drop), ("hash", self.hash)):
            if len(set(names)) != len(names):
                raise ValueError(f"{what} names a field twice")
        both = sorted(set(self.drop) & set(self.hash))
        if both:
            raise ValueError(f"{both[0]!r} is in both drop and hash; choose one")
        if EVENT_ID in self.drop:
            raise ValueError("event_id cannot be dropped (labels join on it); hash it instead")
        return self

    @property
    def empty(self) -> bool:
        return not self.drop and not self.hash


@dataclass(frozen=True)
class FieldPolicy:
    drop: frozenset[str]
    hash: frozenset[str]  # feature names
    hash_event_id: bool


@dataclass(frozen=True)
class _State:
    policies: dict[str, FieldPolicy]
    union: FieldPolicy  # every model's names at once, for dead letters whose model is unknown
    names: tuple[bytes, ...]  # every governed name, for scanning bytes that do not parse


_json = msgspec.json.Encoder()
_EMPTY = _State({}, FieldPolicy(frozenset(), frozenset(), False), ())


def _compile(policies: Mapping[str, PrivacySpec]) -> _State:
    compiled = {
        model: FieldPolicy(frozenset(p.drop), frozenset(p.hash) - {EVENT_ID}, EVENT_ID in p.hash)
        for model, p in policies.items() if not p.empty
    }
    if not compiled:
        return _EMPTY
    drop = frozenset().union(*(p.drop for p in compiled.values()))
    hashed = frozenset().union(*(p.hash for p in compiled.values())) - drop  # drop wins: the safer choice
    union = FieldPolicy(drop, hashed, any(p.hash_event_id for p in compiled.values()))
    names = sorted(drop | hashed | ({EVENT_ID} if union.hash_event_id else set()))
    return _State(compiled, union, tuple(n.encode() for n in names))


class Redactor:
    """Applies the policies in force; `replace` swaps them whole (a registry reload), safe across threads."""

    def __init__(self, policies: Mapping[str, PrivacySpec] | None = None, key: bytes | None = None) -> None:
        if key is not None and len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the privacy key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._state = _EMPTY
        self.replace(policies or {})

    def replace(self, policies: Mapping[str, PrivacySpec]) -> None:
        state = _compile(policies)
        if state.policies and self._key is None:
            raise PrivacyKeyMissing(
                f"models {sorted(state.policies)} have a privacy policy but no HMAC key is set: "
                "set DRIFTLINE_PRIVACY_KEY_FILE (or DRIFTLINE_PRIVACY_KEY)"
            )
        self._state = state  # one assignment: readers see the old or the new state, never a mix

    @property
    def policies(self) -> dict[str, FieldPolicy]:
        return self._state.policies

    def token(self, value: Any) -> str:
        """`hmac:<base64url>` of a value (by its JSON encoding; integers as floats, like the contract decodes them)."""
        if type(value) is int:
            value = float(value)
        data = value if isinstance(value, bytes) else _json.encode(value)
        assert self._key is not None
        digest = hmac.new(self._key, data, hashlib.sha256).digest()[:TOKEN_BYTES]
        return TOKEN_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- valid events ---------------------------------------------------------------

    def event(self, event: Event, policy: FieldPolicy) -> bytes | None:
        """The event's JSON with the policy applied, or None if the policy changes nothing in it."""
        changed = False
        if type(event) is PredictionEvent:
            features = event.features
            for name in policy.drop:
                if name in features:
                    del features[name]
                    changed = True
            for name in policy.hash:
                value = features.get(name)
                if value is not None:
                    # The stored form (driftline/values.py): 1, "1" and true are one value, so one token;
                    # other strings and numbers encode as they always did.
                    features[name] = self.token(stored(value))
                    changed = True
        elif type(event) is not LabelEvent:
            return None  # metric events carry numbers about serving instances, not about people
        if policy.hash_event_id:
            event.event_id = self.token(event.event_id)  # type: ignore[union-attr]
            changed = True
        return _json.encode(event) if changed else None

    # -- dead letters ------------------------------------------------------------------

    def dead_letter(self, raw: bytes | None) -> tuple[bytes | None, str]:
        """What a dead letter may keep of `raw`, and a note for its error text ("" when kept as is).

        - No policy in force: the raw bytes, as always.
        - A JSON object naming a governed model: the object with that model's policy applied
          at every depth (a governed key is dropped or hashed wherever it appears).
        - Any other JSON object that mentions a governed name (escapes resolved): every policy
          applied at once, since its model may be a governed one misspelt. Without one: kept as is.
        - Anything that is not a JSON object (bytes that do not parse, truncated JSON, an array, a
          CSV line): only its keyed digest and length. Nothing says which field a value belongs to,
          so nothing of it can be kept safely.
        - When redaction leaves a governed name as a plain string value (e.g. `[["email", "x"]]`),
          the object is digested too: its layout is not one the policy can reason about.
        """
        state = self._state
        if not state.policies or not raw:
            return raw, ""
        try:
            doc = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            model = doc.get("model")
            policy = state.policies.get(model) if isinstance(model, str) else None
            if policy is None:
                decoded = _json.encode(doc)  # an escaped `\u0065mail` reads `email` here
                if not any(name in decoded for name in state.names):
                    return raw, ""
            scrubbed, leftover = self._scrub(doc, policy or state.union, state)
            if not leftover:
                whose = f"model {model!r}" if policy is not None else "every governed model"
                return _json.encode(scrubbed), f" [raw redacted under the privacy policy of {whose}]"
        digest = _json.encode({"redacted": "digest", "digest": self.token(raw), "bytes": len(raw)})
        return digest, " [raw replaced by its digest: it is not a JSON object the privacy policy can apply to]"

    def _scrub(self, doc: Any, policy: FieldPolicy, state: _State) -> tuple[Any, bool]:
        leftover = False

        def walk(node: Any) -> Any:
            nonlocal leftover
            if isinstance(node, dict):
                out = {}
                for k, v in node.items():
                    if k in policy.drop:
                        continue
                    if k in policy.hash or (k == EVENT_ID and policy.hash_event_id):
                        out[k] = None if v is None else self.token(v)
                    else:
                        out[k] = walk(v)
                return out
            if isinstance(node, list):
                return [walk(v) for v in node]
            if isinstance(node, str) and any(name in node.encode() for name in state.names):
                leftover = True
            return node

        return walk(doc), leftover
