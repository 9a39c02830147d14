"""The v1 contracts: what is accepted, and the reason and kind of every rejection."""

from __future__ import annotations

import json
import random

import pytest

from driftline.contracts import ContractError, EventKind, EventValidator, PredictionEvent
from driftline.simulate import label_payload, metric_payload, prediction_payload
from tests.malformed import malformed_cases


@pytest.mark.parametrize(
    "kind,payload",
    [
        # Seeded: the payloads are in the test ids, which every pytest-xdist worker must collect alike.
        (EventKind.PREDICTION, prediction_payload(1, "m", rng=random.Random(1))),
        (EventKind.LABEL, label_payload(1, "m", rng=random.Random(1))),
        (EventKind.METRIC, metric_payload(1, "m", rng=random.Random(1))),
        (EventKind.PREDICTION, b'{"event_id":"e","model":"m","model_version":"v1.2","ts":"2026-01-01T10:00:00+02:00",'
                               b'"features":{"a":1,"b":"x","c":null},"prediction":"cat"}'),
        (EventKind.PREDICTION, b'  {\n "event_id":"e","model":"m","model_version":"1","ts":"2026-01-01T00:00:00Z",\n'
                               b' "features":{},"prediction":3}\n'),
    ],
)
def test_valid_events_pass(kind: EventKind, payload: bytes) -> None:
    event = EventValidator(kind).validate(payload)
    assert event.model == "m"


CASES = [(k, raw, want) for k, raw, want in malformed_cases(7) if want != "store_rejected"]


@pytest.mark.parametrize("kind,raw,want", CASES, ids=[f"{k.value}-{w}-{n}" for n, (k, _, w) in enumerate(CASES)])
def test_malformed_events_are_rejected_with_their_kind(kind: EventKind, raw: bytes | None, want: str) -> None:
    with pytest.raises(ContractError) as info:
        EventValidator(kind, max_event_bytes=256 * 1024).validate(raw)
    assert info.value.kind == want
    assert str(info.value)  # a reason a person can read


def test_duplicate_feature_names_pass_python_validation_and_are_left_to_the_store() -> None:
    # msgspec keeps the last value of a duplicated key; ClickHouse's Map would keep both,
    # so the table constraint rejects such a row (tested end to end in the ingest test).
    (kind, raw, want), = [c for c in malformed_cases(7) if c[2] == "store_rejected"]
    event = EventValidator(kind).validate(raw)
    assert isinstance(event, PredictionEvent) and event.features["dup"] == 2.0


def test_error_messages_point_at_the_field() -> None:
    raw = json.loads(prediction_payload(1, "m"))
    raw["model_version"] = 3
    with pytest.raises(ContractError, match=r"\$\.model_version"):
        EventValidator(EventKind.PREDICTION).validate(json.dumps(raw).encode())


def test_name_cache_does_not_let_a_bad_name_through_after_a_good_one() -> None:
    v = EventValidator(EventKind.PREDICTION)
    v.validate(prediction_payload(1, "good"))
    bad = json.loads(prediction_payload(2, "good"))
    bad["features"]["bad name"] = 1.0
    with pytest.raises(ContractError) as info:
        v.validate(json.dumps(bad).encode())
    assert info.value.kind == "invalid_name"


_GOOD = (b'{"event_id":"e","model":"m","model_version":"1","ts":"2026-01-01T00:00:00Z",'
         b'"features":{"a":1},"prediction":1}')


