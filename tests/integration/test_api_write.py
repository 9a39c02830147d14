"""The API's write side on the real engine: ingest over HTTP, reference uploads, registry reload, alert
acknowledgement, silences and delivery replay; every success and the error cases around it."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts import outbox
from alerts.evaluate import Evaluator
from alerts.store import load_states
from collector.http_source import SOURCE_TOPICS
from detectors.config import load_registry, registry_from_yaml
from driftline.api.app import create_app
from driftline.api.context import Reloaded
from driftline.api.auth import load_tokens
from driftline.config import Settings
from driftline.contracts import EventKind
from driftline.store import connect
from driftline.yamlfile import ConfigError, LocatedYaml
from tests.conftest import clean_env, run_driftline
from tests.integration.alerting import UTC, alert_config, hour, tag, write_drift

pytestmark = pytest.mark.integration

TOKENS = {"reader": "read-token-0123456789", "writer": "write-token-0123456789", "admin": "admin-token-0123456789",
          "team": "team-token-0123456789"}
DAY = dt.datetime(2026, 4, 1, tzinfo=UTC)


def model_entry(name: str, owner: str) -> dict[str, object]:
    return {"name": name, "task": "binary_classification", "owner": owner,
            "features": {"x1": "numeric", "x2": "numeric", "c": "categorical"},
            "reference": {"upload": "train"}, "window": "1h"}


def write_tokens(path: Path) -> Path:
    lines = ["tokens:"]
    scopes = {"reader": "[read]", "writer": "[read, write]", "admin": "[admin]", "team": "[write]"}
    for name, token in TOKENS.items():
        team = ", team: team-a" if name == "team" else ""
        lines.append(f"  - {{name: {name}, sha256: {hashlib.sha256(token.encode()).hexdigest()}, "
                     f"scopes: {scopes[name]}{team}}}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def api(base_settings, store, tmp_path: Path):  # type: ignore[no-untyped-def]
    a, b = f"wa-{tag()}", f"wb-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a"), model_entry(b, "team-b")]}))
    settings = Settings(**{**base_settings.model_dump(), "api_max_body_bytes": 4096, "api_max_upload_bytes": 200_000,
                           "api_ingest_partition": int(tag(), 16) % 60000})
    app = create_app(load_registry(models_file), load_tokens(write_tokens(tmp_path / "tokens.yaml")),
                     lambda: connect(base_settings), settings=settings, reload=lambda: Reloaded(load_registry(models_file)))
    return TestClient(app), a, b, models_file, settings


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def prediction(model: str, i: int, **override: object) -> dict[str, object]:
    return {"event_id": f"{model}-{i}", "model": model, "model_version": "1", "ts": "2026-04-01T10:00:00Z",
            "features": {"x1": float(i), "x2": 0.5, "c": "a"}, "prediction": 1, **override}


# -- ingest ----------------------------------------------------------------------------------------------------------

def test_ingest_stores_valid_events_and_dead_letters_the_rest_by_position(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, settings = api
    events = [prediction(a, 0), prediction(a, 1, features={"x1": [1, 2]}), prediction(a, 2),
              {"model": a, "nonsense": True}, prediction(a, 3, ts="yesterday")]
    answer = client.post("/ingest/predictions", json=events, headers=auth("writer"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["accepted"], body["dead_lettered"]) == (2, 3)
    assert [e["index"] for e in body["errors"]] == [1, 3, 4]
    assert body["unknown_models"] == []
    rows = store.query("SELECT event_id FROM predictions WHERE model = {m:String} ORDER BY event_id",
                       parameters={"m": a}).result_rows
    assert [r[0] for r in rows] == [f"{a}-0", f"{a}-2"]
    raws = store.query("SELECT raw FROM dead_letters WHERE topic = {t:String} AND partition = {p:Int32} ORDER BY offset",
                       parameters={"t": SOURCE_TOPICS[EventKind.PREDICTION], "p": settings.api_ingest_partition}
                       ).result_rows
    assert [json.loads(r[0]) for r in raws] == [events[1], events[3], events[4]]  # the exact events, kept

    # NDJSON: every line its own event, a line that is not JSON is a dead letter with its bytes.
    ndjson = b"\n".join([json.dumps(prediction(a, 10)).encode(), b"{not json", json.dumps(prediction(a, 11)).encode()])
    answer = client.post("/ingest/predictions", content=ndjson, headers={**auth("writer"),
                                                                          "Content-Type": "application/x-ndjson"})
    assert answer.json()["accepted"] == 2 and answer.json()["errors"][0]["index"] == 1
    # Offsets continue across batches (and app restarts read the highest stored): nothing is overwritten.
    count = store.query("SELECT count(), uniqExact(topic, partition, offset) FROM predictions WHERE model = {m:String}",
                        parameters={"m": a})
    assert count.result_rows[0] == (4, 4)


def test_ingest_offsets_survive_a_restart_of_the_api(api, base_settings, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, a, _, models_file, settings = api
    assert client.post("/ingest/labels", json=[{"event_id": f"{a}-0", "model": a, "ts": "2026-04-01T11:00:00Z",
                                                "label": 1}], headers=auth("writer")).json()["accepted"] == 1
    again = TestClient(create_app(load_registry(models_file), load_tokens(tmp_path / "tokens.yaml"),
                                  lambda: connect(base_settings), settings=settings))
    assert again.post("/ingest/labels", json=[{"event_id": f"{a}-1", "model": a, "ts": "2026-04-01T11:00:00Z",
                                               "label": 0}], headers=auth("writer")).json()["accepted"] == 1
    rows = store.query("SELECT event_id FROM labels WHERE model = {m:String} ORDER BY event_id",
                       parameters={"m": a}).result_rows
    assert [r[0] for r in rows] == [f"{a}-0", f"{a}-1"]


def test_ingest_refusals(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, b, _, _ = api
    assert client.post("/ingest/predictions", json=[prediction(a, 0)], headers=auth("reader")).status_code == 403
    assert client.post("/ingest/predictions", json=[prediction(a, 0)]).status_code == 401
    bad = client.post("/ingest/predictions", content=b"[{\"model\": 1,", headers={**auth("writer"),
                                                                                "Content-Type": "application/json"})
    assert bad.status_code == 400 and "application/x-ndjson" in bad.json()["detail"]
    assert client.post("/ingest/nonsense", json=[], headers=auth("writer")).status_code == 422
    # The team token may post its own model's events, and a batch naming another team's model is refused whole.
    assert client.post("/ingest/predictions", json=[prediction(a, 50)], headers=auth("team")).json()["accepted"] == 1
    mixed = client.post("/ingest/predictions", json=[prediction(a, 51), prediction(b, 52)], headers=auth("team"))
    assert mixed.status_code == 403 and b in mixed.json()["detail"] and "nothing was stored" in mixed.json()["detail"]
    assert store.query("SELECT count() FROM predictions WHERE event_id = {e:String}",
                       parameters={"e": f"{a}-51"}).result_rows[0][0] == 0
    unknown = client.post("/ingest/predictions", json=[prediction("not-registered", 1)], headers=auth("writer"))
    assert unknown.json()["unknown_models"] == ["not-registered"]
    big = client.post("/ingest/predictions", content=b"x" * 300_000, headers=auth("writer"))
    assert big.status_code == 413
    assert client.post("/ingest/predictions", json=[], headers=auth("writer")).json()["accepted"] == 0


def test_small_bodies_are_bounded_even_without_a_content_length(api) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, _ = api

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 1000

    answer = client.post("/silences", content=chunks(), headers={**auth("writer"), "Content-Type": "application/json"})
    assert answer.status_code == 413 and "4096 bytes" in answer.json()["detail"]
    bulk = client.post("/ingest/predictions", content=(b" " * 10_000 for _ in range(30)), headers=auth("writer"))
    assert bulk.status_code == 413 and "200000 bytes" in bulk.json()["detail"]
    small = client.post("/silences", content=iter([b'{"matchers": ["model=' + a.encode() + b'"], ',
                                                   b'"duration": "1h", "comment": "chunked"}']),
                        headers={**auth("writer"), "Content-Type": "application/json"})
    assert small.status_code == 201, small.text


# -- references ------------------------------------------------------------------------------------------------------

def test_reference_upload_validates_whole_then_replaces(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, b, _, _ = api
    csv = "x1,x2,c,prediction,label\n" + "".join(f"{i},{i / 10},{'ab'[i % 2]},1,0\n" for i in range(50))
    url = f"/models/{a}/references/train"
    done = client.post(url, content=csv, headers={**auth("writer"), "Content-Type": "text/csv"})
    assert done.status_code == 201, done.text
    assert done.json() == {"model": a, "reference": "train", "rows": 50, "ignored": [],
                           "columns": {"x1": "feature", "x2": "feature", "c": "feature", "prediction": "prediction",
                                       "label": "label"}}
    listed = client.get(f"/models/{a}/references", headers=auth("reader")).json()
    assert [(r["reference"], r["rows"]) for r in listed] == [("train", 50)]
    broken = csv + "not-a-number,1,a,1,0\n"
    refused = client.post(url, content=broken, headers={**auth("writer"), "Content-Type": "text/csv"})
    assert refused.status_code == 422 and "x1" in refused.json()["detail"]
    assert client.get(f"/models/{a}/references", headers=auth("reader")).json()[0]["rows"] == 50  # kept
    assert client.post(url, content=csv, headers=auth("writer")).status_code == 415
    assert client.post(f"{url}?format=parquet", content=b"PAR1 not parquet", headers=auth("writer")).status_code == 422
    assert client.post(url, content=csv, headers={**auth("reader"), "Content-Type": "text/csv"}).status_code == 403
    assert client.post(f"/models/{b}/references/train", content=csv,
                       headers={**auth("team"), "Content-Type": "text/csv"}).status_code == 403
    assert client.post(f"/models/{a}/references/bad%20name", content=csv,
                       headers={**auth("writer"), "Content-Type": "text/csv"}).status_code == 422
    assert client.post(f"/models/nope-{tag()}/references/train", content=csv,
                       headers={**auth("writer"), "Content-Type": "text/csv"}).status_code == 404
    assert client.post(url, content="x" * 250_000, headers={**auth("writer"), "Content-Type": "text/csv"}
                       ).status_code == 413


# -- reload ----------------------------------------------------------------------------------------------------------

def test_reload_switches_only_to_a_valid_registry(api, base_settings, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, a, b, models_file, settings = api
    assert client.post("/models/reload", headers=auth("writer")).status_code == 403
    c = f"wc-{tag()}"
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a"), model_entry(c, "team-c")]}))
    done = client.post("/models/reload", headers=auth("admin"))
    assert done.status_code == 200 and done.json() == {"models": [a, c], "tokens": None, "alerts": None}  # no tokens file, no `up`
    assert client.get(f"/models/{b}", headers=auth("reader")).status_code == 404
    models_file.write_text(json.dumps({"models": [{"name": a, "task": "nonsense"}]}))
    refused = client.post("/models/reload", headers=auth("admin"))
    assert refused.status_code == 422 and "still running the previous one" in refused.json()["detail"]
    assert [m["name"] for m in client.get("/models", headers=auth("reader")).json()] == [a, c]
    fixed = TestClient(create_app(registry_from_yaml(LocatedYaml(Path("t"), {"models": []})),
                                  load_tokens(tmp_path / "tokens.yaml"), lambda: connect(base_settings)))
    assert fixed.post("/models/reload", headers=auth("admin")).status_code == 409
    with pytest.raises(ConfigError):
        load_registry(models_file)


def test_a_reload_revokes_removed_tokens_at_once_and_says_what_changed(base_settings, tmp_path: Path) -> None:
    """Issue 16, must-show 5 (tokens): a token removed from tokens.yaml answers 401 from the reload on."""
    a = f"wa-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a")]}))
    tokens_file = write_tokens(tmp_path / "tokens.yaml")
    app = create_app(load_registry(models_file), load_tokens(tokens_file), lambda: connect(base_settings),
                     reload=lambda: Reloaded(load_registry(models_file)), tokens_file=tokens_file)
    client = TestClient(app)
    assert client.get("/models", headers=auth("reader")).status_code == 200

    kept = [line for line in tokens_file.read_text().splitlines() if "name: reader" not in line]
    kept = [line.replace("team: team-a", "team: team-b") for line in kept]  # the team token's team changes
    newcomer = "new-token-0123456789"
    kept.append(f"  - {{name: newcomer, sha256: {hashlib.sha256(newcomer.encode()).hexdigest()}, scopes: [read]}}")
    tokens_file.write_text("\n".join(kept) + "\n")
    done = client.post("/models/reload", headers=auth("admin"))
    assert done.status_code == 200, done.text
    assert done.json()["tokens"] == {"added": ["newcomer"], "removed": ["reader"], "changed": ["team"]}
    gone = client.get("/models", headers=auth("reader"))
    assert gone.status_code == 401 and gone.json()["detail"] == "unknown or revoked token"
    assert client.get("/models", headers={"Authorization": f"Bearer {newcomer}"}).status_code == 200
    assert client.get(f"/models/{a}", headers=auth("team")).status_code == 403  # now team-b's token

    tokens_file.write_text("tokens: [{name: broken}]\n")
    refused = client.post("/models/reload", headers=auth("admin"))
    assert refused.status_code == 422 and "still running the previous one" in refused.json()["detail"]
    assert client.get("/models", headers={"Authorization": f"Bearer {newcomer}"}).status_code == 200  # kept
    assert client.get("/models", headers=auth("reader")).status_code == 401  # the refused file revives nothing



def test_a_team_limited_admin_cannot_reload_nor_tell_unknown_models_from_other_teams(base_settings, tmp_path: Path) -> None:
    """Issue 16, must-show 3 (reload) and the 403-against-404 enumeration: a team's admin token sees one answer."""
    a, b = f"wa-{tag()}", f"wb-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a"), model_entry(b, "team-b")]}))
    tokens_file = write_tokens(tmp_path / "tokens.yaml")
    team_admin = "team-admin-token-0123456789"
    tokens_file.write_text(tokens_file.read_text() + f"  - {{name: team-admin, sha256: "
                           f"{hashlib.sha256(team_admin.encode()).hexdigest()}, scopes: [admin], team: team-a}}\n")
    app = create_app(load_registry(models_file), load_tokens(tokens_file), lambda: connect(base_settings),
                     reload=lambda: Reloaded(load_registry(models_file)), tokens_file=tokens_file)
    client = TestClient(app)
    mine = {"Authorization": f"Bearer {team_admin}"}
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a")]}))  # would drop team-b's model
    refused = client.post("/models/reload", headers=mine)
    assert refused.status_code == 403 and "needs an admin token without a team" in refused.json()["detail"]
    assert [m.name for m in client.app.state.ctx.registry.models] == [a, b]  # type: ignore[attr-defined]
    assert client.get(f"/models/{a}", headers=mine).status_code == 200
    other, unknown = client.get(f"/models/{b}", headers=mine), client.get("/models/no-such-model", headers=mine)
    assert other.status_code == unknown.status_code == 403
    assert other.json()["detail"].replace(b, "X") == unknown.json()["detail"].replace("no-such-model", "X")
    assert client.get("/models/no-such-model", headers=auth("admin")).status_code == 404  # a global admin may know
    assert client.post("/models/reload", headers=auth("admin")).status_code == 200


