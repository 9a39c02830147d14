"""Values reach ClickHouse in the value model's stored form (driftline/values.py).

A number, a boolean and a string spelling a plain number ("10115", "1e5", "true") are Float64, so 1, "1"
and true are one class and a numeric category equals its reference; "007" and other text stay strings
(ClickHouse's own inference, which would read "007" as 7, never runs).
"""

from __future__ import annotations

import json

import pytest

from collector.batch import Batch, Origin
from collector.decode import RecordDecoder
from collector.sink import ClickHouseSink
from driftline.contracts import EventKind
from driftline.store import migrate
from driftline.store.migrations import _entry_select
from tests.conftest import own_database

pytestmark = pytest.mark.integration

FEATURES = {"zip": "10115", "n": 10115, "code": "007", "exp": "1e5", "flag": "true", "quote": 'a"b\u00e9\n',
            "missing": None, "x": -0.25, "yes": True, "no": False}


def test_feature_prediction_and_label_types_follow_the_json_tokens(settings, store) -> None:
    pred = json.dumps({"event_id": "types-1", "model": "types", "model_version": "1", "ts": "2026-03-01T12:00:00.5+02:00",
                       "features": FEATURES, "prediction": "1", "proba": {"0.0": 0.4, "true": 0.6}}).encode()
    label = json.dumps({"event_id": "types-1", "model": "types", "ts": "2026-03-02T00:00:00Z", "label": "0"}).encode()
    numeric_label = json.dumps({"event_id": "types-2", "model": "types", "ts": "2026-03-02T00:00:00Z", "label": 0}).encode()
    batch = Batch()
    decoder = RecordDecoder({EventKind(k): t for k, t in settings.topics.items()}, settings.max_event_bytes)
    decoder.add_records(batch, settings.topic_predictions, 0, [Origin(settings.topic_predictions, 0, 0, None, pred)])
    decoder.add_records(batch, settings.topic_labels, 0, [Origin(settings.topic_labels, 0, 0, None, label),
                                                          Origin(settings.topic_labels, 0, 1, None, numeric_label)])
    assert ClickHouseSink(store).write(batch) == []

    rows = store.query(
        "SELECT feature, variantType(v), toString(v) FROM predictions "
        "ARRAY JOIN mapKeys(features) AS feature, mapValues(features) AS v WHERE event_id = 'types-1'").result_rows
    got = {f: (t, v) for f, t, v in rows}
    assert got == {
        "zip": ("Float64", "10115"), "n": ("Float64", "10115"), "code": ("String", "007"), "exp": ("Float64", "100000"),
        "flag": ("Float64", "1"), "quote": ("String", 'a"b\u00e9\n'), "missing": ("None", ""), "x": ("Float64", "-0.25"),
        "yes": ("Float64", "1"), "no": ("Float64", "0"),
    }
    (pred_row,) = store.query("SELECT variantType(prediction), toString(prediction), toString(ts), proba, latency_ms "
                              "FROM predictions WHERE event_id = 'types-1'").result_rows
    assert pred_row == ("Float64", "1", "2026-03-01 10:00:00.500", {"0": 0.4, "1": 0.6}, None)
    labels = store.query("SELECT event_id, variantType(label), toString(label) FROM labels "
                         "WHERE model = 'types' ORDER BY event_id").result_rows
    assert labels == [("types-1", "Float64", "0"), ("types-2", "Float64", "0")]


LABEL_TOKEN = "JSONExtractRaw(raw, 'label')"


def _legacy_value(raw: str) -> str:
    """The ingest views' typing before migration 10: by the JSON token alone ("1.0" stayed a string)."""
    return (f"if(startsWith({raw}, '\"'), CAST(JSONExtractString({raw}) AS Variant(Float64, String)), "
            f"CAST(toFloat64OrNull({raw}) AS Variant(Float64, String)))")


def test_migration_10_moves_an_existing_store_to_the_value_model(settings) -> None:  # type: ignore[no-untyped-def]
    own, client = own_database(settings)
    legacy = _entry_select(
        "labels", fields="event_id String, model String",
        columns=f"e.event_id AS event_id, e.model AS model, {_legacy_value(LABEL_TOKEN)} AS label")
    client.command(f"ALTER TABLE labels_ingest_mv MODIFY QUERY {legacy}")  # a store as migrations 1-9 left it
    client.command("DELETE FROM schema_migrations WHERE version = 10")

    def store_label(offset: int) -> tuple[str, str]:
        raw = json.dumps({"event_id": f"up-{offset}", "model": "upgrade", "ts": "2026-03-02T00:00:00Z",
                          "label": "1.0"}).encode()
        batch = Batch()
        decoder = RecordDecoder({EventKind(k): t for k, t in own.topics.items()}, own.max_event_bytes)
        decoder.add_records(batch, own.topic_labels, 0, [Origin(own.topic_labels, 0, offset, None, raw)])
        assert ClickHouseSink(client).write(batch) == []
        return client.query("SELECT variantType(label), toString(label) FROM labels WHERE event_id = {e:String}",
                            parameters={"e": f"up-{offset}"}).result_rows[0]

    assert store_label(0) == ("String", "1.0")  # the old form, as the issue found it
    assert migrate(client) == [10]
    assert store_label(1) == ("Float64", "1")
    assert migrate(client) == []  # idempotent
