"""One evaluation pass for one model: step every alert through its new windows, then decide who is told what.

The pass, after each detector tick of the model (or on demand):

1. Read each rule's observations since its alerts last looked (`signals`),
   and step each alert (one per rule, subject and model version) through them
   with `lifecycle.step`; every transition goes to the audit trail. A window
   of a new model version resolves the old version's alerts: that version is
   gone, and the new one is compared with its own reference.
2. For firing alerts, apply inhibition and silences; those left notify if
   they never did in this episode or their repeat interval has passed.
   Alerts that resolved in this pass send a resolve email if they had
   notified and the rule asks for it. Retrain webhooks carry firing alerts
   only, at most one per model per channel cooldown.
3. Group notices per channel (one email, one webhook per model per pass),
   queue them in the outbox, then save the states. A pass that crashed after
   queueing runs again to the same delivery ids, which the outbox skips.

Time is a parameter (`now`), so repeat intervals, cooldowns and silences are
tested over a simulated day without sleeping.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field, replace
from email.utils import format_datetime

from clickhouse_connect.driver.client import Client

from alerts import outbox
from alerts.acks import acknowledged, episode
from alerts.config import AlertConfig, EmailChannel, Rule, WebhookChannel
from alerts.evidence import FeatureEvidence, feature_evidence
from alerts.inhibit import inhibitors
from alerts.lifecycle import AlertState, Status, Transition, step
from alerts.notify.email import build_message
from alerts.payload import PRESETS, DriftedFeature, encode
from alerts.render import (
    Notice,
    drifted_features,
    email_content,
    links,
    retrain_request,
)
from alerts.signals import Observation, observe
from alerts.silences import Silence, active_silences
from alerts.store import (
    AlertEvent,
    AlertRecord,
    event_of,
    fingerprint,
    load_states,
    record_events,
    save_states,
)
from detectors.config import ModelSpec, Registry
from detectors.sources import Window

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
DRIFT_KINDS = ("dataset_drift", "feature_drift")


@dataclass
class PassResult:
    transitions: list[AlertEvent] = field(default_factory=list)
    queued: list[outbox.Delivery] = field(default_factory=list)


class Evaluator:
    def __init__(self, client: Client, registry: Registry, config: AlertConfig, *, grafana_url: str | None = None,
                 public_url: str | None = None, catchup_windows: int = 24, report_rows: int = 5000,
                 grace: dt.timedelta = dt.timedelta(0), link_secret: bytes | None = None,
                 link_lifetime: dt.timedelta = dt.timedelta(days=7)) -> None:
        self.client = client
        self.registry = registry
        self.config = config
        self.grafana_url = grafana_url
        self.public_url = public_url
        self.link_secret = link_secret  # signs the report links (they open without a token until they expire)
        self.link_lifetime = link_lifetime
        self.catchup_windows = catchup_windows
        self.report_rows = report_rows
        self.grace = grace  # infra windows are judged this long after they end, like the detectors' windows

    # -- step 1: lifecycle -------------------------------------------------------------------------------

    def _new_record(self, rule: Rule, model: ModelSpec, version: str, subject: str) -> AlertRecord:
        identity = {"rule": rule.name, "model": model.name, "model_version": version, "subject": subject}
        labels = {**rule.labels, **identity, "severity": rule.severity, "kind": rule.when.kind}
        if model.owner:
            labels.setdefault("owner", model.owner)
        return AlertRecord(fingerprint(identity), rule.name, model.name, version, rule.when.kind, subject,
                           rule.severity, labels)

    def _step_rule(self, rule: Rule, model: ModelSpec, states: dict[str, AlertRecord], now: dt.datetime,
                   events: list[AlertEvent], resolved: list[Notice], latest: dict[str, Observation]) -> set[str]:
        mine = [r for r in states.values() if r.rule == rule.name]
        cursors = [r.evaluated_until for r in mine if r.evaluated_until is not None]
        floor = now - model.window * self.catchup_windows
        since = max(min(cursors), floor) if cursors else floor
        observations = observe(self.client, rule, model, since, now, self.grace)
        current: dict[str, AlertRecord] = {}
        for r in sorted(mine, key=lambda r: r.evaluated_until or dt.datetime.min.replace(tzinfo=UTC)):
            current[r.subject] = r  # the most recently evaluated version of each subject
        touched: set[str] = set()
        thresholds = rule.thresholds(model.drift.share)
        for o in observations:
            record = current.get(o.subject)
            version = o.model_version or (record.model_version if record else "")
            if record is not None and version != record.model_version:
                self._retire(record, o, now, events, resolved, rule)
                touched.add(record.fingerprint)
                record = None
            if record is None:
                new = self._new_record(rule, model, version, o.subject)
                record = states.setdefault(new.fingerprint, new)
                current[o.subject] = record
            if record.evaluated_until is not None and o.window.end <= record.evaluated_until:
                continue
            before = replace(record)
            state, transition = step(record.state, o.value, thresholds, fire_after=rule.for_,
                                     clear_after=rule.clear_for, window_end=o.window.end.isoformat())
            record.apply(state)
            record.evaluated_until, record.last_value = o.window.end, o.value
            record.last_window_start, record.last_window_end = o.window.start, o.window.end
            latest[record.fingerprint] = o
            touched.add(record.fingerprint)
            if transition is not None:
                events.append(event_of(record, transition.value, now, window=(o.window.start, o.window.end),
                                       value=o.value))
            if transition is Transition.FIRED:
                record.notified_firing_at, record.notifications = None, 0
            elif transition is Transition.RESOLVED:
                resolved.append(Notice(replace(before, status=Status.FIRING.value), "resolved", o.window, o.value,
                                       o.detail))
                self._end_episode(record)
        return touched

    def _retire(self, record: AlertRecord, o: Observation, now: dt.datetime, events: list[AlertEvent],
                resolved: list[Notice], rule: Rule) -> None:
        """A new model version took over: the old version's alert ends here."""
        if record.status == Status.INACTIVE.value:
            return
        transition = Transition.RESOLVED if record.status == Status.FIRING.value else Transition.CANCELLED
        events.append(event_of(record, transition.value, now, window=(o.window.start, o.window.end),
                               detail=f"model version {o.model_version} replaced {record.model_version}"))
        if transition is Transition.RESOLVED:
            resolved.append(Notice(replace(record), "resolved", o.window, None, {"reason": "new model version"}))
        record.apply(AlertState())
        self._end_episode(record)

    @staticmethod
    def _end_episode(record: AlertRecord) -> None:
        record.notified_firing_at, record.notifications, record.muted = None, 0, ""

    # -- step 2: who is told -------------------------------------------------------------------------------

    def _mute_reason(self, record: AlertRecord, silences: list[Silence], inhibited: dict[str, str]) -> str:
        for s in silences:
            if s.matches(record.labels):
                return f"silenced:{s.id}"
        if record.fingerprint in inhibited:
            return f"inhibited:{inhibited[record.fingerprint]}"
        return ""

    def evaluate(self, model_name: str, now: dt.datetime | None = None) -> PassResult:
        now = now or dt.datetime.now(UTC)
        model = self.registry.get(model_name)
        rules = {r.name: r for r in self.config.rules_of(model.name)}
        result = PassResult()
        if not rules:
            return result
        states = {fp: r for fp, r in load_states(self.client, model.name).items() if r.rule in rules}
        events: list[AlertEvent] = []
        resolved: list[Notice] = []
        latest: dict[str, Observation] = {}
        touched: set[str] = set()
        for rule in rules.values():
            touched |= self._step_rule(rule, model, states, now, events, resolved, latest)

        firing = [r for r in states.values() if r.status == Status.FIRING.value]
        inhibited = inhibitors([(r.fingerprint, r.model, r.kind) for r in firing],
                               [(r.fingerprint, r.model, r.kind) for r in firing], self.config.inhibit)
        silences = active_silences(self.client, now)
        acks = acknowledged(self.client, model.name) if firing else {}
        notices: list[tuple[Rule, Notice]] = []
        for record in firing:
            rule = rules[record.rule]
            reason = self._mute_reason(record, silences, inhibited)
            if reason != record.muted:
                events.append(event_of(record, reason.split(":")[0] if reason else "unmuted", now, detail=reason))
                record.muted = reason
                touched.add(record.fingerprint)
            if reason:
                continue
            due = record.notified_firing_at is None or now - record.notified_firing_at >= rule.repeat_interval
            if due and record.notifications > 0 and record.active_since is not None and \
                    (record.fingerprint, episode(record.active_since)) in acks:
                continue  # acknowledged: no repeats in this episode (the resolve notice still goes)
            if due:
                o = latest.get(record.fingerprint)
                window = o.window if o is not None else _window_of(record)
                notices.append((rule, Notice(record, "firing", window, record.last_value, o.detail if o else {})))
        for notice in resolved:
            rule = rules[notice.record.rule]
            if notice.record.notifications > 0 and rule.send_resolved and \
                    not self._mute_reason(notice.record, silences, {}):
                notices.append((rule, notice))

        items, notified = self._deliveries(model, notices, now, events)
        result.queued = outbox.enqueue(self.client, items)
        for record in notified:
            record.notified_firing_at, record.notifications = now, record.notifications + 1
            touched.add(record.fingerprint)
        for d in result.queued:
            for fp in d.fingerprints:
                if fp in states:
                    events.append(event_of(states[fp], "queued", now, detail=f"{d.kind} {d.event} via {d.channel}: "
                                                                             f"{d.delivery_id}"))
        save_states(self.client, [states[fp] for fp in touched if fp in states])
        record_events(self.client, events)
        result.transitions = [e for e in events if e.event in {t.value for t in Transition}]
        return result

    # -- step 3: the deliveries ------------------------------------------------------------------------------

    def _deliveries(self, model: ModelSpec, notices: list[tuple[Rule, Notice]], now: dt.datetime,
                    events: list[AlertEvent]) -> tuple[list[tuple[outbox.Delivery, bytes]], list[AlertRecord]]:
        groups: dict[tuple[str, str], list[Notice]] = {}
        for rule, notice in notices:
            for route in rule.routes:
                groups.setdefault((route, notice.event), []).append(notice)
        items: list[tuple[outbox.Delivery, bytes]] = []
        notified: dict[str, AlertRecord] = {}
        features_of: dict[Window, list[DriftedFeature]] = {}  # one query per window, not per channel
        evidence_of: dict[tuple[str, Window], dict[str, FeatureEvidence]] = {}  # one sample per window, too
        held: dict[str, dt.datetime] = {}  # webhook channel -> its last trigger, for those its cooldown holds back
        for name, event in groups:
            channel = self.config.channels[name]
            if isinstance(channel, WebhookChannel) and event == "firing":
                last = outbox.last_webhook_at(self.client, name, model.name)
                if last is not None and now - last < channel.cooldown:
                    held[name] = last
        notes = [f"Retraining was not triggered through {name!r}: its cooldown "
                 f"({self.config.channels[name].cooldown}) since the last trigger at {last.isoformat()} has not "  # type: ignore[union-attr]
                 "passed." for name, last in sorted(held.items())]
        for (name, event), group in sorted(groups.items()):
            channel = self.config.channels[name]
            group.sort(key=lambda n: (n.record.rule, n.record.subject))
            if event == "firing":
                for n in group:
                    notified[n.record.fingerprint] = n.record
            if isinstance(channel, WebhookChannel):
                if event != "firing":
                    continue  # retraining is for problems; recoveries go to people
                if name in held:
                    for n in group:
                        events.append(event_of(n.record, "cooldown", now, detail=f"{name}: last retrain trigger "
                                                                                   f"{held[name].isoformat()}"))
                    continue
            key = [f"{n.record.fingerprint}:{n.record.active_since}:{n.record.notifications}" for n in group]
            did = outbox.delivery_id(name, event, *key)
            latest = max(group, key=lambda n: n.window.end)
            version = latest.record.model_version
            link = links(model.name, latest.window, grafana_url=self.grafana_url, public_url=self.public_url,
                         link_secret=self.link_secret, link_lifetime=self.link_lifetime, now=now)
            features = []
            if event == "firing":
                if latest.window not in features_of:
                    features_of[latest.window] = drifted_features(self.client, model.name, latest.window)
                features = features_of[latest.window]
            if isinstance(channel, WebhookChannel):
                request = retrain_request(did, model.name, version, group, features, link, model.owner)
                body = encode(PRESETS[channel.preset](request))
                subject = f"retrain {model.name}"
            else:
                evidence = {}
                if features:
                    if (model.name, latest.window) not in evidence_of:
                        evidence_of[(model.name, latest.window)] = self._evidence(model, latest.window, features)
                    evidence = evidence_of[(model.name, latest.window)]
                subject, text, page = email_content(model.name, version, group, features, link,
                                                    notes=notes if event == "firing" else [], evidence=evidence)
                attachments = []
                if event == "firing" and channel.attach_report and any(n.record.kind in DRIFT_KINDS for n in group):
                    report = self._report(model, latest)
                    if report is not None:
                        attachments.append((f"drift-report-{model.name}.html", report, "text/html"))
                message = build_message(channel, subject=subject, text=text, html=page, attachments=attachments,
                                        inline_images=[(ev.content_id, ev.png) for ev in evidence.values() if ev.png])
                message["Message-ID"] = f"<{did}@driftline>"  # the same on every attempt: clients can dedupe
                message["Date"] = format_datetime(now)  # when the alert was queued, not when a retry got through
                body = bytes(message)
            kind = "email" if isinstance(channel, EmailChannel) else "webhook"
            items.append((outbox.Delivery(did, name, kind, model.name, event, [n.record.fingerprint for n in group],
                                          subject, "pending", 0, now, "", now), body))
        return items, list(notified.values())

    def _evidence(self, model: ModelSpec, window: Window, features: list[DriftedFeature]) -> dict[str, FeatureEvidence]:
        """Effect sizes and histograms of the drifted features, or none (logged): an email never waits on them."""
        try:
            return feature_evidence(self.client, model, window, [f.name for f in features],
                                    sample_rows=self.report_rows)
        except Exception:
            log.warning("drifted features' histograms not drawn", exc_info=True, extra={"model": model.name})
            return {}

    def _report(self, model: ModelSpec, notice: Notice) -> bytes | None:
        """The Evidently drift report of the notice's window, or None (the email says where to find it)."""
        from detectors.report import render_report

        try:
            return render_report(self.client, model, notice.window, sample_rows=self.report_rows).encode("utf-8")
        except Exception:
            log.warning("drift report not attached", exc_info=True, extra={"model": model.name})
            return None


def _window_of(record: AlertRecord) -> Window:
    assert record.last_window_start is not None and record.last_window_end is not None
    return Window(record.last_window_start, record.last_window_end)
