"""What a notification says: the email (subject, text and HTML) and the retrain request of a group of alerts.

One notification per model and channel per evaluation pass, listing every
alert of the group: which model and version, which rule, which features or
metrics, how far (statistic against threshold, metric against baseline),
since when, and links to the Grafana dashboard and the drift report. Every
name is escaped for HTML; the subject is a header, and `EmailMessage`
refuses line breaks in it.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from clickhouse_connect.driver.client import Client

from alerts.evidence import FeatureEvidence
from alerts.payload import DriftedFeature, Links, MetricDrop, RetrainRequest
from alerts.payload import Window as PayloadWindow
from alerts.store import AlertRecord
from detectors.performance import LOWER_IS_BETTER
from detectors.sources import TS, Window
from driftline.api.links import DEFAULT_LIFETIME, report_url

MODEL_DASHBOARD_UID = "driftline-model"
REASONS = {"dataset_drift": "dataset_drift", "feature_drift": "feature_drift", "performance_drop": "performance_drop",
           "quality": "data_quality", "infra": "data_quality",
           "multivariate_drift": "dataset_drift"}  # the retrain payload's reasons (a stable schema): drift of the data


@dataclass
class Notice:
    """One alert inside a notification, with the evidence of its latest window."""

    record: AlertRecord
    event: str  # firing | resolved
    window: Window
    value: float | None
    detail: dict[str, Any] = field(default_factory=dict)


def links(model: str, window: Window, *, grafana_url: str | None, public_url: str | None,
          link_secret: bytes | None = None, link_lifetime: dt.timedelta = DEFAULT_LIFETIME,
          now: dt.datetime | None = None) -> Links:
    """The dashboard and report links; the report link is signed (opens without a token) given a link secret."""
    span = {"from": int((window.start - (window.end - window.start) * 6).timestamp() * 1000),
            "to": int(window.end.timestamp() * 1000)}
    dashboard = (f"{grafana_url.rstrip('/')}/d/{MODEL_DASHBOARD_UID}/model?"
                 f"{urlencode({'var-model': model, **span})}") if grafana_url else None
    report = report_url(public_url, model, window.start, window.end, secret=link_secret, now=now,
                        lifetime=link_lifetime) if public_url else None
    return Links(dashboard=dashboard, report=report)


def drifted_features(client: Client, model: str, window: Window, limit: int = 50) -> list[DriftedFeature]:
    rows = client.query(
        f"SELECT column, method, score, threshold, p_value FROM drift_results FINAL WHERE model = {{m:String}} "
        f"AND segment = '' AND column_role != 'dataset' AND drifted = 1 AND window_start = {{s:{TS}}} "
        f"AND window_end = {{e:{TS}}} ORDER BY column LIMIT {{n:UInt32}}",
        parameters={"m": model, "s": window.start, "e": window.end, "n": limit}).result_rows
    return [DriftedFeature(name=c, method=m, score=float(s if s is not None else 0.0), threshold=float(t), p_value=p)
            for c, m, s, t, p in rows]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def describe(n: Notice) -> str:
    """One line: what is wrong (or fine again) and by how much."""
    r, d = n.record, n.detail
    if n.event == "resolved":
        return f"{r.rule}: resolved ({r.kind.replace('_', ' ')} {r.subject or ''} back within bounds)".replace("  ", " ")
    if r.kind == "dataset_drift":
        drifted = f"{r.rule}: {_fmt(n.value and n.value * 100)}% of features drifted"
        rule_share, model_share = d.get("rule_share"), d.get("model_share")
        if rule_share is None or model_share is None:
            return drifted
        if rule_share == model_share:
            return f"{drifted} (the model's dataset drift threshold: {_fmt(model_share * 100)}%)"
        verdict = "drifted" if d.get("status") == "drifted" else "not drifted"
        return (f"{drifted}; this rule fires at {_fmt(rule_share * 100)}%, while the model's dataset drift verdict "
                f"(/status, dashboards, report) uses {_fmt(model_share * 100)}% and says {verdict}")
    if r.kind == "feature_drift":
        return (f"{r.rule}: feature {r.subject} drifted ({d.get('method')} {_fmt(d.get('score'))}, "
                f"threshold {_fmt(d.get('threshold'))})")
    if r.kind == "multivariate_drift":
        methods = d.get("methods") or {}
        moved = [f"{m.replace('_', ' ')} {_fmt(v.get('value'))} "
                 + (f"(band {_fmt(v['lower'])} to {_fmt(v.get('upper'))})" if v.get("lower") is not None
                    else f"(threshold {_fmt(v.get('upper'))})")
                 for m, v in sorted(methods.items()) if v.get("status") == "drifted"]
        return f"{r.rule}: the features' joint distribution drifted: {', '.join(moved) or 'see the dashboard'}"
    if r.kind == "performance_drop":
        # An error metric that got worse rose; a score that got worse fell: say which, and by how much.
        moved = "rose" if r.subject in LOWER_IS_BETTER else "fell"
        change = (f"+{_fmt(n.value and n.value * 100)}%" if r.subject in LOWER_IS_BETTER
                  else f"-{_fmt(n.value)}")
        return (f"{r.rule}: {r.subject} {moved} to {_fmt(d.get('value'))} from a baseline of {_fmt(d.get('baseline'))} "
                f"({change}, {d.get('labelled_rows', 0)} labels)")
    if r.kind == "quality":
        cols = ", ".join(d.get("columns") or []) or "the model"
        return f"{r.rule}: {r.subject} failed on {cols} (worst {_fmt(d.get('value'))}, threshold {_fmt(d.get('threshold'))})"
    if r.kind == "concept_drift":
        return (f"{r.rule}: concept drift on the labelled stream ({', '.join(d.get('detectors') or []) or 'a detector'} "
                f"fired {d.get('firings', 0)} time(s) over {d.get('labels', 0)} labels)")
    return f"{r.rule}: {r.subject} = {_fmt(n.value)}"


STATE_COLOURS = {"FIRING": "#b91c1c", "RESOLVED": "#15803d"}


def _test_line(f: DriftedFeature) -> str:
    """The test's own figure against its threshold; a p-value test shows the p-value once, named as such."""
    if f.p_value is not None:
        return f"{f.method} p-value {_fmt(f.p_value)} (threshold {_fmt(f.threshold)})"
    return f"{f.method} {_fmt(f.score)} (threshold {_fmt(f.threshold)})"


