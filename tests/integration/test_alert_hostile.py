"""Must-show 5: malformed rule files, unreachable endpoints and hostile strings reach neither a crash nor an injection.

Model, feature, rule and label names are identifiers (rejected at load, see
tests/unit/test_alert_config.py); free text (label values, silence matchers,
authors, comments, delivery ids from the command line) travels as query
parameters and never into a header.
"""

from __future__ import annotations

import datetime as dt
import email
import logging
import subprocess
import sys
import time
import uuid
from email.policy import default
from pathlib import Path

import pytest

from alerts import outbox
from alerts.evaluate import Evaluator
from alerts import silences
from alerts.silences import Matcher, Silence, SilenceError, UnusableMatcher, create_silence, list_silences
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


def test_a_silence_pattern_that_backtracks_for_minutes_costs_evaluation_nothing(store) -> None:  # type: ignore[no-untyped-def]
    """Must-show 6: a tenant's silence whose regex a backtracking engine needs minutes for leaves the
    evaluation of three models as fast as without it: silences run on RE2 (linear time)."""
    rule = "dataset_drift_watched_by_a_rule_with_a_long_name"
    patterns = ("(.*.*)*!", "(.+)+!", "(a|aa)*(a|aa)*!")
    # The patterns are catastrophic for Python's own engine on this label value: not done within 3 s.
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", f"import re; re.fullmatch({patterns[0]!r}, {rule!r})"], timeout=3)

    day = dt.datetime(2031, 3, 3, tzinfo=UTC)
    models = [f"redos-{tag()}" for _ in range(3)]
    evaluators = {}
    for m in models:
        config = alert_config(m, channels={f"mail-{m}": {"type": "email", "to": ["o@example.com"],
                                                         "attach_report": False}},
                              rules=[{"name": rule, "for": 1, "when": {"dataset_drift": {}}}])
        evaluators[m] = Evaluator(store, registry_of(m), config)
        for h in range(2):
            write_drift(store, m, hour(day, h), share=0.67, drifted=("x1", "c"))

    def evaluate_all(h: int) -> tuple[float, int]:
        began = time.perf_counter()
        queued = sum(len(evaluators[m].evaluate(m, now=hour(day, h).end).queued) for m in models)
        return time.perf_counter() - began, queued

    without, queued = evaluate_all(0)
    assert queued == 3
    for pattern in patterns:
        create_silence(store, [Matcher("rule", "=~", pattern), Matcher("model", "=~", "redos-.*")], author="tenant",
                       comment="matches nothing, slowly", ends_at=day + dt.timedelta(days=1), now=day)
    with_them, _ = evaluate_all(1)
    states = store.query("SELECT muted FROM alert_states FINAL WHERE model IN {m:Array(String)}",
                         parameters={"m": models}).result_rows
    assert [s[0] for s in states] == ["", "", ""]  # evaluated, and none of them matched
    assert with_them <= 2 * without + 0.5, (with_them, without)  # the same work, within noise


def test_backtracking_only_patterns_are_refused_and_a_stored_one_mutes_nothing(store, caplog) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SilenceError, match="RE2 syntax: no backreferences or lookaround"):
        Matcher("rule", "=~", r"(dataset)\1")
    with pytest.raises(SilenceError, match="invalid perl operator"):
        Matcher.parse("rule=~(?=dataset).*")

    # A silence stored by a version that ran Python's engine: it would have muted this alert.
    day = dt.datetime(2031, 4, 4, tzinfo=UTC)
    name = f"legacy-{tag()}"
    legacy = Silence(str(uuid.uuid4()), (UnusableMatcher("model", "=~", "(?=legacy).*"),), "old", "from before RE2",
                     day, day + dt.timedelta(days=1), day)
    silences._write(store, legacy)  # noqa: SLF001 - what an older version stored
    config = alert_config(name, channels={f"mail-{name}": {"type": "email", "to": ["o@example.com"],
                                                           "attach_report": False}},
                          rules=[{"name": "dataset", "for": 1, "when": {"dataset_drift": {}}}])
    write_drift(store, name, hour(day, 0), share=0.67, drifted=("x1", "c"))
    caplog.set_level(logging.ERROR, logger="alerts.silences")
    stored = {s.id: s for s in list_silences(store)}[legacy.id]
    assert not stored.matches({"model": name})
    queued = Evaluator(store, registry_of(name), config).evaluate(name, now=hour(day, 0).end).queued
    assert len(queued) == 1  # the alert notifies: a silence that cannot run mutes nothing
    lines = [r for r in caplog.records if r.name == "alerts.silences" and getattr(r, "silence", "") == legacy.id]
    assert len(lines) == 1 and "mutes nothing" in lines[0].getMessage()