# -- alerts, acknowledgement -----------------------------------------------------------------------------------------

def test_acknowledging_stops_repeats_until_the_episode_ends(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, b, _, _ = api
    registry = client.app.state.ctx.registry  # type: ignore[attr-defined]
    config = alert_config(a, channels={f"mail-{a}": {"type": "email", "to": ["owner@example.com"],
                                                       "attach_report": False}},
                          rules=[{"name": "dataset-drift", "when": {"dataset_drift": {"fire_share": 0.5,
                                                                                      "clear_share": 0.3}},
                                  "for": 1, "clear_for": 1, "repeat_interval": "2h"}])
    evaluator = Evaluator(store, registry, config, catchup_windows=24)
    emails: list[tuple[int, str]] = []
    fingerprint = ""
    for h in range(1, 14):
        drifted = h - 1 < 6 or h - 1 >= 9  # an episode over windows 0-5, recovery, a second from window 9
        write_drift(store, a, hour(DAY, h - 1), share=0.67 if drifted else 0.0, drifted=("x1",) if drifted else ())
        for d in evaluator.evaluate(a, now=DAY + dt.timedelta(hours=h, minutes=30)).queued:
            emails.append((h, d.event))
        if h == 2:
            listed = client.get(f"/alerts?model={a}", headers=auth("reader")).json()
            assert [(r["rule"], r["status"], r["acknowledged_by"]) for r in listed] == [("dataset-drift", "firing", None)]
            fingerprint = listed[0]["fingerprint"]
            assert client.post(f"/alerts/{fingerprint}/ack", json={"comment": "on it"},
                               headers=auth("reader")).status_code == 403
            done = client.post(f"/alerts/{fingerprint}/ack", json={"comment": "on it"}, headers=auth("writer"))
            assert done.status_code == 200 and done.json()["acknowledged_by"] == "writer"
            assert client.get(f"/alerts?model={a}", headers=auth("reader")).json()[0]["acknowledged_by"] == "token:writer"
    # Without the ack the 2 h repeat would have mailed at 3 and 5; the resolve and the next episode still mail.
    assert emails == [(1, "firing"), (7, "resolved"), (10, "firing"), (12, "firing")]
    detail = client.get(f"/alerts/{fingerprint}", headers=auth("reader")).json()
    acks = [h for h in detail["history"] if h["event"] == "acknowledged"]
    assert [(h["actor"], h["detail"]) for h in acks] == [("token:writer", "on it")]
    state = load_states(store, a)[fingerprint]
    assert state.status == "firing"
    # Not found, malformed, another team's, nothing to acknowledge.
    assert client.post("/alerts/0123456789abcdef/ack", json={}, headers=auth("writer")).status_code == 404
    assert client.post("/alerts/'; DROP TABLE alert_states; --/ack", json={}, headers=auth("writer")).status_code in (404, 422)
    assert client.get(f"/alerts?model={b}", headers=auth("team")).status_code == 403
    write_drift(store, b, hour(DAY, 0), share=0.67, drifted=("x1",))
    config_b = alert_config(b, channels={f"m-{b}": {"type": "email", "to": ["o@example.com"], "attach_report": False}},
                            rules=[{"name": "dataset-drift", "when": {"dataset_drift": {"fire_share": 0.5,
                                                                                        "clear_share": 0.3}},
                                    "for": 2, "clear_for": 1}])
    Evaluator(store, registry, config_b).evaluate(b, now=DAY + dt.timedelta(hours=1, minutes=30))
    fp_b = next(iter(load_states(store, b)))
    assert client.post(f"/alerts/{fp_b}/ack", json={}, headers=auth("team")).status_code == 403
    write_drift(store, b, hour(DAY, 1), share=0.0)
    Evaluator(store, registry, config_b).evaluate(b, now=DAY + dt.timedelta(hours=2, minutes=30))
    gone = client.post(f"/alerts/{fp_b}/ack", json={}, headers=auth("writer"))
    assert gone.status_code == 409 and "nothing to acknowledge" in gone.json()["detail"]


# -- silences and deliveries -----------------------------------------------------------------------------------------

def test_silences_create_list_expire_with_team_limits(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, b, _, _ = api
    made = client.post("/silences", json={"matchers": [f"model={a}", "subject=~x.*"], "duration": "2h",
                                          "comment": "maintenance"}, headers=auth("team"))
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["matchers"] == [f"model={a}", "subject=~x.*"] and silence["active"] and \
        silence["author"] == "token:team"
    assert silence["id"] in [s["id"] for s in client.get("/silences", headers=auth("reader")).json()]
    for body, status in [
        ({"matchers": [f"model={b}"], "duration": "1h", "comment": "x"}, 403),    # another team's model
        ({"matchers": ["rule=anything"], "duration": "1h", "comment": "x"}, 403),  # would mute every model
    ]:
        assert client.post("/silences", json=body, headers=auth("team")).status_code == status
    for body in [{"matchers": [f"model={a}"], "duration": "1h", "comment": ""},
                 {"matchers": [], "duration": "1h", "comment": "x"},
                 {"matchers": [f"model={a}"], "comment": "x"},
                 {"matchers": [f"model={a}"], "duration": "soon", "comment": "x"},
                 {"matchers": ["model=~("], "duration": "1h", "comment": "x"},
                 {"matchers": ["no operator"], "duration": "1h", "comment": "x"},
                 {"matchers": [f"model={a}"], "ends_at": "2020-01-01T00:00:00Z", "comment": "x"}]:
        refused = client.post("/silences", json=body, headers=auth("writer"))
        assert refused.status_code == 422, (body, refused.text)
    other = client.post("/silences", json={"matchers": [f"model={b}"], "duration": "1h", "comment": "b's"},
                        headers=auth("writer")).json()
    assert other["id"] not in [s["id"] for s in client.get("/silences", headers=auth("team")).json()]
    assert client.post(f"/silences/{other['id']}/expire", headers=auth("team")).status_code == 403
    ended = client.post(f"/silences/{silence['id']}/expire", headers=auth("team"))
    assert ended.status_code == 200 and not ended.json()["active"]
    assert client.post(f"/silences/{silence['id']}/expire", headers=auth("team")).status_code == 409
    assert silence["id"] not in [s["id"] for s in client.get("/silences", headers=auth("reader")).json()]
    assert silence["id"] in [s["id"] for s in client.get("/silences?all=true", headers=auth("reader")).json()]
    assert client.post("/silences/00000000-0000-0000-0000-000000000000/expire", headers=auth("writer")).status_code == 404


def test_deliveries_list_and_replay(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, b, _, _ = api
    now = dt.datetime.now(UTC)
    ids = {}
    for model in (a, b):
        did = outbox.delivery_id("api-test", model, now.isoformat())
        outbox.enqueue(store, [(outbox.Delivery(did, "mail", "email", model, "firing", [], f"subject {model}", "pending",
                                                0, now, "", now), b"body")])
        ids[model] = did
    dead = outbox.get(store, ids[a])
    assert dead is not None
    dead.status, dead.attempts, dead.last_error = "dead", 8, "HTTP 500"
    outbox.write_status(store, [dead])
    listed = client.get(f"/deliveries?model={a}", headers=auth("reader")).json()
    assert [(d["delivery_id"], d["status"]) for d in listed] == [(ids[a], "dead")]
    assert ids[b] not in [d["delivery_id"] for d in client.get("/deliveries", headers=auth("team")).json()]
    assert ids[a] in [d["delivery_id"] for d in client.get("/deliveries?status=dead", headers=auth("team")).json()]
    assert client.post(f"/deliveries/{ids[a]}/replay", headers=auth("reader")).status_code == 403
    assert client.post(f"/deliveries/{ids[b]}/replay", headers=auth("team")).status_code == 403
    replayed = client.post(f"/deliveries/{ids[a]}/replay", headers=auth("team"))
    assert replayed.status_code == 200 and replayed.json()["status"] == "pending"
    again = outbox.get(store, ids[a])
    assert again is not None and (again.status, again.attempts) == ("pending", 0)
    assert client.post(f"/deliveries/{ids[a]}/replay", headers=auth("writer")).status_code == 409  # already pending
    assert client.post("/deliveries/00000000-0000-0000-0000-000000000000/replay",
                       headers=auth("writer")).status_code == 404
    assert client.get("/deliveries?status=bogus", headers=auth("reader")).status_code == 422
    assert client.get(f"/deliveries?model={b}", headers=auth("team")).status_code == 403


def test_the_cli_acknowledges_too_and_explains_an_unknown_fingerprint(tmp_path: Path) -> None:
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}")
    unknown = run_driftline(["alerts", "ack", "0123456789abcdef", "--comment", "x"], env)
    assert unknown.returncode == 2 and "no alert with fingerprint '0123456789abcdef'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_every_operation_of_the_document_needs_a_token_and_a_read_token_cannot_write(api) -> None:  # type: ignore[no-untyped-def]
    """Walks the OpenAPI document itself, so an endpoint added later is covered without editing this test."""
    client, a, _, _, _ = api
    values = {"model": a, "name": "train", "kind": "predictions", "fingerprint": "0123456789abcdef",
              "silence_id": "00000000-0000-0000-0000-000000000000",
              "delivery_id": "00000000-0000-0000-0000-000000000000"}
    operations = [(method.upper(), path) for path, item in client.get("/openapi.json").json()["paths"].items()
                  for method in item]
    assert len(operations) >= 20
    writes = 0
    for method, path in operations:
        url = path.format(**values)
        if path in ("/healthz", "/readyz"):
            assert client.request(method, url).status_code in (200, 503)
            continue
        anonymous = client.request(method, url, json=[] if method == "POST" else None)
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        if method != "GET":
            writes += 1
            refused = client.request(method, url, json=[], headers=auth("reader"))
            assert refused.status_code == 403 and "this needs" in refused.json()["detail"], (method, path)
    assert writes >= 7


def test_the_openapi_document_describes_every_operation_with_examples(api) -> None:  # type: ignore[no-untyped-def]
    client = api[0]
    doc = client.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op.get("description", "").strip(), (method, path)
            assert "401" in op["responses"] or path in ("/healthz", "/readyz"), (method, path)
            if "401" in op["responses"]:  # so that Swagger UI's Authorize sends the token with Try it out
                assert op.get("security") == [{"bearer": []}], (method, path)
            for media, content in op.get("requestBody", {}).get("content", {}).items():
                if content.get("schema", {}).get("format") == "binary":
                    continue
                has_example = "example" in content or "examples" in content or "$ref" in content.get("schema", {})
                assert has_example, (method, path, media)
    assert doc["components"]["securitySchemes"]["bearer"] == {**doc["components"]["securitySchemes"]["bearer"],
                                                               "type": "http", "scheme": "bearer"}
    ours = {k: v for k, v in doc["components"]["schemas"].items() if "ValidationError" not in k}
    for name, schema in ours.items():
        props = schema.get("properties", {}).values()
        assert "examples" in schema or any("examples" in p for p in props), name


def test_a_team_token_cannot_place_events_or_dead_letters_on_another_teams_model(api, store) -> None:  # type: ignore[no-untyped-def]
    """Issue 16, must-show 3: every malformed or ambiguous way found of naming team B's model from team A's token.

    The team check reads each event with the collector's own validator; an event it refuses is refused with
    the batch, so nothing is stored: no row and no dead letter of B (as B's data-quality check counts them)."""
    from detectors.quality import DEAD_LETTERS_SQL

    client, a, b, _, _ = api
    valid_a = json.dumps(prediction(a, 900))

    def b_counts() -> tuple[int, int]:
        rows = store.query("SELECT count() FROM predictions WHERE model = {m:String}", parameters={"m": b})
        dead = store.query(DEAD_LETTERS_SQL, parameters={"m": b, "s": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc),
                                                         "e": dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)})
        return int(rows.result_rows[0][0]), int(dead.result_rows[0][0])

    before = b_counts()
    body = json.dumps(prediction(a, 901))[1:]  # the event's fields without its opening brace
    hostile = {
        "truncated line naming b": f'{{"event_id": "t1", "model": "{b}", "ts": "2026-04-01T10:00:00Z", "features": {{',
        "b first, a last": f'{{"model": "{b}", {body}',
        "b escaped in the key": f'{{"mod\\u0065l": "{b}", {body}',
        "b inside features, invalid event": json.dumps(
            {"features": {"model": b}, **prediction(a, 902), "prediction": [1]}),
        "b as a string with escapes": json.dumps(prediction(b, 903)).replace(b[1:], "\\u" + f"{ord(b[1]):04x}" + b[2:]),
        "not an object at all": f'["model", "{b}"]',
    }
    for what, line in hostile.items():
        answer = client.post("/ingest/predictions", content=(valid_a + "\n" + line + "\n").encode(),
                             headers={**auth("team"), "Content-Type": "application/x-ndjson"})
        assert answer.status_code in (403, 422), (what, answer.status_code, answer.text)
        assert "nothing was stored" in answer.json()["detail"], (what, answer.text)
        assert b_counts() == before, what
    assert store.query("SELECT count() FROM predictions WHERE event_id = {e:String}",
                       parameters={"e": f"{a}-900"}).result_rows[0][0] == 0  # refused whole: A's own event too
    # The same valid event alone goes in: the refusal is about the hostile lines, not the token.
    ok = client.post("/ingest/predictions", content=valid_a.encode(),
                     headers={**auth("team"), "Content-Type": "application/x-ndjson"})
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_ingest_answers_never_echo_the_store_s_own_error_text(api, store, base_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 16 (smaller): a row ClickHouse refuses is explained in the sender's words; the store's text stays put."""
    client, a, _, _, _ = api
    event = json.dumps(prediction(a, 900)).replace('"features": {', '"features": {"dup": 1.0, "dup": 2.0, ', 1)
    answer = client.post("/ingest/predictions", content=event.encode(), headers={
        **auth("admin"), "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200 and answer.json()["dead_lettered"] == 1, answer.text
    error = answer.json()["errors"][0]
    assert error["error_kind"] == "store_rejected" and "kept with the dead letter" in error["error"]
    assert "DB::Exception" not in answer.text and "ClickHouse" not in answer.text and "version" not in answer.text
    kept = store.query("SELECT error FROM dead_letters WHERE position(raw, {e:String}) > 0 AND error_kind = "
                       "'store_rejected'", parameters={"e": f"{a}-900"}).result_rows
    assert kept and "unique_feature_names" in kept[0][0]  # an operator still reads the real reason


def test_an_oversized_event_is_kept_as_a_prefix_its_length_and_digest(base_settings, store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 16, item 4: one request cannot store its whole body as a dead letter (60 MiB in 0.6 s before)."""
    a = f"wa-{tag()}"
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [model_entry(a, "team-a")]}))
    settings = Settings(**{**base_settings.model_dump(), "api_max_body_bytes": 16 * 2**20,
                           "api_ingest_partition": int(tag(), 16) % 60000})
    client = TestClient(create_app(load_registry(models_file), load_tokens(write_tokens(tmp_path / "tokens.yaml")),
                                   lambda: connect(base_settings), settings=settings))
    event = json.dumps(prediction(a, 7)).replace('"c": "a"', '"c": "' + "x" * (12 * 2**20) + '"').encode()
    answer = client.post("/ingest/predictions", content=event, headers={**auth("admin"),
                                                                       "Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200 and answer.json()["dead_lettered"] == 1, answer.text[:300]
    assert answer.json()["errors"][0]["error_kind"] == "oversized"
    (raw, size, error), = store.query(
        "SELECT raw, raw_bytes, error FROM dead_letters WHERE error_kind = 'oversized' AND position(raw, {e:String}) > 0",
        parameters={"e": f'"{a}-7"'}, column_formats={"raw": "bytes"}).result_rows
    assert raw == event[:4096] and size == len(event)
    assert hashlib.sha256(event).hexdigest() in error and "cut to its first 4096 bytes" in error