def email_content(model: str, version: str, notices: list[Notice], features: list[DriftedFeature],
                  link: Links, *, notes: list[str] | tuple[str, ...] = (),
                  evidence: Mapping[str, FeatureEvidence] | None = None) -> tuple[str, str, str]:
    """(subject, text, html) of one email about `notices` of one model; `notes`: what else the owner should
    know (a retrain webhook held back by its cooldown); `evidence`: effect sizes and histogram per drifted
    feature (the HTML refers to each histogram as `cid:<content_id>`: attach them inline).

    The HTML is laid out with tables and inline styles only, which is what mail clients render alike."""
    evidence = evidence or {}
    firing = [n for n in notices if n.event == "firing"]
    state = "FIRING" if firing else "RESOLVED"
    worst = max((n.record.severity for n in notices), key=["info", "warning", "critical"].index)
    headline = describe(notices[0]).split(": ", 1)[-1]
    more = f" (+{len(notices) - 1} more)" if len(notices) > 1 else ""
    subject = f"[{state}] {worst}: model {model}: {headline}{more}"[:250]
    lines = [f"Model {model} (version {version or 'unknown'})", ""]
    for n in notices:
        since = n.record.active_since.isoformat() if n.record.active_since else "n/a"
        lines.append(f"- {describe(n)}")
        lines.append(f"  window {n.window.start.isoformat()} to {n.window.end.isoformat()}; since {since}; "
                     f"severity {n.record.severity}; alert {n.record.fingerprint}")
    if features and firing:
        lines += ["", "Drifted features in the latest window (how far each moved; the test and its threshold):"]
        for f in features:
            moved = "; ".join(evidence[f.name].effects) if f.name in evidence else "n/a"
            lines.append(f"- {f.name}: {moved}; {_test_line(f)}")
    if notes:
        lines += ["", *notes]
    if link.dashboard:
        lines += ["", f"Dashboard: {link.dashboard}"]
    if link.report:
        lines.append(f"Drift report: {link.report}")
    elif not link.dashboard:
        lines += ["", "(No links: the service has no DRIFTLINE_PUBLIC_URL or DRIFTLINE_GRAFANA_URL set.)"]
    text = "\n".join(lines) + "\n"

    e = html.escape
    cell = "padding:8px 10px;border-top:1px solid #e2e8f0;vertical-align:top;font-size:14px"
    items = "".join(
        f'<tr><td style="{cell}"><b>{e(describe(n))}</b><br><span style="color:#64748b;font-size:12px">window '
        f"{e(n.window.start.isoformat())} to {e(n.window.end.isoformat())}; since "
        f"{e(n.record.active_since.isoformat() if n.record.active_since else 'n/a')}; severity "
        f"{e(n.record.severity)}</span></td></tr>" for n in notices)
    table = ""
    if features and firing:
        rows = []
        for f in features:
            ev = evidence.get(f.name)
            moved = "<br>".join(e(x) for x in ev.effects) if ev else "n/a"
            picture = (f'<img src="cid:{e(ev.content_id)}" alt="{e(f.name)}: reference (grey) and this window '
                       f'(blue)" style="display:block;border:0"><span style="color:#64748b;font-size:11px">'
                       f"{e(ev.bins)}</span>") if ev and ev.png else ""
            rows.append(f'<tr><td style="{cell}"><b>{e(f.name)}</b></td><td style="{cell}">{moved}</td>'
                        f'<td style="{cell}">{e(_test_line(f))}</td><td style="{cell}">{picture}</td></tr>')
        head = "".join(f'<th align="left" style="padding:6px 10px;font-size:12px;color:#475569">{h}</th>'
                       for h in ("feature", "how far it moved", "test", "reference (grey) / this window (blue)"))
        table = ('<tr><td style="padding:16px 0 4px 0;font-size:16px"><b>Drifted features in the latest window</b>'
                 '</td></tr><tr><td><table role="presentation" cellpadding="0" cellspacing="0" width="100%">'
                 f"<tr>{head}</tr>{''.join(rows)}</table></td></tr>")
    remarks = "".join(f'<tr><td style="padding:8px 0;font-size:14px">{e(note)}</td></tr>' for note in notes)
    anchors = "".join(f'<a href="{e(url)}" style="color:#1d4ed8;margin-right:16px">{label}</a>' for label, url in
                      (("Open the dashboard", link.dashboard), ("Open the drift report", link.report)) if url)
    if anchors:
        anchors = f'<tr><td style="padding:12px 0;font-size:14px">{anchors}</td></tr>'
    elif not link.dashboard:
        anchors = ('<tr><td style="padding:12px 0;font-size:12px;color:#64748b">No links: the service has no '
                   "DRIFTLINE_PUBLIC_URL or DRIFTLINE_GRAFANA_URL set.</td></tr>")
    page = ('<!DOCTYPE html><html><head><meta charset="utf-8"></head><body style="margin:0;padding:0;'
            'background:#f1f5f9;font-family:Arial,Helvetica,sans-serif;color:#0f172a">'
            '<table role="presentation" cellpadding="0" cellspacing="0" width="100%"><tr><td align="center" '
            'style="padding:16px"><table role="presentation" cellpadding="0" cellspacing="0" width="720" '
            'style="max-width:720px;background:#ffffff;border:1px solid #e2e8f0">'
            f'<tr><td style="background:{STATE_COLOURS[state]};color:#ffffff;padding:12px 16px;font-size:18px">'
            f"<b>{state}</b> &middot; {e(worst)} &middot; model {e(model)} (version {e(version or 'unknown')})</td></tr>"
            '<tr><td style="padding:8px 16px"><table role="presentation" cellpadding="0" cellspacing="0" width="100%">'
            f"{items}{table}{remarks}{anchors}</table></td></tr></table></td></tr></table></body></html>")
    return subject, text, page


def retrain_request(delivery: str, model: str, version: str, notices: list[Notice], features: list[DriftedFeature],
                    link: Links, owner: str | None) -> RetrainRequest:
    first = notices[0]
    worst = max((n.record.severity for n in notices), key=["info", "warning", "critical"].index)
    drops = tuple(MetricDrop(metric=n.record.subject, value=float(n.detail["value"]), baseline=float(n.detail["baseline"]),
                             labelled_rows=int(n.detail.get("labelled_rows") or 0))
                  for n in notices if n.record.kind == "performance_drop" and n.detail.get("value") is not None
                  and n.detail.get("baseline") is not None)
    since = min((n.record.active_since for n in notices if n.record.active_since), default=first.window.end)
    return RetrainRequest(
        id=delivery, model=model, model_version=version, reason=REASONS[first.record.kind],  # type: ignore[arg-type]
        severity=worst,  # type: ignore[arg-type]
        window=PayloadWindow(start=first.window.start, end=first.window.end),
        alert_fingerprint=first.record.fingerprint, firing_since=since, drifted_features=tuple(features),
        performance=drops, links=link, owner=owner)
