"""The alerting commands of `driftline`: alerts, silence, deliveries.

  alerts check          validate alerts.yaml against the model registry
  alerts list           alert states (firing and pending by default)
  alerts history FP     the audit trail of one alert
  alerts ack FP         acknowledge an alert's current episode (no repeats until it resolves)
  alerts evaluate       one evaluation pass now (what the scheduler does after each detector run)
  alerts test           queue a test notification through a channel
  silence add|list|expire
  deliveries list       the outbox, newest first
  deliveries replay ID  queue a dead (or delivered) delivery again
  deliveries run        the dispatcher alone, until stopped
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
import threading
from typing import Any

from driftline.config import Settings
from driftline.store import connect, migrate

UTC = dt.timezone.utc


def load_alert_config(settings: Settings, path: str | None = None, registry: Any = None):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from alerts.config import load_alerts
    from detectors.config import load_registry

    if registry is None:
        registry = load_registry(settings.models_file)
    return load_alerts(Path(path) if path else settings.alerts_file, registry), registry


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    """A client on a migrated store (migrating is idempotent and cheap), so a fresh folder works as well."""
    client = connect(settings)
    migrate(client)
    return client


def _actor(args: argparse.Namespace) -> str:
    return (getattr(args, "author", None) or getpass.getuser() or "unknown").strip()


def _json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, dt.datetime) else str(v))


def cmd_alerts_check(args: argparse.Namespace, settings: Settings) -> int:
    config, _ = load_alert_config(settings, args.alerts_file)
    for rule in config.rules:
        print(_json({"rule": rule.name, "model": rule.model, "when": rule.when.kind, "severity": rule.severity,
                     "for": rule.for_, "clear_for": rule.clear_for, "routes": list(rule.routes)}))
    return 0


def cmd_alerts_list(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.store import load_states

    states = load_states(_store(settings), args.model)
    for r in sorted(states.values(), key=lambda r: (r.model, r.rule, r.subject)):
        if args.all or r.status != "inactive":
            print(_json({"fingerprint": r.fingerprint, "model": r.model, "version": r.model_version, "rule": r.rule,
                         "subject": r.subject, "status": r.status, "since": r.active_since, "muted": r.muted,
                         "last_value": r.last_value, "last_window_end": r.last_window_end}))
    return 0


def cmd_alerts_history(args: argparse.Namespace, settings: Settings) -> int:
    rows = _store(settings).query(
        "SELECT at, event, actor, window_start, window_end, value, detail FROM alert_events "
        "WHERE fingerprint = {fp:String} ORDER BY at", parameters={"fp": args.fingerprint}).named_results()
    for row in rows:
        print(_json(row))
    return 0


def cmd_alerts_ack(args: argparse.Namespace, settings: Settings) -> int:
    """Acknowledge an alert's current episode (what `POST /alerts/{fp}/ack` does): its repeats stop."""
    from alerts.acks import acknowledge
    from alerts.store import load_states

    client = _store(settings)
    record = next((r for r in load_states(client).values() if r.fingerprint == args.fingerprint), None)
    if record is None:
        raise LookupError(f"no alert with fingerprint {args.fingerprint!r} (see `driftline alerts list`)")
    since = acknowledge(client, record, author=_actor(args), comment=args.comment)
    print(_json({"acknowledged": record.fingerprint, "episode_started": since, "by": _actor(args)}))
    return 0


def cmd_alerts_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.evaluate import Evaluator

    config, registry = load_alert_config(settings, args.alerts_file)
    client = _store(settings)
    evaluator = Evaluator(client, registry, config, grafana_url=settings.grafana_url, public_url=settings.public_url,
                          catchup_windows=settings.detector_catchup_windows,
                          grace=dt.timedelta(seconds=settings.detector_grace_seconds),
                          link_secret=settings.link_secret(),
                          link_lifetime=dt.timedelta(days=settings.api_link_lifetime_days))
    for model in ([registry.get(m) for m in args.model] if args.model else registry.models):
        result = evaluator.evaluate(model.name)
        print(_json({"model": model.name, "transitions": [f"{e.rule}/{e.event}" for e in result.transitions],
                     "queued": [d.delivery_id for d in result.queued]}))
    return 0


