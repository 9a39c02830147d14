"""Personal data never lands in ClickHouse: a governed model's events through the real `driftline up`.

Valid and malformed events carrying distinctive personal values go through
Kafka (the up's own broker and collector) and through HTTP ingest; after the
service stops, a detector run reads the window, and then every column of
every table of the store (dead letters included) is scanned: no raw value is
anywhere, the hashed ones appear as their HMAC tokens, and drift is still
found on the remaining features.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from pydantic import SecretStr
from prometheus_client.parser import text_string_to_metric_families

from collector.local_broker import free_port
from driftline.privacy import PrivacySpec, Redactor
from tests.conftest import clean_env, query_store, run_driftline
from tests.integration.test_up import running_up

pytestmark = pytest.mark.integration

KEY = "privacy-test-key-0123456789abcdef"
TOKEN = "privacy-test-api-token-0123456789"
MODEL = "churn_pii"
START = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).replace(minute=0, second=0, microsecond=0)


class Values:
    """The personal values of one run; every needle is a prefix shared by all values of its kind."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.email, self.phone = f"pii{self.tag}e", f"+3106{self.tag}p"
        self.user, self.event = f"user{self.tag}x", f"evt{self.tag}k"
        self.version = f"v{self.tag}"  # not governed: stored raw, so the scan must find it (a positive control)

    @property
    def needles(self) -> list[str]:
        return [self.email, self.phone, self.user, self.event]


def prediction(v: Values, i: int, *, current: bool, rng: random.Random) -> dict:
    ts = START + dt.timedelta(hours=1 if current else 0, seconds=i % 3000)
    plan = rng.choices(["basic", "pro"], weights=[1, 9] if current else [5, 5])[0]
    return {"event_id": f"{v.event}{i}", "model": MODEL, "model_version": v.version,
            "ts": ts.isoformat().replace("+00:00", "Z"), "prediction": rng.random(),
            "features": {"age": 20.0 + i % 50, "plan": plan, "user_id": f"{v.user}{i % 20}",
                         "email": f"{v.email}{i}@example.org", "phone": f"{v.phone}{i}"}}


def malformed(v: Values, i: int) -> list[bytes]:
    """Dead letters of every shape, each holding personal values."""
    good = prediction(v, i, current=True, rng=random.Random(i))
    bad_type = json.loads(json.dumps(good))
    bad_type["features"]["age"] = [1]
    unknown_field = {**good, "email": f"{v.email}{i}top@example.org"}
    typo_model = {**good, "model": "churn_pi"}
    del typo_model["prediction"]
    pairs = {**good, "features": [["phone", f"{v.phone}{i}"], ["user_id", f"{v.user}{i}"]]}
    text = json.dumps(good).encode()
    return [json.dumps(x).encode() for x in (bad_type, unknown_field, typo_model, pairs)] + [
        text[: len(text) // 2 + 20],  # truncated JSON
        f"{v.email}{i}@example.org,{v.user}{i}".encode(),  # not JSON at all
    ]


def counters(port: int) -> float:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text)
               if f.name in ("driftline_collector_events_stored", "driftline_collector_events_dead_lettered")
               for s in f.samples if s.name.endswith("_total"))


