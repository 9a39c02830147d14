"""Fuzzed v1 events: hypothesis draws valid events of all three kinds, each is then mutated every hostile way.

Shared by the unit fuzz of EventValidator and the integration fuzz through
the collector's decode and sink. A case is (kind, raw bytes, the valid event
it came from or None): None means "mutated: may be stored or dead-lettered,
never a crash"; an event means "valid by construction: must be stored, and
read back equal".

Why two stages: hypothesis spends ~4 ms per event when it also draws the
mutations (tens of draws each), too slow for 100,000 events in a test. So
hypothesis draws the structured part (the valid event, its encoding, a seed)
and `mutants` applies every mutation to it, with parameters from a
`random.Random` seeded by that draw: the run stays reproducible and
shrinkable to the base event that broke something.

Left out on purpose: duplicate names inside `features` or `proba`. Python
lets them through and ClickHouse's constraint refuses them, and the sink
isolates each refused row by halving the batch: ten such rows in a batch of
20,000 take ~13 s instead of 0.7 s here, so a fuzz that generates them at
any useful rate would spend its time there. They are in tests/malformed.py.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

from hypothesis import strategies as st

from driftline.contracts import EventKind
from driftline.values import class_name
from tests.malformed import HOSTILE_NAMES

UTC = dt.timezone.utc

_NAME_START = "abcxyzABZ019_"
_NAME_REST = _NAME_START + ".-"
names = st.builds(lambda a, b: a + b, st.sampled_from(_NAME_START), st.text(_NAME_REST, max_size=12))
instances = st.builds(lambda a, b: a + b, st.sampled_from(_NAME_START), st.text(_NAME_REST + ":/", max_size=20))
texts = st.text(max_size=24)  # any code point but surrogates: NUL, controls, quotes, astral planes
numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**53), 2**53))
timestamps = st.builds(
    lambda t, ms, offset: (t.replace(microsecond=ms * 1000) .replace(tzinfo=UTC)
                           .astimezone(dt.timezone(dt.timedelta(minutes=offset)))),
    st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2099, 12, 30)),
    st.integers(0, 999), st.sampled_from([0, 0, 0, 60, -300, 330, 14 * 60, -12 * 60]),
)


def _ts(t: dt.datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def predictions() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"event_id": st.text(min_size=1, max_size=40), "model": names, "model_version": names,
         "ts": timestamps.map(_ts),
         "features": st.dictionaries(names, st.one_of(numbers, texts, st.none(), st.booleans()), max_size=8),
         "prediction": st.one_of(numbers, texts, st.booleans())},
        # Keys that name one class once canonical ("1", "1.0") are a contract error, so valid ones differ.
        optional={"proba": st.dictionaries(names, st.floats(0, 1), max_size=3).filter(
                      lambda d: len({class_name(k) for k in d}) == len(d)),
                  "latency_ms": st.floats(0, 1e6)},
    )


def labels() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"event_id": st.text(min_size=1, max_size=40), "model": names,
                                  "ts": timestamps.map(_ts), "label": st.one_of(numbers, texts, st.booleans())})


def metrics() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({"model": names, "instance": instances, "ts": timestamps.map(_ts),
                                  "metrics": st.dictionaries(names, numbers, min_size=1, max_size=6)})


VALID = {EventKind.PREDICTION: predictions(), EventKind.LABEL: labels(), EventKind.METRIC: metrics()}

HOSTILE_VALUES: list[Any] = [True, False, None, 0, -1, 2**64, 10**400, -(10**400), "", "x", "1", "NaN", "\u0000",
                             "'; DROP TABLE predictions; --", "{m:String}", "\\", [], [1, "a"], {}, {"a": {"b": 1}},
                             -1e300, 1.5, "\u2019 OR 1=1 --"]
TOKENS = [b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e-999", b"0x10", b"01", b"+1",
          b".5", b"1.", b"true", b"null", b"[]", b"{}", b'"', b"\\", b"\x00", b""]
# A stray continuation byte, a truncated sequence, overlong forms, an encoded surrogate, beyond U+10FFFF.
INVALID_UTF8 = [b"\x80", b"\xbf", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80", b"\xfe", b"\xff"]
WHITESPACE = [b" ", b"\t", b"\n", b"\r\n", b"\x0b", b"\x0c", b"\xc2\xa0", b"\xe2\x80\xa8"]
UNICODE = ["\u00e9", "\u540d", "\U0001f600", "\u202e", "\ufeff", "\u0301", "\u2019", "\uff07", "\u0000"]
MUTATIONS = ["wrong_type", "drop", "unknown_field", "token", "nesting", "unicode_name", "surrogate", "invalid_utf8",
             "truncate", "duplicate_top", "hostile_name", "oversized", "byte_flip", "whitespace", "escaped_key"]


def encode(obj: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_only, separators=(",", ":")).encode("utf-8", "surrogatepass")


@st.composite
def bases(draw: st.DrawFn) -> tuple[EventKind, dict[str, Any], bool, int]:
    """A valid event of a random kind, whether to escape non-ASCII, and the seed of its mutations."""
    kind = draw(st.sampled_from(list(EventKind)))
    return kind, draw(VALID[kind]), draw(st.booleans()), draw(st.integers(0, 2**32 - 1))


def mutants(kind: EventKind, event: dict[str, Any], ascii_only: bool, seed: int, *, rounds: int,
            max_event_bytes: int) -> list[tuple[EventKind, bytes, dict[str, Any] | None]]:
    """The valid event itself, then `rounds` times every mutation of it."""
    rng = random.Random(seed)
    raw = encode(event, ascii_only)
    out: list[tuple[EventKind, bytes, dict[str, Any] | None]] = [(kind, raw, event)]
    for _ in range(rounds):
        for mutation in MUTATIONS:
            out.append((kind, mutate(kind, event, raw, mutation, rng, max_event_bytes), None))
    return out


def mutate(kind: EventKind, event: dict[str, Any], raw: bytes, mutation: str, rng: random.Random,
           max_event_bytes: int) -> bytes:
    field = rng.choice(sorted(event))
    obj = dict(event)
    if mutation == "wrong_type":
        obj[field] = rng.choice(HOSTILE_VALUES)
    elif mutation == "drop":
        obj.pop(field)
    elif mutation == "unknown_field":
        obj[rng.choice(["extra", "", "Model", "ts ", "features\u0000", rng.choice(HOSTILE_NAMES)])] = rng.choice(HOSTILE_VALUES)
    elif mutation == "hostile_name":
        bad = rng.choice(HOSTILE_NAMES + ["".join(rng.choice(UNICODE + ["'", '"', "\\", ";", " ", "a"])
                                                   for _ in range(rng.randint(1, 8)))])
        if kind is EventKind.PREDICTION and rng.random() < 0.5:
            obj["features"] = {**obj["features"], bad: 1.0}
        elif kind is EventKind.METRIC and rng.random() < 0.5:
            obj["metrics"] = {**obj["metrics"], bad: 1.0}
        else:
            obj[rng.choice([k for k in ("model", "model_version", "instance") if k in obj])] = bad
    elif mutation == "unicode_name":
        obj["model"] = "".join(rng.choice(UNICODE) for _ in range(rng.randint(1, 6)))
    elif mutation == "surrogate":  # a lone surrogate escape, as some producers emit
        obj[field] = rng.choice(["\ud800x", "a\udfff", "\udbff\udbff"])
    elif mutation == "oversized":
        obj[field] = "x" * rng.randint(max_event_bytes, 2 * max_event_bytes)
    else:
        return _mutate_bytes(raw, field, mutation, rng)
    return encode(obj, rng.random() < 0.5)


def _mutate_bytes(raw: bytes, field: str, mutation: str, rng: random.Random) -> bytes:
    key = b'"%s":' % field.encode()
    if mutation == "token":  # a non-JSON or edge number token in place of a value (or its start)
        at = raw.find(key) + len(key)
        end = at + rng.randint(0, 12)
        return raw[:at] + rng.choice(TOKENS) + raw[end:]
    if mutation == "nesting":
        depth = rng.choice([1, 10, 100, 1000, 5000, 20_000])
        nest = b"[" * depth + b"]" * depth if rng.random() < 0.5 else b'{"a":' * depth + b"1" + b"}" * depth
        return raw[:-1] + b',"deep":' + nest + b"}"
    if mutation == "invalid_utf8":
        at = rng.randint(0, len(raw))
        return raw[:at] + rng.choice(INVALID_UTF8) + raw[at:]
    if mutation == "truncate":
        return raw[: rng.randint(0, len(raw) - 1)]
    if mutation == "duplicate_top":  # a second value for a field, before or after the first
        extra = key + json.dumps(rng.choice(HOSTILE_VALUES + ["1900-01-01T00:00:00Z", "ok"])).encode()
        return raw[:1] + extra + b"," + raw[1:] if rng.random() < 0.5 else raw[:-1] + b"," + extra + b"}"
    if mutation == "escaped_key":  # the same field again, its name spelled with \u escapes
        escaped = "".join(f"\\u{ord(c):04x}" for c in field).encode()
        return raw[:1] + b'"%s":%s,' % (escaped, json.dumps(rng.choice(HOSTILE_VALUES)).encode()) + raw[1:]
    if mutation == "whitespace":
        at = rng.randint(0, len(raw))
        return raw[:at] + rng.choice(WHITESPACE) + raw[at:]
    assert mutation == "byte_flip"
    at = rng.randrange(len(raw))
    return raw[:at] + bytes([raw[at] ^ rng.randint(1, 255)]) + raw[at + 1:]
