"""The HTTP API's first slice on the real engine: health, authentication and scopes, team limits, models, status and
paginated results; hostile paths and parameters get 4xx, never a 5xx or an SQL error."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from detectors.config import registry_from_yaml
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.store import connect
from driftline.yamlfile import ConfigError, LocatedYaml
from tests.integration.alerting import UTC, hour, tag, write_drift

READ, TEAM, WRITE = "reader-token-0123456789", "team-a-token-0123456789", "writer-token-0123456789"
DAY = dt.datetime(2026, 3, 3, tzinfo=UTC)


@pytest.fixture
def api(base_settings, store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    a, b = f"ret-{tag()}", f"eta-{tag()}"
    registry = registry_from_yaml(LocatedYaml(Path("test"), {"models": [
        {"name": n, "task": "regression", "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
         "reference": {"rolling": {"offset": "7d"}}, "owner": owner} for n, owner in ((a, "team-a"), (b, "team-b"))]}))
    for h in range(5):
        write_drift(store, a, hour(DAY, h), share=0.67 if h >= 3 else 0.0, drifted=("x1", "c") if h >= 3 else ())
    sha = hashlib.sha256(READ.encode()).hexdigest()
    (tmp_path / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: reader, sha256: {sha}, scopes: [read]}}\n"
        f"  - {{name: team-a, sha256: {hashlib.sha256(TEAM.encode()).hexdigest()}, scopes: [read], team: team-a}}\n"
        "  - {name: ci, env: TEST_WRITE_TOKEN, scopes: [read, write]}\n")
    monkeypatch.setenv("TEST_WRITE_TOKEN", WRITE)
    app = create_app(registry, load_tokens(tmp_path / "tokens.yaml"), lambda: connect(base_settings))
    return TestClient(app), a, b


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token_and_readiness_reports_each_dependency(api, base_settings) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = api
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "clickhouse": "ok"}

    def down() -> None:
        raise ConnectionRefusedError("kafka")

    failing = TestClient(create_app(registry_from_yaml(LocatedYaml(Path("t"), {"models": []})), load_tokens(Path("/none")),
                                    lambda: connect(base_settings), ready_checks={"kafka": down}))
    answer = failing.get("/readyz")
    assert answer.status_code == 503 and answer.json() == {"ready": False, "kafka": "unavailable: ConnectionRefusedError"}


@pytest.mark.parametrize("path", ["/models", "/models/{a}", "/models/{a}/status", "/models/{a}/drift",
                                  "/models/{a}/quality", "/models/{a}/performance", "/models/{a}/estimated"])
def test_every_protected_endpoint_explains_401(api, path: str) -> None:  # type: ignore[no-untyped-def]
    client, a, _ = api
    url = path.format(a=a)
    missing = client.get(url)
    assert missing.status_code == 401 and "Authorization: Bearer" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    wrong = client.get(url, headers=auth("not-a-token"))
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown or revoked token"
    assert client.get(url, headers={"Authorization": f"Basic {READ}"}).status_code == 401
    assert client.get(url, headers=auth(READ)).status_code == 200


def test_models_status_and_team_limits(api) -> None:  # type: ignore[no-untyped-def]
    client, a, b = api
    names = [m["name"] for m in client.get("/models", headers=auth(READ)).json()]
    assert {a, b} <= set(names)
    assert [m["name"] for m in client.get("/models", headers=auth(TEAM)).json()] == [a]
    forbidden = client.get(f"/models/{b}", headers=auth(TEAM))
    assert forbidden.status_code == 403 and "limited to team 'team-a'" in forbidden.json()["detail"]
    detail = client.get(f"/models/{a}", headers=auth(WRITE)).json()
    assert detail["name"] == a and detail["owner"] == "team-a" and set(detail["features"]) == {"x1", "x2", "c"}
    status = client.get(f"/models/{a}/status", headers=auth(READ)).json()
    assert status["drift"]["status"] == "drifted" and status["drift"]["window_end"].startswith("2026-03-03T05:00")
    assert status["label_gaps"] == []  # no window without labels (the label-gap states: test_alert_rules.py)


def test_results_are_paginated_and_filtered_by_time(api) -> None:  # type: ignore[no-untyped-def]
    client, a, _ = api
    params = {"start": DAY.isoformat(), "end": (DAY + dt.timedelta(hours=5)).isoformat(), "limit": 6}
    first = client.get(f"/models/{a}/drift", params=params, headers=auth(READ)).json()
    assert len(first["items"]) == 6 and first["next_offset"] == 6  # 5 windows x (3 features + dataset) = 20 rows
    rest = client.get(f"/models/{a}/drift", params={**params, "limit": 100, "offset": 6}, headers=auth(READ)).json()
    assert len(rest["items"]) == 14 and rest["next_offset"] is None
    drifted = {(r["window_start"][11:13], r["column"]) for r in first["items"] + rest["items"] if r["drifted"]}
    assert drifted == {(h, c) for h in ("03", "04") for c in ("x1", "c", "__dataset__")}
    late = client.get(f"/models/{a}/drift", params={"start": (DAY + dt.timedelta(hours=4)).isoformat(),
                                                    "end": (DAY + dt.timedelta(hours=5)).isoformat()},
                      headers=auth(READ)).json()
    assert {r["window_start"][11:13] for r in late["items"]} == {"04"}


@pytest.mark.parametrize("path,params,status", [
    ("/models/x'%3B%20DROP%20TABLE%20drift_results%3B--", {}, 422),
    ("/models/{a}%0D%0ABcc:x/status", {}, 422),
    ("/models/nope-model/drift", {}, 404),
    ("/models/{a}/drift", {"start": "2026-03-03T05:00Z", "end": "2026-03-03T01:00Z"}, 422),
    ("/models/{a}/drift", {"start": "2020-01-01T00:00Z", "end": "2026-01-01T00:00Z"}, 422),
    ("/models/{a}/drift", {"start": "yesterday'--"}, 422),
    ("/models/{a}/drift", {"limit": 0}, 422),
    ("/models/{a}/drift", {"limit": 10_000}, 422),
    ("/models/{a}/drift", {"offset": -1}, 422),
    ("/models/{a}/quality", {"segment": "x" * 301}, 422),
    ("/models/{a}/quality", {"segment": "country='de' OR 1=1"}, 200),  # a value, matched literally: no rows
])
def test_hostile_paths_and_parameters_get_4xx(api, path: str, params: dict[str, object], status: int) -> None:  # type: ignore[no-untyped-def]
    client, a, _ = api
    answer = client.get(path.format(a=a), params=params, headers=auth(READ))
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["items"] == []
    assert "DB::Exception" not in answer.text and READ not in answer.text


def test_oversized_requests_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = api
    answer = client.post("/models", content=b"x" * (1 << 21), headers=auth(READ))
    assert answer.status_code == 413


def test_token_files_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "tokens.yaml"
    bad.write_text("tokens:\n  - {name: x, sha256: abc, scopes: [read]}\n")
    with pytest.raises(ConfigError, match="tokens.yaml:2"):
        load_tokens(bad)
    bad.write_text("tokens:\n  - {name: x, env: MISSING_TOKEN_VAR, scopes: [read]}\n")
    monkeypatch.delenv("MISSING_TOKEN_VAR", raising=False)
    with pytest.raises(ConfigError, match=r"\$MISSING_TOKEN_VAR is not set"):
        load_tokens(bad)
    bad.write_text("tokens:\n  - {name: x, scopes: [superuser], env: A}\n")
    with pytest.raises(ConfigError, match="scopes"):
        load_tokens(bad)
    assert load_tokens(tmp_path / "absent.yaml").empty
