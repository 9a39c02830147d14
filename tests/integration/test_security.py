"""Security (issue 7): scopes per endpoint, SQL injection, secrets kept out of logs and answers, webhook signatures.

Real parts throughout: the API on the real engine, aiosmtpd with AUTH, HTTP receivers on 127.0.0.1 (a webhook
endpoint, a Grafana that refuses the token), and `driftline` subprocesses with JSON logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook, WebhookVerificationError as TheirError

from alerts.config import EmailChannel
from alerts.notify.email import EmailNotifier, build_message
from alerts.notify.webhook import WebhookNotifier
from alerts.signing import WebhookSecret, WebhookVerificationError, signed_headers, verify_webhook
from collector.local_broker import free_port
from collector.replay import write_chunk
from dashboards.push import PushError, push
from detectors.config import load_registry
from driftline.api import links
from driftline.api.app import create_app
from driftline.api.auth import load_tokens
from driftline.config import Settings
from driftline.contracts import EventKind
from driftline.store import StoreError, connect
from tests.conftest import clean_env, run_driftline
from tests.integration.receivers import SMTP_PASSWORD, SMTP_USER, FakeGrafana, Inbox, Receiver, smtp_server
from tests.integration.test_api_write import TOKENS, api, auth, prediction  # noqa: F401 - `api` is a fixture

pytestmark = pytest.mark.integration

# -- (a) every operation enforces its scope ------------------------------------------------------------------------

# The least scope each operation needs. An operation in the OpenAPI document without an entry fails the test,
# and so does an entry for an operation the document no longer has.
SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None, ("GET", "/readyz"): None,
    ("GET", "/models"): "read", ("GET", "/models/{model}"): "read", ("GET", "/models/{model}/status"): "read",
    ("GET", "/models/{model}/drift"): "read", ("GET", "/models/{model}/quality"): "read",
    ("GET", "/models/{model}/performance"): "read", ("GET", "/models/{model}/references"): "read",
    ("GET", "/models/{model}/estimated"): "read", ("GET", "/models/{model}/multivariate"): "read",
    ("GET", "/models/{model}/report"): "read", ("GET", "/alerts"): "read", ("GET", "/alerts/{fingerprint}"): "read",
    ("GET", "/silences"): "read", ("GET", "/deliveries"): "read", ("GET", "/metrics"): "read",
    ("GET", "/unknown-models"): "read",
    ("POST", "/models/{model}/references/{name}"): "write", ("POST", "/ingest/{kind}"): "write",
    ("POST", "/alerts/{fingerprint}/ack"): "write", ("POST", "/silences"): "write",
    ("POST", "/silences/{silence_id}/expire"): "write", ("POST", "/deliveries/{delivery_id}/replay"): "write",
    ("POST", "/models/reload"): "admin",
}
WHO = {None: None, "read": "reader", "write": "writer", "admin": "admin"}
LOWER = {"read": None, "write": "read", "admin": "write"}
ORDER = ("read", "write", "admin")


def _operations(client) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(m.upper(), p) for p, item in client.get("/openapi.json").json()["paths"].items() for m in item]


def _call(client, method: str, url: str, who: str | None):  # type: ignore[no-untyped-def]
    headers = auth(who) if who else {}
    return client.request(method, url, headers=headers, json=[] if method == "POST" else None)


def test_every_operation_needs_its_scope_and_the_scope_below_is_refused(api) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, _ = api
    values = {"model": a, "name": "train", "kind": "predictions", "fingerprint": "0123456789abcdef",
              "silence_id": "00000000-0000-0000-0000-000000000000",
              "delivery_id": "00000000-0000-0000-0000-000000000000"}
    operations = _operations(client)
    assert set(operations) == set(SCOPES), {"no entry": set(operations) - set(SCOPES),
                                            "not in the document": set(SCOPES) - set(operations)}
    for method, path in operations:
        url, needed = path.format(**values), SCOPES[(method, path)]
        if needed is None:
            assert _call(client, method, url, None).status_code in (200, 503), (method, path)
            continue
        for scope in ORDER[ORDER.index(needed):]:  # the needed scope and every one above it get past the check
            answer = _call(client, method, url, WHO[scope])
            assert answer.status_code not in (401, 403), (method, path, scope, answer.text)
        below = LOWER[needed]
        refused = _call(client, method, url, WHO[below])
        if below is None:
            assert refused.status_code == 401, (method, path, refused.text)
        else:
            assert refused.status_code == 403 and f"this needs {needed!r}" in refused.json()["detail"], (method, path)


# -- (b) SQL injection ----------------------------------------------------------------------------------------------

HOSTILE = ["'; DROP TABLE predictions; --", "' OR 1=1 --", "{m:String}", "{model:Identifier}", "\\", "a\\'b\\",
           "x\x00y", "\u2019 OR 1=1 --", "\u02bc; DROP TABLE labels", '") OR ("1"="1', "`predictions`",
           "1; SELECT * FROM system.users", "%27%20OR%201%3D1", "../../etc/passwd", "x" * 300]
TABLES = ["predictions", "labels", "infra_metrics", "dead_letters", "drift_results", "detector_runs", "alert_states",
          "silences", "outbox", "reference_rows", "alert_acks"]


def _counts(store) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """Logical rows per table: after FINAL where the engine merges rows away (a background merge shrank the raw
    count of drift_results from 77 to 49 during this test once; CI seed 1530967504)."""
    tables = store.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").result_rows
    merging = ("Replacing", "Collapsing", "VersionedCollapsing", "Summing", "Aggregating")
    counts = {}
    for name, engine in tables:
        if "MergeTree" not in engine:
            counts[name] = 0  # views and Null tables hold nothing
            continue
        final = " FINAL" if engine.startswith(merging) else ""
        counts[name] = int(store.query(f"SELECT count() FROM `{name}`{final}").result_rows[0][0])
    return counts


@pytest.mark.slow
def test_hostile_strings_through_every_parameter_and_body_field_are_refused_or_stored_literally(api, store) -> None:  # type: ignore[no-untyped-def]
    client, a, _, _, _ = api
    doc = client.get("/openapi.json").json()
    before = _counts(store)
    assert set(TABLES) <= set(before)
    values = {"model": a, "name": "train", "kind": "predictions", "fingerprint": "0123456789abcdef",
              "silence_id": "00000000-0000-0000-0000-000000000000",
              "delivery_id": "00000000-0000-0000-0000-000000000000"}
    tried = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                for bad in HOSTILE:
                    if param["in"] == "path":
                        url = path.format(**{**values, param["name"]: quote(bad, safe="")})
                        params = None
                    else:
                        url, params = path.format(**values), {param["name"]: bad}
                    answer = client.request(method.upper(), url, params=params, headers=auth("admin"),
                                            json=[] if method == "post" else None)
                    tried += 1
                    assert answer.status_code < 500, (method, path, param["name"], bad, answer.text)
    assert tried >= 40 * len(HOSTILE) // 2, tried

    # Body fields that reach a query or a table: silences (matchers, comment), acks, ingested events.
    for bad in HOSTILE:
        answer = client.post("/silences", headers=auth("admin"),
                             json={"matchers": [f"model={a}", f"rule={bad}"], "comment": bad, "duration": "1h"})
        assert answer.status_code in (201, 422), answer.text
        if answer.status_code == 201:
            listed = {s["id"]: s for s in client.get("/silences", headers=auth("admin")).json()}
            assert listed[answer.json()["id"]]["comment"] == bad  # stored as given
        assert client.post("/alerts/0123456789abcdef/ack", json={"comment": bad},
                           headers=auth("admin")).status_code == 404
        assert client.post("/silences", headers=auth("admin"), json={"matchers": [bad], "comment": "c",
                                                                     "duration": "1h"}).status_code in (201, 403, 422)
    events = [prediction(a, 100 + i, event_id=bad[:128], features={"x1": 1.0, "x2": 0.5, "c": bad}, prediction=bad[:1000])
              for i, bad in enumerate(HOSTILE)]
    events += [{**prediction(a, 200 + i), "model": bad} for i, bad in enumerate(HOSTILE)]
    events += [prediction(a, 300 + i, features={bad: 1.0}) for i, bad in enumerate(HOSTILE)]
    accepted = 0
    for event in events:  # one at a time: the body limit of the fixture is small
        answer = client.post("/ingest/predictions", json=[event], headers=auth("admin"))
        assert answer.status_code == 200, answer.text
        accepted += answer.json()["accepted"]
    assert accepted == len(HOSTILE)  # hostile values are data; hostile names are dead letters
    for bad in HOSTILE:
        rows = store.query("SELECT variantElement(features['c'], 'String'), variantElement(prediction, 'String') "
                           "FROM predictions WHERE model = {m:String} AND event_id = {e:String}",
                           parameters={"m": a, "e": bad[:128]}).result_rows
        assert rows == [(bad, bad[:1000])], bad
    # The same names through the collector's decode and sink (the Kafka path: tests/integration/test_ingest.py).
    outcome = write_chunk(store, EventKind.LABEL, [json.dumps({"event_id": "e", "model": bad, "ts": "2026-04-01T00:00:00Z",
                                                               "label": 1}).encode() for bad in HOSTILE],
                          source=f"sec-{a}")
    assert (outcome.written, {d.error_kind for d in outcome.dead_letters}) == (0, {"invalid_name"})

    after = _counts(store)
    assert set(after) == set(before)  # no table dropped or created
    assert after["predictions"] == before["predictions"] + accepted
    for table in ("labels", "infra_metrics", "drift_results", "detector_runs", "reference_rows"):
        assert after[table] == before[table], table
    assert store.query("EXISTS TABLE predictions").result_rows == [(1,)]


# -- (c) secrets never appear in logs, errors or answers -----------------------------------------------------------

def _forms(secret: str) -> list[str]:
    """The secret and the encodings a protocol could leak it in (AUTH PLAIN/LOGIN base64, the key inside whsec_)."""
    forms = [secret, base64.b64encode(secret.encode()).decode(), base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode()]
    if secret.startswith("whsec_"):
        forms += [secret.removeprefix("whsec_"), base64.b64decode(secret.removeprefix("whsec_")).hex()]
    return forms


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text, f"a secret ({form[:4]}...) leaked: ...{text[max(0, text.find(form) - 80):][:200]}"


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def test_secrets_stay_out_of_logs_and_errors_on_success_and_failure(debug_logs, api, tmp_path) -> None:  # type: ignore[no-untyped-def]
    hook_secret = WebhookSecret.generate()
    grafana_token = "glsa_" + hashlib.sha256(b"grafana").hexdigest()[:32]
    ch_password = "ch-Pa55-" + hashlib.sha256(b"ch").hexdigest()[:16]
    link_secret = "link-" + hashlib.sha256(b"link").hexdigest()
    secrets = [SMTP_PASSWORD, hook_secret, grafana_token, ch_password, link_secret, *TOKENS.values()]
    messages: list[str] = []

    # SMTP with AUTH: the right password, a wrong one, a server that is down.
    inbox = Inbox()
    with smtp_server(inbox) as port:
        ch = EmailChannel.model_validate({"type": "email", "to": ["owner@example.com"], "smtp_host": "127.0.0.1",
                                          "smtp_port": port, "security": "none", "sender": "d@example.com",
                                          "username": SMTP_USER, "password_env": "SMTP_PASSWORD"})
        for password in (SMTP_PASSWORD, SMTP_PASSWORD + "-wrong"):
            outcome = EmailNotifier(ch, SecretStr(password)).notify(build_message(ch, subject="s", text="t"))
            messages.append(repr(outcome))
            secrets.append(password)
        assert len(inbox.messages) == 1  # the right password did get through
    down = ch.model_copy(update={"smtp_port": free_port()})
    messages.append(repr(EmailNotifier(down, SecretStr(SMTP_PASSWORD), timeout_s=2).notify(
        build_message(down, subject="s", text="t"))))

    # Webhooks: accepted, refused (401, 500), unreachable, a URL that is not there.
    with Receiver([200, 401, 500], hook_secret) as receiver:
        notifier = WebhookNotifier(receiver.url, WebhookSecret(hook_secret), timeout_s=2)
        messages += [repr(notifier.notify(f"dl_{i}", b'{"model":"m"}')) for i in range(3)]
        assert receiver.accepted == ["dl_0"]
    for url in (f"http://127.0.0.1:{free_port()}/hook", "http://127.0.0.1:1/%zz"):
        messages.append(repr(WebhookNotifier(url, WebhookSecret(hook_secret), timeout_s=2).notify("dl_x", b"{}")))
    messages.append(repr(WebhookSecret(hook_secret)))

    # ClickHouse: a password in the URL and one in a file, against a server that is not there.
    password_file = tmp_path / "ch_password"
    password_file.write_text(ch_password + "\n")
    port = free_port()
    for settings in (Settings(clickhouse_url=f"http://bob:{ch_password}@127.0.0.1:{port}/db"),
                     Settings(clickhouse_url=f"http://bob@127.0.0.1:{port}/db", clickhouse_password_file=password_file)):
        with pytest.raises(StoreError) as failed:
            connect(settings)
        messages += [str(failed.value), repr(failed.value), repr(settings), settings.redacted_clickhouse_url()]

    # Grafana refusing the token.
    with FakeGrafana(fail={"/": 401}) as grafana:
        with pytest.raises(PushError) as refused:
            push(grafana.url, SecretStr(grafana_token), [{"uid": "x", "title": "x", "panels": []}], timeout_s=5)
        messages.append(str(refused.value))
        assert grafana.requests and grafana.requests[0][2]["authorization"] == f"Bearer {grafana_token}"  # sent, only there

    # API tokens: wrong ones, right ones, and report links signed with the wrong secret, on an app that has one.
    _, a, _, models_file, settings = api
    client = TestClient(create_app(load_registry(models_file), load_tokens(models_file.parent / "tokens.yaml"),
                                   lambda: connect(settings), settings=settings.model_copy(
                                       update={"api_link_secret": SecretStr(link_secret)})))
    start = dt.datetime(2026, 4, 1, 10, tzinfo=dt.timezone.utc)
    good_link = links.signed_query(link_secret.encode(), a, start, start + dt.timedelta(hours=1),
                                   now=dt.datetime.now(dt.timezone.utc), lifetime=dt.timedelta(days=1))
    answer = client.get(f"/models/{a}/report", params=good_link)
    messages.append(f"{answer.status_code} {answer.text}")
    assert answer.status_code != 401, answer.text  # the link is accepted (no data there: 404/409)
    for token in (*TOKENS.values(), TOKENS["admin"] + "x", "Bearer " + TOKENS["reader"]):
        for url in ("/models", "/models/reload", f"/models/{a}/report?expires={int(time.time()) + 60}&sig={'0' * 64}"):
            answer = client.request("POST" if url.endswith("reload") else "GET", url,
                                    headers={"Authorization": f"Bearer {token}"})
            messages.append(f"{answer.status_code} {answer.headers} {answer.text}")

    everything = "\n".join(messages) + "\n" + debug_logs.text + "\n" + "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in debug_logs.records)
    assert "authentication failed" in everything and "unreachable" in everything and "401" in everything
    assert_no_secret(everything, *secrets)


def test_the_cli_keeps_secrets_out_of_its_json_logs_and_messages(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ch_password = "cli-Pa55-" + hashlib.sha256(b"cli").hexdigest()[:16]
    grafana_token = "glsa_" + hashlib.sha256(b"cli-grafana").hexdigest()[:32]
    (tmp_path / "pw").write_text(ch_password)
    port = free_port()
    runs = [
        (["db", "query", "SELECT 1"], {"clickhouse_url": f"http://bob:{ch_password}@127.0.0.1:{port}/db"}),
        (["db", "query", "SELECT 1"], {"clickhouse_url": f"http://bob@127.0.0.1:{port}/db",
                                        "clickhouse_password_file": tmp_path / "pw"}),
        (["db", "migrate"], {"clickhouse_url": f"http://bob:{ch_password}@127.0.0.1:{port}/db"}),
    ]
    with FakeGrafana(fail={"/": 401}) as grafana:
        runs.append((["dashboards", "push"], {"grafana_url": grafana.url, "grafana_token": grafana_token}))
        outputs = []
        for args, settings in runs:
            done = run_driftline(args, clean_env(log_format="json", log_level="DEBUG", **settings), timeout=120)
            assert done.returncode != 0, (args, done.stdout, done.stderr)
            outputs.append(done.stdout + done.stderr)
        assert grafana.requests  # the push did reach the refusing server
    text = "\n".join(outputs)
    assert text.strip() and ("127.0.0.1" in text)  # the failures are explained
    assert_no_secret(text, ch_password, grafana_token)


# -- (d) webhook signatures ---------------------------------------------------------------------------------------

SECRET = WebhookSecret.generate()
BODY = b'{"schema":"driftline.retrain.v1","model":"churn"}'


@pytest.mark.parametrize("case", ["wrong secret", "changed body", "replay after the tolerance", "too far ahead"])
def test_both_verifiers_reject_our_deliveries_when_altered(case: str) -> None:
    now = int(time.time())
    ts = {"replay after the tolerance": now - 301, "too far ahead": now + 301}.get(case, now)
    headers = signed_headers(WebhookSecret(SECRET), "dl_retrain_1", BODY, timestamp=ts)
    secret = WebhookSecret.generate() if case == "wrong secret" else SECRET
    body = BODY.replace(b"churn", b"chum") if case == "changed body" else BODY
    with pytest.raises(WebhookVerificationError):
        verify_webhook(body, headers, secret)
    with pytest.raises(TheirError):
        Webhook(secret).verify(body, headers)
    # Unaltered, both accept it: the rejections above are for the alteration.
    fresh = signed_headers(WebhookSecret(SECRET), "dl_retrain_1", BODY)
    assert verify_webhook(BODY, fresh, SECRET) == "dl_retrain_1" and Webhook(SECRET).verify(BODY, fresh)
