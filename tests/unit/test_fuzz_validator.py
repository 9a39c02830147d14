"""A quick fuzz of EventValidator alone (pure logic): the same generated events as the integration fuzz, fewer.

Whatever it is given, the validator returns an event or raises ContractError; an accepted event keeps the
contract (names match their pattern, ts in range, no field given twice, so ClickHouse reads what was checked).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings

from driftline.contracts import TS_MAX, TS_MIN, ContractError, EventKind, EventValidator
from driftline.names import is_identifier, is_instance
from tests.fuzz_events import bases, mutants

VALIDATORS = {k: EventValidator(k, 8192) for k in EventKind}


def _top_level_keys(raw: bytes) -> list[str]:
    objects: list[list[tuple[str, object]]] = []
    json.loads(raw, object_pairs_hook=lambda pairs: objects.append(pairs) or dict(pairs))
    return [k for k, _ in objects[-1]]


@given(base=bases())
@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_the_validator_accepts_only_events_that_keep_the_contract(base) -> None:  # type: ignore[no-untyped-def]
    for kind, raw, valid in mutants(*base, rounds=1, max_event_bytes=8192):
        try:
            event = VALIDATORS[kind].validate(raw)
        except ContractError as exc:
            assert valid is None, f"valid event rejected ({exc.kind}: {exc}): {raw!r}"
            assert exc.kind in {"invalid_json", "contract", "invalid_name", "oversized"} and str(exc)
            continue
        keys = _top_level_keys(raw)
        assert len(keys) == len(set(keys)), raw
        assert is_identifier(event.model) and TS_MIN <= event.ts < TS_MAX, raw
        if kind is EventKind.PREDICTION:
            assert all(is_identifier(n) for n in event.features) and is_identifier(event.model_version), raw
        if kind is EventKind.METRIC:
            assert is_instance(event.instance) and all(is_identifier(n) for n in event.metrics), raw
        if valid is not None:
            assert event.model == valid["model"]
