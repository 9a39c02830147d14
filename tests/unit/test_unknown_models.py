"""Pure logic of unregistered models at ingest (the decoder and its gate) and of the two new registry settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from collector.batch import Batch, Origin
from collector.decode import RecordDecoder
from detectors.config import registry_from_yaml
from driftline import metrics
from driftline.contracts import EventKind
from driftline.unknown_models import MAX_NAMED, ModelGate, closest, describe
from driftline.yamlfile import ConfigError, LocatedYaml


def event(model: str, i: int) -> bytes:
    return json.dumps({"event_id": f"e{i}", "model": model, "model_version": "1", "ts": "2026-01-01T00:00:00Z",
                       "features": {"x": 1.0}, "prediction": 1}).encode()


def decode(gate: ModelGate | None, models: list[str]) -> Batch:
    batch = Batch()
    records = [Origin("predictions", 0, i, None, event(m, i)) for i, m in enumerate(models)]
    RecordDecoder({EventKind.PREDICTION: "predictions"}, 10_000, None, gate).add_records(batch, "predictions", 0, records)
    return batch


def counted(model: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value("driftline_unknown_model_events_total",
                                             {"kind": "prediction", "model": model, "outcome": outcome}) or 0.0


def test_closest_names_the_likely_typo_and_nothing_for_an_unrelated_name() -> None:
    assert closest("chrun", ["churn", "fraud"]) == "churn"
    assert closest("zzz", ["churn", "fraud"]) is None
    assert "closest registered model: 'churn'" in describe("chrun", ["churn"])
    assert "no registered model has a similar name" in describe("zzz", ["churn"])


def test_store_mode_keeps_the_rows_and_counts_and_logs_each_name_once(caplog: pytest.LogCaptureFixture) -> None:
    gate = ModelGate(["unit_churn"])
    before = counted("unit_chrun", "stored")
    with caplog.at_level(logging.WARNING, logger="driftline.unknown_models"):
        first = decode(gate, ["unit_churn", "unit_chrun", "unit_chrun"])
        second = decode(gate, ["unit_chrun"])
    assert (len(first.rows[EventKind.PREDICTION]), first.dead_letters) == (3, [])
    assert len(second.rows[EventKind.PREDICTION]) == 1
    assert counted("unit_chrun", "stored") - before == 3
    lines = [r for r in caplog.records if getattr(r, "model", None) == "unit_chrun"]
    assert len(lines) == 1 and lines[0].closest == "unit_churn"


def test_dead_letter_mode_names_the_closest_model_and_covers_every_offset() -> None:
    gate = ModelGate(["unit_fraud"], action="dead_letter")
    batch = decode(gate, ["unit_fraud", "unit_frasd", "unit_fraud"])
    assert len(batch.rows[EventKind.PREDICTION]) == 2
    [letter] = batch.dead_letters
    assert (letter.origin.offset, letter.error_kind) == (1, "unknown_model")
    assert "'unit_frasd' is not in the registry; closest registered model: 'unit_fraud'" in letter.error
    r = batch.ranges[("predictions", 0)]
    assert (r.first_offset, r.next_offset, r.events, r.dead_letters) == (0, 3, 2, 1)


def test_without_a_registry_or_gate_nothing_is_unknown() -> None:
    for gate in (None, ModelGate.from_registry(None), ModelGate(None, action="dead_letter")):
        batch = decode(gate, ["unit_anything"])
        assert (len(batch.rows[EventKind.PREDICTION]), batch.dead_letters) == (1, [])


def test_a_flood_of_names_is_bounded_in_metric_labels() -> None:
    gate = ModelGate(["unit_known"])
    names = [f"unit_flood_{i}" for i in range(MAX_NAMED + 5)]
    decode(gate, names)
    assert counted(names[0], "stored") == 1
    assert counted(names[-1], "stored") == 0  # beyond the bound: counted under __other__
    assert counted(metrics.OTHER_MODEL, "stored") >= 5


def test_a_reload_replaces_names_and_action() -> None:
    gate = ModelGate(["unit_a"], action="dead_letter")
    assert len(decode(gate, ["unit_b"]).dead_letters) == 1
    gate.replace(["unit_a", "unit_b"], action="dead_letter")
    assert decode(gate, ["unit_b"]).dead_letters == []
    assert gate.unknown(["unit_a", "unit_c"]) == ["unit_c"]


def registry(doc: dict[str, object]):  # type: ignore[no-untyped-def]
    return registry_from_yaml(LocatedYaml(Path("models.yaml"), doc))


MODEL = {"name": "m", "task": "regression", "features": {"x": "numeric"}, "reference": {"rolling": {"offset": "7d"}}}


def test_the_registry_options_default_and_validate() -> None:
    plain = registry({"models": [MODEL]})
    assert plain.unknown_models == "store" and plain.models[0].label_horizon.days == 7
    assert registry({"unknown_models": "dead_letter", "models": [MODEL]}).unknown_models == "dead_letter"
    with pytest.raises(ConfigError, match="unknown_models"):
        registry({"unknown_models": "drop", "models": [MODEL]})
    with pytest.raises(ConfigError, match="label_horizon"):
        registry({"models": [{**MODEL, "label_delay": "2d", "label_horizon": "1d"}]})