def post(port: int, kind: str, lines: list[bytes]) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/ingest/{kind}", data=b"\n".join(lines), method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def scan(folder: Path, needles: list[str]) -> dict:
    done = subprocess.run([sys.executable, "-m", "tests.integration.store_scan", str(folder)],
                          input=json.dumps({"needles": needles}), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_governed_values_are_nowhere_in_the_store_and_detectors_still_work(tmp_path: Path) -> None:
    v, rng = Values(), random.Random(7)
    (tmp_path / "privacy.key").write_text(KEY)
    (tmp_path / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: t, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, scopes: [admin]}}\n")
    (tmp_path / "models.yaml").write_text(
        "models:\n"
        f"  - name: {MODEL}\n"
        "    task: regression\n"
        "    features: {age: numeric, plan: categorical, user_id: categorical}\n"
        "    reference: {rolling: {offset: 1h}}\n"
        "    window: 1h\n"
        "    drift: {min_rows: 50, prediction: false, target: false}\n"
        "    privacy: {drop: [email, phone], hash: [user_id, event_id]}\n")
    broker_port, api_port = free_port(), free_port()
    env = clean_env(local_broker_port=broker_port, api_port=api_port, kafka_session_timeout_ms=6000,
                    kafka_max_poll_interval_ms=10000, detector_catchup_windows=1, privacy_key_file=tmp_path / "privacy.key")

    # Without the key, the service refuses to start rather than store the values unhashed.
    refused = subprocess.run([sys.executable, "-m", "driftline.cli", "up"], cwd=tmp_path, timeout=120, text=True,
                             capture_output=True, env={k: x for k, x in env.items() if k != "DRIFTLINE_PRIVACY_KEY_FILE"})
    assert refused.returncode == 2 and "DRIFTLINE_PRIVACY_KEY_FILE" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    kafka_valid = [prediction(v, i, current=i >= 300, rng=rng) for i in range(600)]
    kafka_labels = [{"event_id": f"{v.event}{i}", "model": MODEL, "ts": kafka_valid[i]["ts"], "label": 1.0}
                    for i in range(0, 600, 10)]
    kafka_bad = [raw for i in range(3) for raw in malformed(v, 10_000 + i)]
    http_valid = [prediction(v, i, current=True, rng=rng) for i in range(2000, 2100)]
    http_bad = malformed(v, 20_000)
    expected = len(kafka_valid) + len(kafka_labels) + len(kafka_bad) + len(http_valid) + len(http_bad)

    with running_up(tmp_path, env) as (up, banner):
        assert banner[0].startswith("Driftline is up."), banner
        producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{broker_port}", linger_ms=5)
        for event in kafka_valid:
            producer.send("predictions", key=MODEL.encode(), value=json.dumps(event).encode())
        for raw in kafka_bad:
            producer.send("predictions", key=MODEL.encode(), value=raw)
        for label in kafka_labels:
            producer.send("labels", key=MODEL.encode(), value=json.dumps(label).encode())
        producer.flush()
        producer.close()
        answer = post(api_port, "predictions", [json.dumps(e).encode() for e in http_valid] + http_bad)
        assert (answer["accepted"], answer["dead_lettered"]) == (len(http_valid), len(http_bad)), answer
        deadline = time.monotonic() + 90
        while counters(api_port) < expected:
            assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.3)

    folder = tmp_path / "driftline-data"
    window = [f"--start={(START + dt.timedelta(hours=1)).isoformat()}", f"--end={(START + dt.timedelta(hours=2)).isoformat()}"]
    detected = run_driftline(["detect", "--model", MODEL, "--stage", "drift", "--quiet", *window],
                             {**env, "DRIFTLINE_CLICKHOUSE_URL": f"chdb:{folder}",
                              "DRIFTLINE_MODELS_FILE": str(tmp_path / "models.yaml")})
    assert detected.returncode == 0, detected.stderr
    (result,) = [json.loads(line) for line in detected.stdout.splitlines() if line.startswith("{")]
    assert result["status"] == "ok" and "plan" in result["drifted"] and "age" not in result["drifted"], result

    redactor = Redactor({MODEL: PrivacySpec(drop=("email", "phone"), hash=("user_id", "event_id"))}, KEY.encode())
    tokens = {"user": redactor.token(f"{v.user}3"), "event": redactor.token(f"{v.event}10"),
              "http_event": redactor.token(f"{v.event}2050")}
    report = scan(folder, v.needles + [v.version, *tokens.values()])
    found = report["found"]
    assert {"predictions", "labels", "dead_letters", "drift_results", "ingest_batches"} <= set(report["scanned"])
    assert "raw" in report["scanned"]["dead_letters"] and "features" in report["scanned"]["predictions"]
    for needle in v.needles:
        assert found[needle] == [], f"raw personal values {needle}* stored in {found[needle]}"
    assert ["predictions", "model_version", len(kafka_valid) + len(http_valid)] in found[v.version]  # the scan sees rows
    assert ["predictions", "features", 30 + 5] in found[tokens["user"]]  # 600/20 over Kafka, 100/20 over HTTP
    assert ["predictions", "event_id", 1] in found[tokens["event"]] and ["labels", "event_id", 1] in found[tokens["event"]]
    assert ["predictions", "event_id", 1] in found[tokens["http_event"]]

    letters = query_store(folder, "SELECT topic, error_kind, countIf(position(error, '[raw redacted') > 0), "
                                  "countIf(position(error, '[raw replaced by its digest') > 0), count() "
                                  "FROM dead_letters GROUP BY topic, error_kind ORDER BY topic, error_kind")
    per_topic: dict[str, list[int]] = {}
    for topic, _kind, redacted, digested, total in letters:
        t = per_topic.setdefault(topic, [0, 0, 0])
        for j, n in enumerate((redacted, digested, total)):
            t[j] += int(n)
    # Per malformed set: three objects redacted by policy, three digested (pairs, truncated, not JSON).
    assert per_topic == {"predictions": [9, 9, 18], "http-predictions": [3, 3, 6]}, letters
    joined = query_store(folder, "SELECT count() FROM predictions p INNER JOIN labels l ON p.event_id = l.event_id "
                                 f"WHERE p.model = '{MODEL}'")
    assert joined == [[str(len(kafka_labels))]]  # hashed event ids still join predictions to their labels