def cmd_alerts_test(args: argparse.Namespace, settings: Settings) -> int:
    """A test notification, queued like any other: checks the channel end to end (secret, URL, SMTP, receiver)."""
    from alerts import outbox
    from alerts.config import WebhookChannel
    from alerts.notify.email import build_message
    from alerts.payload import PRESETS, RetrainRequest, Window, encode

    config, registry = load_alert_config(settings, args.alerts_file)
    channel = config.channels.get(args.channel)
    if channel is None:
        print(f"driftline alerts test: no channel {args.channel!r} (channels: {', '.join(config.channels)})",
              file=sys.stderr)
        return 2
    model = registry.get(args.model)
    now = dt.datetime.now(UTC)
    did = outbox.delivery_id("test", args.channel, model.name, now.isoformat())
    if isinstance(channel, WebhookChannel):
        request = RetrainRequest(id=did, model=model.name, model_version="test", reason="manual", severity="info",
                                 window=Window(start=now - model.window, end=now), alert_fingerprint="test",
                                 firing_since=now, owner=model.owner)
        body, kind, subject = encode(PRESETS[channel.preset](request)), "webhook", f"test {model.name}"
    else:
        subject = f"[TEST] Driftline notification for model {model.name}"
        message = build_message(channel, subject=subject, text=f"A test of channel {args.channel} for model "
                                f"{model.name}, sent by {_actor(args)}.\n")
        message["Message-ID"] = f"<{did}@driftline>"
        body, kind = bytes(message), "email"
    client = _store(settings)
    outbox.enqueue(client, [(outbox.Delivery(did, args.channel, kind, model.name, "test", [], subject, "pending", 0,
                                             now, "", now), body)])
    print(_json({"queued": did, "channel": args.channel, "kind": kind}))
    return 0


