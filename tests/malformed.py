"""A corpus of broken events, each with the dead-letter kind it must end up under.

Kinds: invalid_json and contract and invalid_name and oversized come from
the collector's validation; store_rejected is what ClickHouse itself refuses
(here, duplicate feature names, caught by a table constraint).
"""

from __future__ import annotations

import json

from driftline.contracts import EventKind
from driftline.simulate import label_payload, metric_payload, prediction_payload

HOSTILE_NAMES = [
    "x'; DROP TABLE predictions; --",
    "a\" OR 1=1 --",
    "`features`",
    "../../etc/passwd",
    "feat\nname",
    "名前",
    "",
    "x" * 300,
]


def _edit(payload: bytes, **changes: object) -> bytes:
    obj = json.loads(payload)
    for k, v in changes.items():
        if v is _DROP:
            obj.pop(k)
        else:
            obj[k] = v
    return json.dumps(obj).encode()


_DROP = object()


def malformed_cases(i: int) -> list[tuple[EventKind, bytes | None, str]]:
    """Broken events built around valid event number i: (kind, raw bytes, expected error kind)."""
    p = prediction_payload(i, "model-a")
    lbl = label_payload(i, "model-a")
    m = metric_payload(i, "model-a")
    obj = json.loads(p)
    cases: list[tuple[EventKind, bytes | None, str]] = [
        (EventKind.PREDICTION, p[: len(p) // 2], "invalid_json"),
        (EventKind.PREDICTION, b"", "invalid_json"),
        (EventKind.PREDICTION, None, "invalid_json"),
        (EventKind.PREDICTION, b"[1, 2, 3]", "contract"),
        (EventKind.PREDICTION, b"\xff\xfe{not utf8", "invalid_json"),
        (EventKind.PREDICTION, _edit(p, model=17), "contract"),
        (EventKind.PREDICTION, _edit(p, features=[1, 2]), "contract"),
        (EventKind.PREDICTION, _edit(p, prediction=None), "contract"),  # true is a class (1); null is none
        (EventKind.PREDICTION, _edit(p, features={"f0": {"nested": 1}}), "contract"),
        (EventKind.PREDICTION, _edit(p, ts=_DROP), "contract"),
        (EventKind.PREDICTION, _edit(p, event_id=_DROP), "contract"),
        (EventKind.PREDICTION, _edit(p, event_id=""), "contract"),
        (EventKind.PREDICTION, _edit(p, unexpected_field=1), "contract"),
        (EventKind.PREDICTION, _edit(p, ts="2026-01-01T00:00:00"), "contract"),
        (EventKind.PREDICTION, _edit(p, ts="1899-12-31T00:00:00Z"), "contract"),
        (EventKind.PREDICTION, _edit(p, ts="yesterday"), "contract"),
        (EventKind.PREDICTION, _edit(p, proba={"0": 1.5}), "contract"),
        (EventKind.PREDICTION, _edit(p, latency_ms=-1), "contract"),
        (EventKind.PREDICTION, p.replace(b'"f0":', b'"f0":NaN,"fx":', 1), "invalid_json"),
        (EventKind.PREDICTION, p.replace(b'"f0":', b'"f0":Infinity,"fx":', 1), "invalid_json"),
        (EventKind.PREDICTION, p.replace(b'"f0":', b'"f0":1e999,"fx":', 1), "contract"),
        (EventKind.PREDICTION, b'{"event_id":"big","model":"model-a","pad":"' + b"x" * (1024 * 1024) + b'"}', "oversized"),
        (EventKind.PREDICTION, b"[" * 5000 + b"]" * 5000, "contract"),
        # Valid JSON and types, but two values for one feature: ClickHouse's constraint refuses it.
        (EventKind.PREDICTION, p.replace(b'"features":{', b'"features":{"dup":1.0,"dup":2.0,', 1), "store_rejected"),
        # A field given twice: msgspec would check the last value, ClickHouse would store the first.
        (EventKind.PREDICTION, p.replace(b'"ts":', b'"ts":"1900-01-01T00:00:00Z","ts":', 1), "contract"),
        (EventKind.LABEL, lbl.replace(b'"model":', b'"model":"x\'; DROP TABLE labels; --","model":', 1), "contract"),
        (EventKind.LABEL, _edit(lbl, label={"a": 1}), "contract"),
        (EventKind.LABEL, _edit(lbl, event_id=_DROP), "contract"),
        (EventKind.LABEL, b"not json at all", "invalid_json"),
        (EventKind.METRIC, _edit(m, metrics={"cpu": "high"}), "contract"),
        (EventKind.METRIC, _edit(m, metrics={}), "contract"),
        (EventKind.METRIC, _edit(m, instance="pod 1; rm -rf /"), "invalid_name"),
    ]
    for name in HOSTILE_NAMES:
        cases.append((EventKind.PREDICTION, _edit(p, model=name), "invalid_name"))
        cases.append((EventKind.PREDICTION, _edit(p, features={**obj["features"], name: 1.0}), "invalid_name"))
        cases.append((EventKind.METRIC, _edit(m, metrics={name: 1.0}), "invalid_name"))
    cases.append((EventKind.LABEL, _edit(lbl, model=HOSTILE_NAMES[0]), "invalid_name"))
    return cases
