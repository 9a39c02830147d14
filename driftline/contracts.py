"""The v1 event contracts: what producers send, and how it is checked.

The three topics carry JSON objects (see docs/reference.md, "Event contracts").
Decoding is strict on purpose: an unknown field, a wrong type, a naive
timestamp or a name outside the identifier pattern is a dead letter with a
reason, because silently accepting it would put data in ClickHouse that the
detectors later misread. msgspec decodes and type-checks in one pass, which
keeps validation cheap enough for the collector's hot loop.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from enum import Enum
from typing import Union

import msgspec

from driftline.names import IDENTIFIER_PATTERN, INSTANCE_PATTERN, is_identifier, is_instance
from driftline.values import class_name

MAX_FEATURES = 1024
MAX_STRING_VALUE = 1024
MAX_PROBA_CLASSES = 1024
MAX_METRICS = 256
TS_MIN = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
TS_MAX = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)

FeatureValue = Union[bool, float, str, None]
"""A feature value as sent; stored in the value model's canonical form (driftline/values.py): a boolean is 1/0."""
OutputValue = Union[bool, float, str]
"""A prediction or label: 1, 1.0, "1" and true are one class once stored."""


class EventKind(str, Enum):
    PREDICTION = "prediction"
    LABEL = "label"
    METRIC = "metric"


class PredictionEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Topic `predictions`, key = model id."""

    event_id: str
    model: str
    model_version: str
    ts: dt.datetime
    features: dict[str, FeatureValue]
    prediction: OutputValue
    proba: Union[dict[str, float], None] = None
    latency_ms: Union[float, None] = None


class LabelEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Topic `labels`: the ground truth for an earlier prediction, often days late."""

    event_id: str
    model: str
    ts: dt.datetime
    label: OutputValue


class MetricEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Topic `metrics`: infrastructure metrics of one serving instance."""

    model: str
    instance: str
    ts: dt.datetime
    metrics: dict[str, float]


Event = Union[PredictionEvent, LabelEvent, MetricEvent]

EVENT_TYPES: dict[EventKind, type] = {
    EventKind.PREDICTION: PredictionEvent,
    EventKind.LABEL: LabelEvent,
    EventKind.METRIC: MetricEvent,
}


class ContractError(ValueError):
    """An event that breaks the v1 contract. `kind` is a short, stable category for dashboards."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class EventValidator:
    """Decodes and checks events of one kind.

    Names that passed the identifier pattern once are remembered (up to a
    bound), so the per-feature regex runs once per distinct name rather than
    once per event.
    """

    _KNOWN_NAMES_MAX = 100_000

    def __init__(self, kind: EventKind, max_event_bytes: int = 256 * 1024) -> None:
        self.kind = kind
        self.max_event_bytes = max_event_bytes
        self._decoder = msgspec.json.Decoder(EVENT_TYPES[kind])
        self._check = {
            EventKind.PREDICTION: self._check_prediction,
            EventKind.LABEL: self._check_label,
            EventKind.METRIC: self._check_metric,
        }[kind]
        self._known_names: set[str] = set()
        self._classes: dict[str, str] = {}
        self._distinct_shapes: set[tuple[str, ...]] = set()  # proba key tuples whose classes are distinct
        self._keys = {EventKind.PREDICTION: _prediction_keys, EventKind.LABEL: _label_keys,
                      EventKind.METRIC: _metric_keys}[kind]

    def validate(self, raw: bytes | None) -> Event:
        """The decoded event, or ContractError saying what is wrong."""
        if raw is None:
            raise ContractError("invalid_json", "empty message (null value)")
        if len(raw) > self.max_event_bytes:
            raise ContractError(
                "oversized", f"event of {len(raw)} bytes exceeds max_event_bytes={self.max_event_bytes}"
            )
        try:
            event = self._decoder.decode(raw)
        except msgspec.ValidationError as exc:
            raise ContractError("contract", _named(str(exc), raw)) from None
        except msgspec.DecodeError as exc:
            raise ContractError("invalid_json", str(exc)) from None
        except RecursionError:
            raise ContractError("invalid_json", "JSON nested too deeply to decode (no event needs it)") from None
        if b"\\" in raw or raw.translate(None, b" \t\r\n").count(b'":') != self._keys(event):
            _reject_repeated_fields(raw)
        self._check(event, len(raw))
        return event

    # -- per-kind checks -------------------------------------------------------

    def _name(self, value: str, what: str) -> None:
        if value in self._known_names:
            return
        if not is_identifier(value):
            raise ContractError("invalid_name", f"{what} {_shorten(value)!r} does not match {IDENTIFIER_PATTERN}")
        if len(self._known_names) < self._KNOWN_NAMES_MAX:
            self._known_names.add(value)

    @staticmethod
    def _ts(value: dt.datetime) -> None:
        if value.tzinfo is None:
            raise ContractError("contract", "ts must be RFC 3339 with a timezone (e.g. 2026-01-01T12:00:00Z) - at `$.ts`")
        if not TS_MIN <= value < TS_MAX:
            raise ContractError("contract", f"ts {value.isoformat()} is outside 2000-01-01..2100-01-01 - at `$.ts`")

    @staticmethod
    def _event_id(value: str) -> None:
        if not 0 < len(value) <= 128:
            raise ContractError("contract", "event_id must have 1 to 128 characters - at `$.event_id`")

    def _names(self, names: Iterable[str], what: str) -> None:
        if not self._known_names.issuperset(names):  # one C-level pass in the common case
            for name in names:
                self._name(name, what)

    def _distinct_classes(self, proba: dict[str, float]) -> None:
        """Proba keys that are one class once canonical ("1" and "1.0") would make the stored map ambiguous."""
        shape = tuple(proba)  # one model sends the same classes in the same order: checked once per shape
        if shape in self._distinct_shapes:
            return
        classes = self._classes
        if len(classes) > self._KNOWN_NAMES_MAX:
            classes.clear()
        seen = set()
        for key in proba:
            name = classes.get(key)
            if name is None:
                name = classes[key] = class_name(key, what="proba class")
            if name in seen:
                same = sorted(k for k in proba if classes.get(k) == name)
                raise ContractError("contract", f"proba classes {same} are the same class {name!r} (1, 1.0, \"1\" "
                                                "and true are one class) - at `$.proba`")
            seen.add(name)
        if len(self._distinct_shapes) < self._KNOWN_NAMES_MAX:
            self._distinct_shapes.add(shape)

    def _check_prediction(self, e: PredictionEvent, size: int) -> None:
        self._event_id(e.event_id)
        self._name(e.model, "model")
        self._name(e.model_version, "model_version")
        self._ts(e.ts)
        features = e.features
        if len(features) > MAX_FEATURES:
            raise ContractError("contract", f"{len(features)} features exceed the limit of {MAX_FEATURES}")
        self._names(features, "feature name")
        if size > MAX_STRING_VALUE:  # a smaller event cannot hold an over-long string
            for name, value in features.items():
                if type(value) is str and len(value) > MAX_STRING_VALUE:
                    raise ContractError("contract", f"value of feature {name!r} is longer than {MAX_STRING_VALUE} characters")
            if type(e.prediction) is str and len(e.prediction) > MAX_STRING_VALUE:
                raise ContractError("contract", f"prediction is longer than {MAX_STRING_VALUE} characters")
        if e.proba is not None:
            if len(e.proba) > MAX_PROBA_CLASSES:
                raise ContractError("contract", f"proba has more than {MAX_PROBA_CLASSES} classes")
            self._names(e.proba, "proba class")
            self._distinct_classes(e.proba)
            for cls, p in e.proba.items():
                if not 0.0 <= p <= 1.0:
                    raise ContractError("contract", f"proba[{cls!r}]={p} is outside [0, 1] - at `$.proba`")
        if e.latency_ms is not None and e.latency_ms < 0:
            raise ContractError("contract", "latency_ms must be >= 0 - at `$.latency_ms`")

    def _check_label(self, e: LabelEvent, size: int) -> None:
        self._event_id(e.event_id)
        self._name(e.model, "model")
        self._ts(e.ts)
        if size > MAX_STRING_VALUE and type(e.label) is str and len(e.label) > MAX_STRING_VALUE:
            raise ContractError("contract", f"label is longer than {MAX_STRING_VALUE} characters")

    def _check_metric(self, e: MetricEvent, size: int) -> None:
        self._name(e.model, "model")
        if not is_instance(e.instance):
            raise ContractError("invalid_name", f"instance {_shorten(e.instance)!r} does not match {INSTANCE_PATTERN}")
        self._ts(e.ts)
        if not e.metrics:
            raise ContractError("contract", "metrics must hold at least one value - at `$.metrics`")
        if len(e.metrics) > MAX_METRICS:
            raise ContractError("contract", f"{len(e.metrics)} metrics exceed the limit of {MAX_METRICS}")
        self._names(e.metrics, "metric name")