def cmd_silence_add(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.silences import Matcher, create_silence
    from driftline.durations import parse_duration

    matchers = [Matcher.parse(m) for m in args.match]
    ends = dt.datetime.now(UTC) + parse_duration(args.duration)
    client = _store(settings)
    silence = create_silence(client, matchers, author=_actor(args), comment=args.comment, ends_at=ends)
    print(_json({"silence": silence.id, "matchers": [str(m) for m in silence.matchers], "ends_at": silence.ends_at}))
    return 0


def cmd_silence_list(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.silences import list_silences

    now = dt.datetime.now(UTC)
    for s in list_silences(_store(settings)):
        if args.all or s.ends_at > now:
            print(_json({"silence": s.id, "matchers": [str(m) for m in s.matchers], "author": s.author,
                         "comment": s.comment, "starts_at": s.starts_at, "ends_at": s.ends_at,
                         "active": s.active(now)}))
    return 0


def cmd_silence_expire(args: argparse.Namespace, settings: Settings) -> int:
    from alerts.silences import expire_silence

    silence = expire_silence(_store(settings), args.id, author=_actor(args))
    print(_json({"silence": silence.id, "ends_at": silence.ends_at}))
    return 0


def cmd_deliveries_list(args: argparse.Namespace, settings: Settings) -> int:
    from alerts import outbox

    for d in outbox.list_deliveries(_store(settings), status=args.status, model=args.model, limit=args.limit):
        print(_json(d.__dict__))
    return 0


def cmd_deliveries_replay(args: argparse.Namespace, settings: Settings) -> int:
    from alerts import outbox

    d = outbox.replay(_store(settings), args.id, actor=_actor(args))
    print(_json({"replayed": d.delivery_id, "channel": d.channel}))
    return 0


def cmd_deliveries_run(args: argparse.Namespace, settings: Settings, stop: threading.Event) -> int:
    from alerts.dispatch import Dispatcher

    config, _ = load_alert_config(settings, args.alerts_file)
    client = _store(settings)
    print(_json({"dispatcher": "running", "channels": list(config.channels)}), flush=True)
    Dispatcher(client, config).run(stop, poll_seconds=settings.outbox_poll_seconds)
    return 0


def add_parsers(sub: Any, common: Any) -> None:
    """Register `alerts`, `silence` and `deliveries` on the main parser."""

    def files(p: argparse.ArgumentParser) -> None:
        common(p)
        p.add_argument("--alerts-file", help="alert rules and channels (default: DRIFTLINE_ALERTS_FILE or alerts.yaml)")

    alerts = sub.add_parser("alerts", help="alert rules, states and history").add_subparsers(
        dest="alerts_command", required=True, metavar="ALERTS_COMMAND")
    p = alerts.add_parser("check", help="validate alerts.yaml against the model registry and list its rules")
    files(p)
    p.set_defaults(handler=cmd_alerts_check)
    p = alerts.add_parser("list", help="alerts that are firing or pending (--all: every alert)")
    common(p)
    p.add_argument("--model", help="only this model")
    p.add_argument("--all", action="store_true", help="include inactive alerts")
    p.set_defaults(handler=cmd_alerts_list)
    p = alerts.add_parser("history", help="the audit trail of one alert")
    common(p)
    p.add_argument("fingerprint")
    p.set_defaults(handler=cmd_alerts_history)
    p = alerts.add_parser("ack", help="acknowledge an alert: no repeat notifications until it resolves")
    common(p)
    p.add_argument("fingerprint")
    p.add_argument("--comment", default="", help="what is being done about it")
    p.add_argument("--author", help="who (default: the current user)")
    p.set_defaults(handler=cmd_alerts_ack)
    p = alerts.add_parser("evaluate", help="run one evaluation pass now")
    files(p)
    p.add_argument("--model", action="append", help="a model (repeatable; default: all)")
    p.set_defaults(handler=cmd_alerts_evaluate)
    p = alerts.add_parser("test", help="queue a test notification through a channel")
    files(p)
    p.add_argument("--channel", required=True)
    p.add_argument("--model", required=True, help="the model the test names")
    p.add_argument("--author", help="who sends it (default: the current user)")
    p.set_defaults(handler=cmd_alerts_test)

    silence = sub.add_parser("silence", help="silences: hold back notifications of matching alerts").add_subparsers(
        dest="silence_command", required=True, metavar="SILENCE_COMMAND")
    p = silence.add_parser("add", help="silence alerts matching every --match until --duration has passed")
    common(p)
    p.add_argument("--match", action="append", required=True,
                   help="label matcher: name=value, name!=value, name=~regex, name!~regex (repeatable)")
    p.add_argument("--duration", required=True, help="how long, e.g. 2h or 30m")
    p.add_argument("--comment", required=True, help="why")
    p.add_argument("--author", help="who (default: the current user)")
    p.set_defaults(handler=cmd_silence_add)
    p = silence.add_parser("list", help="silences that have not ended (--all: every silence)")
    common(p)
    p.add_argument("--all", action="store_true")
    p.set_defaults(handler=cmd_silence_list)
    p = silence.add_parser("expire", help="end a silence now")
    common(p)
    p.add_argument("id")
    p.add_argument("--author", help="who (default: the current user)")
    p.set_defaults(handler=cmd_silence_expire)

    deliveries = sub.add_parser("deliveries", help="the notification outbox").add_subparsers(
        dest="deliveries_command", required=True, metavar="DELIVERIES_COMMAND")
    p = deliveries.add_parser("list", help="deliveries, newest first")
    common(p)
    p.add_argument("--status", choices=["pending", "delivered", "dead"])
    p.add_argument("--model")
    p.add_argument("--limit", type=int, default=100)
    p.set_defaults(handler=cmd_deliveries_list)
    p = deliveries.add_parser("replay", help="queue a dead (or delivered) delivery again, from its first attempt")
    common(p)
    p.add_argument("id")
    p.add_argument("--author", help="who (default: the current user)")
    p.set_defaults(handler=cmd_deliveries_replay)
    p = deliveries.add_parser("run", help="run the dispatcher alone until stopped (SIGTERM or Ctrl-C)")
    files(p)
    p.set_defaults(handler=cmd_deliveries_run, needs_stop=True)
