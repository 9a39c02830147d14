"""The retrain payload (v1): round-trips, its published schema is current, presets fit their receivers."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from alerts.payload import (
    PRESETS,
    SCHEMA,
    DriftedFeature,
    Links,
    MetricDrop,
    RetrainRequest,
    Window,
    encode,
    retrain_schema,
)

UTC = dt.timezone.utc


def request(**overrides: object) -> RetrainRequest:
    fields: dict[str, object] = dict(
        id="dl_5f1c", model="churn", model_version="7", reason="dataset_drift", severity="critical",
        window=Window(dt.datetime(2026, 11, 22, 10, tzinfo=UTC), dt.datetime(2026, 11, 22, 11, tzinfo=UTC)),
        alert_fingerprint="a1b2c3", firing_since=dt.datetime(2026, 11, 22, 11, 0, 30, tzinfo=UTC),
        drifted_features=(DriftedFeature("age", "wasserstein", 0.42, 0.1),
                          DriftedFeature("country", "chisquare", 0.0001, 0.05, p_value=0.0001)),
        performance=(MetricDrop("accuracy", 0.61, 0.9, 812),),
        links=Links(dashboard="https://grafana.example/d/model?var-model=churn", report="https://dl.example/r/1"),
        owner="team-retention",
    )
    fields.update(overrides)
    return RetrainRequest(**fields)  # type: ignore[arg-type]


def test_generic_payload_round_trips_and_names_its_version() -> None:
    req = request()
    body = json.loads(encode(PRESETS["generic"](req)))
    assert body["schema"] == SCHEMA == "driftline.retrain.v1"
    assert body["window"] == {"start": "2026-11-22T10:00:00Z", "end": "2026-11-22T11:00:00Z"}
    assert body["drifted_features"][1] == {"name": "country", "method": "chisquare", "score": 0.0001,
                                           "threshold": 0.05, "p_value": 0.0001}
    assert msgspec.json.decode(encode(PRESETS["generic"](req)), type=RetrainRequest) == req


def test_published_schema_is_current() -> None:
    published = json.loads((Path(__file__).parents[2] / "alerts" / "retrain-v1.schema.json").read_text())
    assert published == json.loads(json.dumps(retrain_schema()))  # tuples in defaults are lists in JSON
    assert set(published["$defs"]["RetrainRequest"]["required"]) >= {"id", "model", "reason", "window"}


def test_github_preset_fits_repository_dispatch() -> None:
    body = PRESETS["github"](request())
    assert body["event_type"] == "driftline-retrain"
    assert len(body["client_payload"]) <= 10  # GitHub's limit on top-level client_payload keys
    assert body["client_payload"]["model"] == "churn" and body["client_payload"]["schema"] == SCHEMA


def test_airflow_preset_derives_the_run_id_from_the_delivery() -> None:
    first, retry = PRESETS["airflow"](request()), PRESETS["airflow"](request())
    assert first["dag_run_id"] == retry["dag_run_id"] == "driftline-dl_5f1c"  # Airflow refuses a second run
    assert first["conf"]["model"] == "churn"


@pytest.mark.parametrize("hostile", ["<!channel>", "<https://evil.example|click>", "a&b", "x\n*bold*"])
def test_slack_preset_escapes_what_slack_interprets(hostile: str) -> None:
    body = PRESETS["slack"](request(model=hostile, drifted_features=(DriftedFeature(hostile, "psi", 0.3, 0.1),)))
    text = body["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;" in text or "&amp;" in text or hostile == "x\n*bold*"
    assert body["blocks"][0]["text"]["text"] == text
    json.loads(encode(body))  # still valid JSON whatever the names hold
