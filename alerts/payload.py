"""The retrain webhook's JSON payload, version 1, and presets for common pipeline triggers.

The generic payload is a versioned contract (`"schema": "driftline.retrain.v1"`):
fields are only ever added within a version, never renamed or removed. Its
JSON Schema is generated from the types below (`retrain_schema()`) and kept
in `alerts/retrain-v1.schema.json`; a test fails if the two differ.

Presets reshape the same request for receivers that expect their own body:

- `github`: GitHub's `repository_dispatch` (`event_type` + `client_payload`,
  which GitHub limits to 10 top-level keys);
- `airflow`: Airflow's DAG-run API (`dag_run_id` is derived from the
  delivery id, so Airflow itself refuses a duplicate run);
- `slack`: a Slack incoming-webhook message for humans, with model and
  feature names escaped so they cannot inject links or mentions.

Names reaching a payload were validated at ingest and in the registry; the
presets still escape what their format interprets.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, Literal

import msgspec

SCHEMA = "driftline.retrain.v1"

Reason = Literal["dataset_drift", "feature_drift", "prediction_drift", "performance_drop", "data_quality", "manual"]


class DriftedFeature(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    method: str
    score: float
    threshold: float
    p_value: float | None = None


class MetricDrop(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    metric: str
    value: float
    baseline: float
    labelled_rows: int


class Window(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: dt.datetime
    end: dt.datetime


class Links(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    dashboard: str | None = None
    report: str | None = None


class RetrainRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a pipeline needs to decide to retrain: which model and version, why, by how much, for which window."""

    id: str  # the delivery's idempotency key, equal to the `webhook-id` header
    model: str
    model_version: str
    reason: Reason
    severity: Literal["info", "warning", "critical"]
    window: Window
    alert_fingerprint: str
    firing_since: dt.datetime
    drifted_features: tuple[DriftedFeature, ...] = ()
    performance: tuple[MetricDrop, ...] = ()
    links: Links = Links()
    owner: str | None = None
    schema: str = SCHEMA


def generic(req: RetrainRequest) -> dict[str, Any]:
    return msgspec.to_builtins(req)


def github(req: RetrainRequest, event_type: str = "driftline-retrain") -> dict[str, Any]:
    body = generic(req)
    keep = ("schema", "id", "model", "model_version", "reason", "severity", "window", "drifted_features",
            "performance", "links")  # GitHub accepts at most 10 top-level client_payload keys
    return {"event_type": event_type, "client_payload": {k: body[k] for k in keep}}


def airflow(req: RetrainRequest) -> dict[str, Any]:
    return {"dag_run_id": f"driftline-{req.id}", "conf": generic(req), "note": f"Driftline: {req.reason} of {req.model}"}


def _slack_escape(text: str) -> str:
    """Slack reads `&`, `<` and `>` as markup (links, mentions): escape them as its docs ask."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(req: RetrainRequest) -> dict[str, Any]:
    model = _slack_escape(f"{req.model} (version {req.model_version})")
    lines = [f"*{req.severity.upper()}*: {_slack_escape(req.reason.replace('_', ' '))} on *{model}*",
             f"window {req.window.start:%Y-%m-%d %H:%M} to {req.window.end:%H:%M} UTC, firing since "
             f"{req.firing_since:%Y-%m-%d %H:%M} UTC"]
    for f in req.drifted_features[:10]:
        lines.append(f"- `{_slack_escape(f.name)}` {f.method} {f.score:.3g} (threshold {f.threshold:.3g})")
    for m in req.performance[:10]:
        lines.append(f"- {m.metric} {m.value:.3g} vs baseline {m.baseline:.3g} ({m.labelled_rows} labels)")
    if req.links.dashboard:
        lines.append(f"<{_slack_escape(req.links.dashboard)}|dashboard>")
    text = "\n".join(lines)
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


PRESETS: dict[str, Callable[[RetrainRequest], dict[str, Any]]] = {
    "generic": generic,
    "github": github,
    "airflow": airflow,
    "slack": slack,
}


def encode(body: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed."""
    return msgspec.json.encode(body)


def retrain_schema() -> dict[str, Any]:
    """JSON Schema of the generic payload (version 1)."""
    return msgspec.json.schema(RetrainRequest)