def _prediction_keys(e: PredictionEvent) -> int:
    return 6 + len(e.features) + (0 if e.proba is None else 1 + len(e.proba)) + (e.latency_ms is not None)


def _label_keys(e: LabelEvent) -> int:
    return 4


def _metric_keys(e: MetricEvent) -> int:
    return 4 + len(e.metrics)


def _reject_repeated_fields(raw: bytes) -> None:
    """A field given twice at the top level is a contract error.

    msgspec keeps the last value of a repeated key and ClickHouse's JSON
    functions read the first, so `{"ts": "1900-...", "ts": "2026-..."}` (or a
    hostile model name followed by a good one) would be checked as one event
    and stored as another. The hot path only counts `":` once whitespace is
    removed, the end of every key: without a backslash every quote delimits
    a string, so the count is exactly the number of keys the decoded event
    has, unless a key repeats. Any other case (a backslash, an explicit
    null) comes here for a second parse. Cost measured: about 1 us per
    event on top of msgspec's decode.
    """
    top: list[list[tuple[str, object]]] = []

    def keep(pairs: list[tuple[str, object]]) -> dict[str, object]:
        top.append(pairs)  # objects close inside out: the last one is the event itself
        return dict(pairs)

    try:
        json.loads(raw, object_pairs_hook=keep)
    except RecursionError:
        raise ContractError("invalid_json", "JSON nested too deeply to decode (no event needs it)") from None
    keys = [k for k, _ in top[-1]]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ContractError("contract", f"field {repeated[0]!r} is given more than once - at `$.{repeated[0]}`")


_MAP_FIELDS = {"features": "feature", "proba": "proba class", "metrics": "metric"}
_READABLE = {"float": "number", "int": "number", "str": "string", "bool": "boolean"}


def _named(message: str, raw: bytes) -> str:
    """msgspec's type error with the map key it leaves out (`$.features[...]`) and readable type names.

    Only a dead letter pays for this second parse. The result names the field and the expected type:
    "feature 'age': expected number | string | boolean | null, got array - at `$.features.age`".
    """
    readable = re.sub(r"`([^`]*)`", lambda m: "`" + " | ".join(_READABLE.get(t, t) for t in m.group(1).split(" | "))
                      + "`", message)
    found = re.search(r" - at `\$\.(features|proba|metrics)\[\.\.\.\]`$", readable)
    if found is None:
        return readable
    field = found.group(1)
    try:
        values = json.loads(raw).get(field)
    except (ValueError, AttributeError, RecursionError):
        return readable
    got = re.search(r"got `([^`]*)`", readable)
    kinds = {"array": list, "object": dict, "null": type(None), "boolean": bool, "string": str, "number": (int, float)}
    wanted = kinds.get(got.group(1) if got else "", ())
    for key, value in (values or {}).items() if isinstance(values, dict) else ():
        if wanted and isinstance(value, wanted) and not (wanted is not bool and type(value) is bool):
            place = f"$.{field}.{key}" if is_identifier(key) else f"$.{field}[{json.dumps(key)}]"
            return f"{_MAP_FIELDS[field]} {_shorten(key)!r}: {readable[: found.start()]} - at `{place}`"
    return readable


def _shorten(value: str, limit: int = 64) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."


_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> bytes:
    """JSON bytes of an event in the v1 contract (the producer helper's serializer)."""
    return _encoder.encode(event)
