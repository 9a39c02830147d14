"""Must-show 2: the committed dashboard JSON is what the code generates, and it is valid for Grafana to load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.clickhouse import DATASOURCE_UID, PLUGIN
from dashboards.generate import JSON_DIR, boards, stale

ROOT = Path(__file__).resolve().parents[2]
PROVISIONING = ROOT / "dashboards" / "provisioning"
UIDS = {"driftline-fleet", "driftline-model", "driftline-service"}


def committed() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(JSON_DIR.glob("*.json"))}


def datasource_refs(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every `datasource` value anywhere in the dashboard, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield f"{path}.{key}", value
            yield from datasource_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from datasource_refs(value, f"{path}[{i}]")


def test_regenerating_gives_exactly_the_committed_json() -> None:
    assert stale() == [], "run `python -m dashboards.generate` and commit the result"
    assert set(committed()) == UIDS == {b.uid for b in boards()}


@pytest.mark.parametrize("uid", sorted(UIDS))
def test_dashboard_is_valid(uid: str) -> None:
    board = committed()[uid]
    assert board["uid"] == uid and board["title"].startswith("Driftline: ")
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {uid}"
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and all(t["rawSql"].strip() for t in panel["targets"]), panel["title"]
            pos = panel["gridPos"]
            assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
    refs = list(datasource_refs(board))
    assert refs, "no data source references at all"
    for where, ref in refs:
        assert ref == {"type": PLUGIN, "uid": DATASOURCE_UID}, f"{uid}{where}: {ref}"


def test_the_provisioned_data_source_is_the_one_the_dashboards_name() -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert [(d["uid"], d["type"]) for d in provisioned] == [(DATASOURCE_UID, PLUGIN)]
    assert "password" not in provisioned[0].get("jsonData", {})  # the secret is in secureJsonData, from the env
    assert provisioned[0]["secureJsonData"]["password"].startswith("$")
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "driftline.yaml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_alert_emails_link_to_the_model_dashboard_and_its_variable() -> None:
    import datetime as dt

    from alerts.render import MODEL_DASHBOARD_UID, links
    from detectors.sources import Window

    model = committed()["driftline-model"]
    assert MODEL_DASHBOARD_UID == model["uid"]
    assert [v["name"] for v in model["templating"]["list"]] == ["model"]
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    link = links("churn", Window(t, t + dt.timedelta(hours=1)), grafana_url="http://g:3000", public_url=None)
    assert link.dashboard is not None and f"/d/{model['uid']}/" in link.dashboard and "var-model=churn" in link.dashboard
