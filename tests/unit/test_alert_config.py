"""Alert rules and channels: a valid file means what it says; every bad one fails at load, with its line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from alerts.config import EmailChannel, WebhookChannel, load_alerts
from detectors.config import load_registry
from driftline.yamlfile import ConfigError

HERE = Path(__file__).parent
GOOD = HERE / "alerts" / "good.yaml"
REGISTRY = load_registry(HERE / "registry" / "good.yaml")


def test_good_file_means_what_it_says() -> None:
    config = load_alerts(GOOD, REGISTRY)
    email, hook = config.channels["ml-owners"], config.channels["retrain"]
    assert isinstance(email, EmailChannel) and email.to == ("owner@example.com", "oncall@example.com")
    assert isinstance(hook, WebhookChannel) and hook.preset == "github" and hook.cooldown == timedelta(hours=12)
    first = config.rules[0]
    assert (first.for_, first.clear_for, first.severity, first.routes) == (2, 3, "critical", ("ml-owners", "retrain"))
    latency = config.rules[3].when.infra
    assert latency is not None and latency.thresholds().fire == 250 and latency.thresholds().clear == 200
    assert config.rules[3].send_resolved is False and config.rules[3].repeat_interval == timedelta(hours=1)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


BAD = [
    ("route to no channel", "routes: [ml-owners, retrain]", "routes: [ml-owners, pager]",
     ["route 'pager' names no channel", "ml-owners, retrain"], "routes: [ml-owners, pager]"),
    ("two URL sources", "    url: https://ci.example.com/hooks/retrain", "    url: https://ci.example.com/h\n    url_file: /x",
     ["give exactly one of url, url_file"], "retrain:"),
    ("secret written nowhere", "    secret_env: DRIFTLINE_RETRAIN_SECRET\n", "",
     ["give exactly one of secret_env, secret_file"], "retrain:"),
    ("unknown preset", "preset: github", "preset: jenkins", ["unknown preset 'jenkins'", "generic"], "preset: jenkins"),
    ("header injection in an address", "to: [owner@example.com, oncall@example.com]",
     'to: ["owner@example.com\\r\\nBcc: all@example.com"]', ["is not a single email address"], "ml-owners:"),
    ("clearing above firing", "clear_share: 0.25", "clear_share: 0.75", ["clearing threshold (0.75)"], "clear_share: 0.75"),
    ("two conditions", "when: {feature_drift: {features: [age]}}",
     "when: {feature_drift: {features: [age]}, quality: {check: missing_share}}", ["exactly one condition"], "quality: {check"),
    ("unknown model", "    model: eta", "    model: etaa", ["model 'etaa' is not in the registry"], "model: etaa"),
    ("unknown feature", "features: [age]", "features: [agee]", ["model 'churn' has no feature 'agee'"], "features: [agee]"),
    ("metric the model does not compute", "metric: accuracy", "metric: rmse", ["does not compute 'rmse'"], "metric: rmse"),
    ("negative for", "    for: 2", "    for: 0", ["for", "greater than or equal to 1"], "for: 0"),
    ("hostile rule name", "name: churn-age", "name: \"x'; DROP TABLE alerts; --\"", ["does not match"], "DROP TABLE"),
    ("unknown inhibition kind", "rules:\n", "inhibit: [{source: outage, target: feature_drift}]\nrules:\n",
     ["unknown condition kind 'outage'"], "inhibit:"),
    ("hostile label name", "labels: {team: retention}", "labels: {\"te am\\r\\nBcc\": x}", ["does not match"],
     "labels:"),
    ("plain-text password field", "    password_file: /run/secrets/smtp", "    password: hunter2",
     ["password", "Extra inputs are not permitted", "(value hidden)"], "password: hunter2"),
]


@pytest.mark.parametrize("description,old,new,fragments,line_text", BAD, ids=[b[0] for b in BAD])
def test_bad_file_fails_at_load(tmp_path: Path, description: str, old: str, new: str, fragments: list[str],
                                line_text: str) -> None:
    good = GOOD.read_text()
    assert good.count(old) == 1, description
    text = good.replace(old, new)
    path = tmp_path / "alerts.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_alerts(path, REGISTRY)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message}"
    assert f"{path}:{_line_of(text, line_text)}:" in message, message
    assert "hunter2" not in message  # a secret pasted in the wrong place is not echoed back
