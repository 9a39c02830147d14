"""Must-show 5: malformed rule files, unreachable endpoints and hostile strings reach neither a crash nor an injection.

Model, feature, rule and label names are identifiers (rejected at load, see
tests/unit/test_alert_config.py); free text (label values, silence matchers,
authors, comments, delivery ids from the command line) travels as query
parameters and never into a header.
"""

from __future__ import annotations

import datetime as dt
import email
from email.policy import default
from pathlib import Path

import pytest

from alerts import outbox
from alerts.evaluate import Evaluator
from alerts.silences import Matcher, create_silence, list_silences
from tests.conftest import clean_env, run_driftline
from tests.integration.alerting import UTC, alert_config, hour, registry_of, tag, write_drift

HOSTILE = "x'); DROP TABLE outbox; --\r\nBcc: evil@example.com\x00 {m:String} ${{jndi:ldap://e}} <script>"
DAY = dt.datetime(2026, 4, 5, tzinfo=UTC)


def tables(store) -> set[str]:  # type: ignore[no-untyped-def]
    return {r[0] for r in store.query("SHOW TABLES").result_rows}


def test_hostile_label_values_and_silence_text_stay_data(store) -> None:  # type: ignore[no-untyped-def]
    name = f"hostile-{tag()}"
    before = tables(store)
    config = alert_config(name, channels={f"mail-{name}": {"type": "email", "to": ["o@example.com"],
                                                           "attach_report": False}},
                          rules=[{"name": "dataset", "for": 1, "labels": {"team": HOSTILE},
                                  "when": {"dataset_drift": {}}}])
    silence = create_silence(store, [Matcher("team", "=", HOSTILE + "-not-this-one")], author=HOSTILE,
                             comment=HOSTILE, ends_at=DAY + dt.timedelta(days=1), now=DAY)
    stored = {s.id: s for s in list_silences(store)}[silence.id]
    assert stored.author == HOSTILE[:200] and stored.comment == HOSTILE and stored.matchers[0].value.startswith(HOSTILE)

    write_drift(store, name, hour(DAY, 0), share=0.67, drifted=("x1", "c"))
    queued = Evaluator(store, registry_of(name), config).evaluate(name, now=hour(DAY, 0).end).queued
    assert len(queued) == 1  # the silence's value differs by a suffix: it does not match, nothing is muted
    labels = store.query("SELECT labels['team'] FROM alert_states FINAL WHERE model = {m:String}",
                         parameters={"m": name}).result_rows
    assert labels == [(HOSTILE,)]
    raw = outbox.body_of(store, queued[0].delivery_id)
    message = email.message_from_bytes(raw, policy=default)
    assert message["Bcc"] is None and "evil@example.com" not in str(message["To"])
    assert tables(store) == before

    # A silence matching the hostile value literally does mute the alert.
    create_silence(store, [Matcher("team", "=", HOSTILE)], author="bob", comment="literal match",
                   ends_at=DAY + dt.timedelta(days=1), now=DAY)
    state = Evaluator(store, registry_of(name), config)
    state.evaluate(name, now=hour(DAY, 0).end + dt.timedelta(hours=5))  # past the repeat interval: would notify
    muted = store.query("SELECT muted FROM alert_states FINAL WHERE model = {m:String}", parameters={"m": name}).result_rows
    assert muted[0][0].startswith("silenced:")


@pytest.mark.slow
def test_cli_rejects_bad_files_and_hostile_arguments_cleanly(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text("models:\n  - {name: churn, task: regression, features: {x: numeric}, "
                                          "reference: {rolling: {offset: 7d}}}\n")
    env = clean_env(clickhouse_url=f"chdb:{tmp_path / 'store'}", models_file=tmp_path / "models.yaml",
                    alerts_file=tmp_path / "alerts.yaml")
    cases = {
        "channels: [unclosed\n": "invalid YAML",
        "channels: {}\nrules:\n  - name: r\n    model: \"churn'; DROP TABLE alert_states; --\"\n"
        "    when: {dataset_drift: {}}\n    routes: [x]\n": "does not match",
        "channels:\n  hook: {type: webhook, url: 'file:///etc/passwd', secret_env: S}\n": "must start with http",
    }
    for text, expected in cases.items():
        (tmp_path / "alerts.yaml").write_text(text)
        done = run_driftline(["alerts", "check"], env)
        assert done.returncode == 2 and expected in done.stderr, (text, done.stderr)
        assert "Traceback" not in done.stderr

    (tmp_path / "alerts.yaml").write_text("channels:\n  mail: {type: email, to: [o@example.com]}\n")
    replay = run_driftline(["deliveries", "replay", "'; DROP TABLE outbox; --"], env)
    assert replay.returncode == 2 and "no delivery with id" in replay.stderr and "Traceback" not in replay.stderr
    bad_matcher = run_driftline(["silence", "add", "--match", "team=~(unclosed", "--duration", "1h",
                                 "--comment", "c"], env)
    assert bad_matcher.returncode == 2 and "invalid regex" in bad_matcher.stderr
    bad_name = run_driftline(["silence", "add", "--match", "te am=x", "--duration", "1h", "--comment", "c"], env)
    assert bad_name.returncode == 2 and "label name" in bad_name.stderr
    unknown = run_driftline(["alerts", "test", "--channel", "nope\r\nX-Evil: 1", "--model", "churn"], env)
    assert unknown.returncode == 2 and "no channel" in unknown.stderr
    ok = run_driftline(["silence", "add", "--match", "model=churn", "--duration", "1h", "--comment", HOSTILE[:40],
                        "--author", "alice"], env)
    assert ok.returncode == 0, ok.stderr
    listed = run_driftline(["silence", "list"], env)
    assert listed.returncode == 0 and '"author": "alice"' in listed.stdout and "DROP TABLE outbox" in listed.stdout
    evaluated = run_driftline(["alerts", "evaluate"], env)
    assert evaluated.returncode == 0 and '"model": "churn"' in evaluated.stdout, evaluated.stderr
    for args in (["alerts", "list", "--all"], ["deliveries", "list"], ["alerts", "history", "nope"]):
        done = run_driftline(args, env)
        assert done.returncode == 0, (args, done.stderr)