def test_a_reload_applies_a_new_policy_to_http_ingest_and_refuses_one_without_a_key(base_settings, store,
                                                                                    tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from detectors.config import load_registry
    from driftline.api.app import create_app
    from driftline.api.auth import load_tokens
    from driftline.api.context import Reloaded
    from driftline.store import connect

    v = Values()
    model = f"reload_{v.tag}"
    entry = {"name": model, "task": "regression", "features": {"x": "numeric"}, "reference": {"rolling": {"offset": "1h"}}}
    models_file = tmp_path / "models.yaml"
    models_file.write_text(json.dumps({"models": [entry]}))
    (tmp_path / "tokens.yaml").write_text(
        f"tokens:\n  - {{name: t, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, scopes: [admin]}}\n")
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
    partition = int(v.tag, 16) % 60000

    def app(**settings: object) -> TestClient:
        s = base_settings.model_copy(update={"api_ingest_partition": partition, **settings})
        return TestClient(create_app(load_registry(models_file), load_tokens(tmp_path / "tokens.yaml"),
                                     lambda: connect(base_settings), settings=s, reload=lambda: Reloaded(load_registry(models_file))))

    keyless, keyed = app(), app(privacy_key=SecretStr(KEY))
    models_file.write_text(json.dumps({"models": [{**entry, "privacy": {"drop": ["email"]}}]}))
    refused = keyless.post("/models/reload", headers=headers)
    assert refused.status_code == 422 and "DRIFTLINE_PRIVACY_KEY" in refused.json()["detail"], refused.text
    assert keyed.post("/models/reload", headers=headers).status_code == 200
    event = {"event_id": "e1", "model": model, "model_version": "1", "ts": "2026-12-01T10:00:00Z", "prediction": 1.0,
             "features": {"x": 1.0, "email": f"{v.email}@example.org"}}
    assert keyed.post("/ingest/predictions", headers=headers, content=json.dumps(event)).json()["accepted"] == 1
    rows = store.query("SELECT mapKeys(features) FROM predictions WHERE model = {m:String}",
                       parameters={"m": model}).result_rows
    assert rows == [(["x"],)]