@pytest.mark.parametrize("raw,field", [
    # msgspec keeps the last value, ClickHouse reads the first: each of these would be checked as one event and
    # stored as another (an out-of-range ts, a hostile model name, a proba outside [0, 1]).
    (_GOOD.replace(b'"ts":', b'"ts":"1900-01-01T00:00:00Z","ts":'), "ts"),
    (_GOOD.replace(b'"model":"m"', b'"model":"x\'; DROP TABLE predictions; --","model":"m"'), "model"),
    (_GOOD[:-1] + b',"proba":{"1":7.0},"proba":{"1":0.5}}', "proba"),
    (_GOOD.replace(b'"model":"m"', b'"model":"../../etc","\\u006dodel":"m"'), "model"),  # an escape spells the key
    (_GOOD.replace(b'"ts":', b'"ts" :"1900-01-01T00:00:00Z","ts":'), "ts"),  # a space before the colon
])
def test_a_field_given_twice_is_a_contract_error(raw: bytes, field: str) -> None:
    with pytest.raises(ContractError) as info:
        EventValidator(EventKind.PREDICTION).validate(raw)
    assert info.value.kind == "contract" and f"'{field}' is given more than once" in str(info.value)


@pytest.mark.parametrize("raw", [
    _GOOD[:-1] + b',"proba":null,"latency_ms":null}',  # explicit nulls: fewer keys decoded than written
    _GOOD.replace(b'"features":{"a":1}', b'"features":{"ts":1,"model":"x\\":y"}'),  # field names as feature names
    _GOOD.replace(b'"ts":', b'"ts" : '),
])
def test_unusual_but_single_fields_still_pass(raw: bytes) -> None:
    assert EventValidator(EventKind.PREDICTION).validate(raw).model == "m"


def _prediction(**fields: object) -> bytes:
    event = {"event_id": "e", "model": "m", "model_version": "1", "ts": "2026-01-01T00:00:00Z",
             "features": {"a": 1}, "prediction": 1} | fields
    return json.dumps(event).encode()


def test_json_booleans_are_values_of_features_predictions_and_labels() -> None:
    event = EventValidator(EventKind.PREDICTION).validate(_prediction(features={"flag": True, "b": False},
                                                                      prediction=True))
    assert event.features == {"flag": True, "b": False} and event.prediction is True
    label = EventValidator(EventKind.LABEL).validate(
        b'{"event_id":"e","model":"m","ts":"2026-01-01T00:00:00Z","label":false}')
    assert label.label is False


@pytest.mark.parametrize("fields,reason", [
    ({"features": {"a": 1, "age": [1]}},
     "feature 'age': Expected `boolean | number | string | null`, got `array` - at `$.features.age`"),
    ({"features": {"x y": {"b": 1}}},
     "feature 'x y': Expected `boolean | number | string | null`, got `object` - at `$.features[\"x y\"]`"),
    ({"proba": {"1": "high"}}, "proba class '1': Expected `number`, got `string` - at `$.proba.1`"),
    ({"prediction": None}, "Expected `boolean | number | string`, got `null` - at `$.prediction`"),
    ({"model": 3}, "Expected `string`, got `number` - at `$.model`"),
])
def test_every_type_error_names_the_field_and_the_expected_type(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ContractError) as info:
        EventValidator(EventKind.PREDICTION).validate(_prediction(**fields))
    assert str(info.value) == reason


def test_metric_type_errors_name_the_metric() -> None:
    raw = b'{"model":"m","instance":"i","ts":"2026-01-01T00:00:00Z","metrics":{"rps":1,"cpu":"high"}}'
    with pytest.raises(ContractError, match=r"^metric 'cpu': Expected `number`, got `string` - at `\$\.metrics\.cpu`$"):
        EventValidator(EventKind.METRIC).validate(raw)


def test_proba_keys_naming_one_class_are_refused() -> None:
    with pytest.raises(ContractError, match=r"proba classes \['1', '1.0'\] are the same class '1'"):
        EventValidator(EventKind.PREDICTION).validate(_prediction(proba={"1": 0.5, "1.0": 0.5}))
    event = EventValidator(EventKind.PREDICTION).validate(_prediction(proba={"0.0": 0.5, "true": 0.5}))
    assert event.proba == {"0.0": 0.5, "true": 0.5}  # stored as classes "0" and "1" by the ingest view
