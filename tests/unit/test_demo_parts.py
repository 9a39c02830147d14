"""The parts of `driftline demo` that need no broker or store: its folder, its configuration, its catchers' logic
and its traffic's shape. (`tests/integration/test_demo.py` runs the demo itself.)"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from alerts.config import EmailChannel, load_alerts
from alerts.notify.email import build_message
from alerts.signing import WebhookSecret, signed_headers
from detectors.config import load_registry
from driftline.demo import config as demo_config
from driftline.demo.catchers import WebhookCatcher, describe_email
from driftline.demo.traffic import GENERATORS, write_references


def test_a_foreign_folder_is_refused_a_previous_demo_folder_replaced(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(demo_config.DemoFolderError, match="--force"):
        demo_config.prepare(tmp_path)
    layout = demo_config.prepare(tmp_path, force=True)  # writes its own names only
    assert (tmp_path / "mine.txt").read_text() == "keep"
    (layout.emails / "001-old.eml").write_text("old")
    layout.webhooks.write_text("{}\n")
    again = demo_config.prepare(tmp_path)  # a demo folder now: no --force needed, its old files are gone
    assert list(again.emails.iterdir()) == [] and not again.webhooks.exists()
    assert (tmp_path / "mine.txt").read_text() == "keep"
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(demo_config.DemoFolderError, match="is a file"):
        demo_config.prepare(file)


def test_the_written_configuration_is_valid_and_keeps_secrets_private(tmp_path: Path) -> None:
    layout = demo_config.prepare(tmp_path / "demo")
    demo_config.write_secrets(layout)
    demo_config.write_models(layout)
    demo_config.write_alerts(layout, smtp_port=2525, webhook_url="http://127.0.0.1:9/retrain")
    registry = load_registry(layout.models_file)
    assert [m.name for m in registry.models] == list(demo_config.MODELS)
    config = load_alerts(layout.alerts_file, registry)
    names = {r.name for r in config.rules}
    for model, rules in demo_config.EXPECTED_FIRING.items():
        assert set(rules) <= names and {r.name for r in config.rules_of(model)} >= set(rules)
    missing = next(r for r in config.rules if r.name == demo_config.MISSING_RULE)
    assert missing.routes == ("ml-owners",)  # no retrain for a broken pipeline
    for secret in (layout.webhook_secret, layout.api_token):
        assert secret.stat().st_mode & 0o077 == 0
    assert layout.webhook_secret.read_text().strip() not in layout.alerts_file.read_text()
    assert layout.api_token.read_text().strip() not in layout.tokens_file.read_text()


def test_the_traffic_drifts_breaks_and_stays_healthy_as_promised(tmp_path: Path) -> None:
    rng = random.Random(1)

    def sample(model: str, incident: bool, n: int = 2000) -> list:  # type: ignore[type-arg]
        return [GENERATORS[model](rng, incident) for _ in range(n)]

    def accuracy(events: list) -> float:  # type: ignore[type-arg]
        return sum(e[1] == e[3] for e in events) / len(events)

    def mean(events: list, feature: str) -> float:  # type: ignore[type-arg]
        values = [e[0][feature] for e in events if e[0][feature] is not None]
        return sum(values) / len(values)

    healthy, drifted = sample(demo_config.CLASSIFIER, False), sample(demo_config.CLASSIFIER, True)
    assert accuracy(healthy) > 0.85 and accuracy(drifted) < 0.7
    assert mean(drifted, "monthly_charges") - mean(healthy, "monthly_charges") > 20
    broken = sample(demo_config.BROKEN, True)
    assert 0.25 < sum(e[0]["velocity_1h"] is None for e in broken) / len(broken) < 0.45
    assert not [e for e in sample(demo_config.BROKEN, False) if None in e[0].values()]
    eta = sample(demo_config.REGRESSOR, False), sample(demo_config.REGRESSOR, True)
    assert abs(mean(eta[0], "distance_km") - mean(eta[1], "distance_km")) < 0.5
    files = write_references(tmp_path, rows=50)
    header = files[demo_config.CLASSIFIER].read_text().splitlines()[0].split(",")
    assert {"prediction", "label", "proba_1", "monthly_charges"} <= set(header)


def test_an_alert_email_is_described_by_its_model_state_and_rules() -> None:
    channel = EmailChannel(type="email", to=("owner@example.com",))
    text = ("Model churn (version 1)\n\n- churn-drift: 75% of features drifted\n  window ...\n"
            "- churn-accuracy: accuracy 0.6 against baseline 0.9\n  window ...\n\n"
            "Drifted features in the latest window:\n- contract: chisquare 0.001\n")
    message = build_message(channel, subject="[FIRING] critical: model churn: 75% of features drifted (+1 more)",
                            text=text, attachments=[("drift-report-churn.html", b"<html></html>", "text/html")])
    subject, model, state, rules, attachments = describe_email(bytes(message))
    assert (model, state, rules, attachments) == ("churn", "FIRING", ["churn-drift", "churn-accuracy"],
                                                  ["drift-report-churn.html"])
    assert subject.startswith("[FIRING]")


def test_the_webhook_receiver_verifies_logs_and_accepts_each_id_once(tmp_path: Path) -> None:
    secret = WebhookSecret.generate()
    (tmp_path / "secret").write_text(secret + "\n")
    catcher = WebhookCatcher(tmp_path / "webhooks.jsonl", tmp_path / "secret")
    try:
        body = json.dumps({"id": "d1", "model": "churn", "reason": "dataset_drift"}).encode()
        headers = signed_headers(WebhookSecret(secret), "d1", body)
        assert catcher.receive("/retrain", headers, body) == 200
        assert catcher.receive("/retrain", headers, body) == 200  # a retry: answered, not accepted twice
        forged = signed_headers(WebhookSecret(WebhookSecret.generate()), "d2", body)
        assert catcher.receive("/retrain", forged, body) == 401
        github = json.dumps({"event_type": "driftline-retrain", "client_payload": {"model": "eta", "reason": "x"}})
        assert catcher.receive("/retrain", signed_headers(WebhookSecret(secret), "d3", github.encode()),
                               github.encode()) == 200
    finally:
        catcher.server.server_close()
    lines = [json.loads(line) for line in (tmp_path / "webhooks.jsonl").read_text().splitlines()]
    assert [(c["webhook_id"], c["verified"], c["accepted"], c["model"]) for c in lines] == [
        ("d1", True, True, "churn"), ("d1", True, False, "churn"), ("d2", False, False, "churn"),
        ("d3", True, True, "eta")]
    assert "no signature matches" in lines[2]["error"] and secret not in (tmp_path / "webhooks.jsonl").read_text()
