"""Must-show 4: `driftline dashboards push` speaks Grafana's HTTP API (recorded by a server on 127.0.0.1).

No Grafana runs on this machine; the recording server answers as Grafana's
folder and dashboard endpoints do, and scripted failures check the messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.local_broker import free_port
from dashboards.generate import JSON_DIR
from tests.conftest import clean_env, run_driftline
from tests.integration.receivers import FakeGrafana

TOKEN = "glsa_test-token-0123456789abcdef"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}", grafana_token=TOKEN)


def test_push_creates_the_folder_and_uploads_every_dashboard_with_overwrite(env: dict[str, str]) -> None:
    with FakeGrafana() as grafana:
        done = run_driftline(["dashboards", "push"], {**env, "DRIFTLINE_GRAFANA_URL": grafana.url})
    assert done.returncode == 0, done.stderr
    calls = [(m, p) for m, p, _, _ in grafana.requests]
    assert calls == [("GET", "/api/folders/driftline"), ("POST", "/api/folders")] + [("POST", "/api/dashboards/db")] * 3
    assert all(h.get("authorization") == f"Bearer {TOKEN}" for _, _, h, _ in grafana.requests)
    assert grafana.requests[1][3] == {"title": "Driftline", "uid": "driftline"}
    committed = {p.stem: json.loads(p.read_text()) for p in JSON_DIR.glob("*.json")}
    uploaded = {}
    for _, _, _, body in grafana.requests[2:]:
        assert body["overwrite"] is True and body["folderUid"] == "driftline"  # type: ignore[index]
        board = dict(body["dashboard"])  # type: ignore[index]
        assert board.pop("id") is None
        uploaded[board["uid"]] = board
    assert uploaded == committed  # what is pushed is what is committed and provisioned
    assert [json.loads(line)["dashboard"] for line in done.stdout.splitlines()] == sorted(committed, key=list(
        uploaded).index)
    assert TOKEN not in done.stdout + done.stderr


def test_push_into_an_existing_folder_does_not_create_it(env: dict[str, str]) -> None:
    with FakeGrafana(folder_exists=True) as grafana:
        done = run_driftline(["dashboards", "push"], {**env, "DRIFTLINE_GRAFANA_URL": grafana.url})
    assert done.returncode == 0, done.stderr
    assert [p for _, p, _, _ in grafana.requests].count("/api/folders") == 0


@pytest.mark.parametrize("fail,expected", [
    ({"/api/folders": 401}, "refused the API token (401)"),
    ({"/api/dashboards": 403}, "(403)"),
    ({"/api/dashboards": 404}, "answered 404"),
    ({"/api/dashboards": 502}, "failed (HTTP 502)"),
])
def test_push_failures_explain_themselves(env: dict[str, str], fail: dict[str, int], expected: str) -> None:
    with FakeGrafana(fail=fail) as grafana:
        done = run_driftline(["dashboards", "push"], {**env, "DRIFTLINE_GRAFANA_URL": grafana.url})
    assert done.returncode == 5, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr and TOKEN not in done.stderr


def test_push_needs_a_url_and_a_token_and_a_reachable_grafana(env: dict[str, str]) -> None:
    no_url = run_driftline(["dashboards", "push"], env)
    assert no_url.returncode == 2 and "DRIFTLINE_GRAFANA_URL" in no_url.stderr
    no_token = run_driftline(["dashboards", "push"], {**{k: v for k, v in env.items() if k != "DRIFTLINE_GRAFANA_TOKEN"},
                                                      "DRIFTLINE_GRAFANA_URL": "http://127.0.0.1:1"})
    assert no_token.returncode == 2 and "DRIFTLINE_GRAFANA_TOKEN" in no_token.stderr
    down = run_driftline(["dashboards", "push"], {**env, "DRIFTLINE_GRAFANA_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.returncode == 5 and "cannot reach Grafana" in down.stderr and "Traceback" not in down.stderr
