"""Running the demo: everything `driftline up` runs, plus the catchers and the traffic, in one process; then the verdict.

The embedded chDB folder belongs to one process, so, like `up`, the demo runs
its stages as threads of this one: the local broker (a subprocess with no
store), the collector, the detector scheduler (evaluating the alert rules
after each run), the outbox dispatcher, the HTTP API, the SMTP catcher, the
webhook receiver and the simulator. It ends on its own once the traffic is
over and what the story promises has happened (or at the time bound), stops
every stage in order (nothing collected is lost), and leaves the folder for
`driftline db ...` and `driftline api` to open afterwards.

The service's own logs go to `demo.log`; stderr shows the progress view, and
stdout the summary (also written to `summary.json`).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from driftline.config import Settings
from driftline.demo import config as demo_config
from driftline.demo.catchers import SmtpCatcher, WebhookCatcher
from driftline.demo.config import (
    CLASSIFIER,
    DRIFT_RULE,
    EXPECTED_FIRING,
    GRACE_S,
    INTERVAL_S,
    LABEL_LAG_S,
    MISSING_RULE,
    BROKEN,
    MODELS,
    RETRAIN_EXPECTED,
    WINDOW_S,
    Layout,
)
from driftline.demo.traffic import INCIDENT, Plan, TrafficStats
from driftline.logs import JsonFormatter

log = logging.getLogger(__name__)

EXIT_OK, EXIT_UNMET, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROGRESS_EVERY_S = 5.0
FINAL_VERDICTS_WAIT_S = 20.0


@dataclass(frozen=True)
class Options:
    folder: Path
    duration_s: float = 170.0  # the whole run, start-up and shutdown included, ends within this
    api_port: int = 0  # 0: a free port
    smtp_port: int = 0
    broker_port: int = 0
    quiet: bool = False
    force: bool = False


@dataclass
class Snapshot:
    """What the store and the catchers say at one moment."""

    rows: int = 0
    windows: int = 0
    firing: tuple[tuple[str, str], ...] = ()
    fired: tuple[tuple[str, str], ...] = ()
    pending_deliveries: int = 0
    emails: int = 0
    webhooks: int = 0


class ProgressView:
    """One status line every few seconds on stderr and a line per notable event; on a terminal the status line
    is redrawn in place every second. Quiet: nothing."""

    def __init__(self, out: TextIO, *, quiet: bool, started: float) -> None:
        self.out, self.quiet, self.started = out, quiet, started
        self.live = out.isatty() and not quiet
        self._lock = threading.Lock()
        self._last_line = ""
        self._last_plain = 0.0

    def _elapsed(self) -> str:
        return f"[{time.monotonic() - self.started:5.1f}s]"

    def event(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self.live:
                self.out.write("\r\x1b[K")
            self.out.write(f"{self._elapsed()} {text}\n")
            if self.live and self._last_line:
                self.out.write(self._last_line)
            self.out.flush()

    def status(self, phase: str, traffic: TrafficStats, snap: Snapshot) -> None:
        if self.quiet:
            return
        firing = ", ".join(rule for _, rule in snap.firing) or "none"
        line = (f"{self._elapsed()} {phase:<9} sent {traffic.sent:>6,} events  stored {snap.rows:>6,} rows  "
                f"windows judged {snap.windows:>3}  firing: {firing}  emails {snap.emails}  webhooks {snap.webhooks}")
        with self._lock:
            if self.live:
                line = line[:max(20, shutil.get_terminal_size().columns - 1)]  # one row, or \r cannot redraw it
                self._last_line = line
                self.out.write("\r\x1b[K" + line)
                self.out.flush()
            elif time.monotonic() - self._last_plain >= PROGRESS_EVERY_S:
                self._last_plain = time.monotonic()
                self.out.write(line + "\n")
                self.out.flush()

    def close(self) -> None:
        if self.live and self._last_line:
            with self._lock:
                self.out.write("\n")
                self.out.flush()
                self._last_line = ""


def _service_logs_to(path: Path) -> None:
    """The stages log as under `up`, into the demo's log file: stderr belongs to the progress view."""
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]


class _Assigned(logging.Handler):
    """Set when the collector logs that it was assigned its partitions (it is then reading)."""

    def __init__(self) -> None:
        super().__init__()
        self.done = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "partitions assigned":
            self.done.set()


def demo_settings(base: Settings, layout: Layout, *, bootstrap: str, api_port: int) -> Settings:
    """The embedded default in the demo folder, with short windows' timings; nothing of the environment's
    store, Kafka or file locations applies (the demo is self-contained), its log level does."""
    return base.model_copy(update={
        "clickhouse_url": f"chdb:{layout.data}", "clickhouse_database": "driftline", "clickhouse_password_file": None,
        "kafka_bootstrap_servers": bootstrap, "topic_predictions": "predictions", "topic_labels": "labels",
        "topic_metrics": "metrics", "consumer_group": "driftline-demo", "batch_max_seconds": 0.5,
        "kafka_session_timeout_ms": 6000, "kafka_max_poll_interval_ms": 10000, "shutdown_timeout_seconds": 10.0,
        "models_file": layout.models_file, "alerts_file": layout.alerts_file, "api_tokens_file": layout.tokens_file,
        "api_host": "127.0.0.1", "api_port": api_port, "public_url": f"http://127.0.0.1:{api_port}",
        "grafana_url": None, "api_link_secret_file": layout.link_secret, "api_link_secret": None,
        "detector_grace_seconds": float(GRACE_S), "detector_catchup_windows": 4,
        "detector_workers": 3, "outbox_poll_seconds": 0.5,
    })


def take_snapshot(client: Any, stats: Any, smtp: SmtpCatcher, hooks: WebhookCatcher) -> Snapshot:
    windows = client.query("SELECT uniqExact(model, stage, window_start) FROM detector_runs "
                           "WHERE status = 'ok'").result_rows[0][0]
    firing = client.query("SELECT model, rule FROM alert_states FINAL WHERE status = 'firing' "
                          "ORDER BY model, rule").result_rows
    fired = client.query("SELECT DISTINCT model, rule FROM alert_events WHERE event = 'fired' "
                         "ORDER BY model, rule").result_rows
    pending = client.query("SELECT count() FROM outbox FINAL WHERE status = 'pending'").result_rows[0][0]
    return Snapshot(rows=int(stats.inserted), windows=int(windows), firing=tuple(map(tuple, firing)),
                    fired=tuple(map(tuple, fired)), pending_deliveries=int(pending), emails=len(smtp.snapshot()),
                    webhooks=len(hooks.snapshot()))


def judged_to(client: Any, end: float | None) -> bool:
    """Every model's drift and performance verdicts reach the window ending at `end` (a wall-clock time)."""
    if end is None:
        return False
    rows = client.query("SELECT model, stage, max(window_end) FROM detector_runs WHERE status IN ('ok', 'no_data') "
                        "GROUP BY model, stage").result_rows
    reached = {(m, st) for m, st, last in rows if _utc(last).timestamp() >= end - 0.001}
    return all((m, st) in reached for m in MODELS for st in ("drift", "performance"))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def missing_expectations(snap: Snapshot, smtp: SmtpCatcher, hooks: WebhookCatcher) -> list[str]:
    """What the story promises that has not happened (yet)."""
    fired = set(snap.fired)
    missing = [f"{model}: rule {rule} has not fired" for model, rules in EXPECTED_FIRING.items() for rule in rules
               if (model, rule) not in fired]
    emails = smtp.snapshot()
    for model, rule in ((CLASSIFIER, DRIFT_RULE), (BROKEN, MISSING_RULE)):
        if not any(e.model == model and e.state == "FIRING" and rule in e.rules for e in emails):
            missing.append(f"{model}: no email about {rule}")
    calls = hooks.snapshot()
    for model in RETRAIN_EXPECTED:
        if not any(c.accepted and c.model == model for c in calls):
            missing.append(f"{model}: no verified retrain webhook")
    if snap.pending_deliveries:
        missing.append(f"{snap.pending_deliveries} notification(s) still in the outbox")
    return missing


def unexpected(snap: Snapshot, hooks: WebhookCatcher) -> list[str]:
    """What the story says must not happen and did."""
    expected = {(m, r) for m, rules in EXPECTED_FIRING.items() for r in rules}
    out = [f"{model}: rule {rule} fired, which it should not have" for model, rule in snap.fired
           if (model, rule) not in expected]
    out += [f"{c.model or '?'}: unexpected retrain webhook ({c.reason or 'no reason'})" for c in hooks.snapshot()
            if c.accepted and c.model not in RETRAIN_EXPECTED]
    out += [f"webhook {c.webhook_id or '?'}: signature not verified ({c.error})" for c in hooks.snapshot()
            if not c.verified]
    return out


def _fired_details(client: Any) -> dict[str, list[dict[str, Any]]]:
    rows = client.query(
        "SELECT e.model, e.rule, min(e.at), argMin(e.window_start, e.at), argMin(e.window_end, e.at), "
        "argMin(e.value, e.at), any(s.kind), any(s.severity), any(s.subject), any(s.status), any(s.muted) "
        "FROM alert_events AS e LEFT JOIN (SELECT * FROM alert_states FINAL) AS s "
        "ON s.fingerprint = e.fingerprint WHERE e.event = 'fired' GROUP BY e.model, e.rule ORDER BY e.model, 3"
    ).result_rows
    out: dict[str, list[dict[str, Any]]] = {m: [] for m in MODELS}
    for model, rule, at, ws, we, value, kind, severity, subject, status, muted in rows:
        out.setdefault(model, []).append({
            "rule": rule, "kind": kind, "severity": severity, "subject": subject, "fired_at": _iso(at),
            "window": {"start": _iso(ws), "end": _iso(we)}, "value": value, "status_at_end": status,
            "muted": muted or None})
    return out


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
    return str(value)


def _counts(client: Any) -> dict[str, int]:
    return {t: int(client.query(f"SELECT count() FROM {t}").result_rows[0][0])
            for t in ("predictions", "labels", "infra_metrics", "dead_letters", "detector_runs", "alert_events")}


def build_summary(*, layout: Layout, client: Any, smtp: SmtpCatcher, hooks: WebhookCatcher, traffic: TrafficStats,
                  api_url: str, elapsed_s: float, outcome: str, problems: list[str],
                  report: dict[str, Any]) -> dict[str, Any]:
    data = f"chdb:{layout.data}"
    return {
        "outcome": outcome,  # ok, unmet, interrupted
        "problems": problems,
        "duration_s": round(elapsed_s, 1),
        "folder": str(layout.root),
        "fired": _fired_details(client),
        "expected": {"fire": {m: list(r) for m, r in EXPECTED_FIRING.items()}, "retrain_webhooks": list(RETRAIN_EXPECTED),
                     "quiet": [m for m in MODELS if m not in EXPECTED_FIRING]},
        "emails": [vars(e) for e in smtp.snapshot()],
        "emails_folder": str(layout.emails),
        "webhooks": [{k: v for k, v in c.as_json().items() if k not in ("payload", "body", "headers")}
                     for c in hooks.snapshot()],
        "webhooks_file": str(layout.webhooks),
        "sent": {"predictions": dict(traffic.predictions), "labels": traffic.labels, "metrics": traffic.metrics},
        "stored": _counts(client),
        "api": {"url": api_url, "running": False, "token_file": str(layout.api_token),
                "reports": {m: f"{api_url}/models/{m}/report" for m in MODELS},
                "drift_report": report},
        "afterwards": {
            "store": data,
            "commands": [
                f"DRIFTLINE_CLICKHOUSE_URL={data} driftline db status",
                f"DRIFTLINE_CLICKHOUSE_URL={data} driftline alerts list --all",
                f"DRIFTLINE_CLICKHOUSE_URL={data} driftline db query "
                f"\"SELECT model, column, status, score FROM drift_results FINAL WHERE drifted ORDER BY window_start\"",
                f"cd {layout.root} && DRIFTLINE_CLICKHOUSE_URL=chdb:data DRIFTLINE_API_LINK_SECRET_FILE=link-secret "
                f"DRIFTLINE_API_PORT={api_url.rsplit(':', 1)[-1]} driftline api   # the API, the report page and "
                f"the emails' links again (token in api-token)",
            ],
        },
    }


def render_summary(summary: dict[str, Any]) -> str:
    ok = summary["outcome"] == "ok"
    head = {"ok": "everything the demo promises happened",
            "unmet": "NOT everything the demo promises happened",
            "interrupted": "interrupted before the end"}[summary["outcome"]]
    lines = [f"Driftline demo finished in {summary['duration_s']:.0f} s: {head}.", ""]
    if not ok:
        lines += [f"  ! {p}" for p in summary["problems"]] + [""]
    lines.append("What fired")
    for model, alerts in summary["fired"].items():
        if alerts:
            what = "; ".join(f"{a['rule']} ({a['severity']}, {a['kind'].replace('_', ' ')}"
                             f"{' ' + a['subject'] if a['subject'] else ''})" for a in alerts)
        else:
            quiet = summary["outcome"] == "ok" and model in summary["expected"]["quiet"]
            what = "nothing (it stays healthy, as expected)" if quiet else "nothing"
        lines.append(f"  {model:<18} {what}")
    lines += ["", f"Emails ({len(summary['emails'])}) in {summary['emails_folder']}"]
    lines += [f"  {Path(e['file']).name:<34} {e['subject']}" for e in summary["emails"]]
    lines += ["", f"Retrain webhooks ({len(summary['webhooks'])}) in {summary['webhooks_file']}"]
    lines += [f"  {c['model'] or '?':<18} reason {c['reason'] or '?':<18} "
              f"{'signature verified' if c['verified'] else 'SIGNATURE REJECTED: ' + c['error']}  "
              f"webhook-id {c['webhook_id']}" for c in summary["webhooks"]]
    api = summary["api"]
    lines += ["", f"Drift report page: {api['reports'][CLASSIFIER]}  (bearer token in {api['token_file']}; "
                  "served while the API runs: see the last command below)"]
    drift = api.get("drift_report") or {}
    if drift.get("url"):
        lines.append(f"  the window that fired: {drift['url']}")
    if drift.get("file"):
        lines.append(f"  saved as {Path(summary['folder']) / drift['file']}")
    lines += ["", f"The data stays in {summary['afterwards']['store']}; keep exploring:"]
    lines += [f"  {c}" for c in summary["afterwards"]["commands"]]
    lines += ["", f"Summary as JSON: {Path(summary['folder']) / 'summary.json'}"]
    return "\n".join(lines) + "\n"


def run_demo(options: Options, base: Settings, interrupted: threading.Event) -> int:
    """The demo, start to summary; returns the exit code."""
    # The stages are imported here, as the CLI does, so `driftline --help` stays fast.
    from alerts.config import load_alerts
    from collector.local_broker import LocalBroker, ensure_topics, free_port
    from collector.loop import Collector
    from detectors.config import load_registry
    from detectors.reference import upload
    from driftline.api.serve import start_api
    from driftline.cli import start_detectors, start_dispatcher
    from driftline.demo import traffic as simulator
    from driftline.producer import PredictionLogger
    from driftline.store import connect, migrate

    started = time.monotonic()
    deadline = started + options.duration_s
    try:
        layout = demo_config.prepare(options.folder, force=options.force)
    except demo_config.DemoFolderError as exc:
        print(f"driftline demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _service_logs_to(layout.log)
    assigned = _Assigned()
    logging.getLogger("collector.loop").addHandler(assigned)
    view = ProgressView(sys.stderr, quiet=options.quiet, started=started)
    view.event(f"demo folder {layout.root} (service logs in {layout.log.name})")

    demo_config.write_secrets(layout)
    demo_config.write_models(layout)
    references = simulator.write_references(layout.reference)
    registry = load_registry(layout.models_file)
    plan = Plan(window_s=float(WINDOW_S), label_lag_s=float(LABEL_LAG_S))
    traffic = TrafficStats()
    stop_traffic = threading.Event()
    stop_service = threading.Event()
    api_url = ""
    report: dict[str, Any] = {}
    outcome, problems = "unmet", ["the demo did not get to run its traffic"]
    with ExitStack() as stack:
        smtp = SmtpCatcher(layout.emails, layout.root, options.smtp_port).start()
        stack.callback(smtp.stop)
        hooks = WebhookCatcher(layout.webhooks, layout.webhook_secret).start()
        stack.callback(hooks.stop)
        demo_config.write_alerts(layout, smtp_port=smtp.port, webhook_url=hooks.url)
        alert_config = load_alerts(layout.alerts_file, registry)
        view.event(f"SMTP catcher on 127.0.0.1:{smtp.port} -> {layout.emails.name}/; webhook receiver {hooks.url} "
                   f"-> {layout.webhooks.name}")

        broker = LocalBroker("127.0.0.1", options.broker_port or None, log_path=layout.broker_log).start()
        stack.callback(broker.stop)
        settings = demo_settings(base, layout, bootstrap=broker.bootstrap_servers,
                                 api_port=options.api_port or free_port())
        client = connect(settings)
        migrate(client)
        for model, path in references.items():
            upload(client, registry.get(model), "train", path, show_progress=False)
        ensure_topics(broker.bootstrap_servers, list(settings.topics.values()), settings.local_broker_partitions)
        view.event(f"local broker {broker.bootstrap_servers}; store {settings.redacted_clickhouse_url()} "
                   f"(reference samples uploaded)")

        collector = Collector(settings, stop_event=threading.Event())
        collecting = threading.Thread(target=collector.run, name="collector", daemon=True)
        collecting.start()

        def stop_collector() -> None:
            collector.stop()
            collecting.join(timeout=settings.shutdown_timeout_seconds + 5)

        stack.callback(stop_collector)
        api = start_api(settings, registry)
        api_url = api.url
        stack.callback(api.stop)
        dispatcher = start_dispatcher(settings, alert_config, stop_service)

        def stop_dispatcher() -> None:
            stop_service.set()
            if dispatcher is not None:
                dispatcher[0].wake.set()
                dispatcher[1].join(timeout=settings.shutdown_timeout_seconds)

        stack.callback(stop_dispatcher)
        scheduler = start_detectors(settings, registry, alert_config, dispatcher)
        stack.callback(lambda: scheduler.stop(wait=True) if scheduler is not None else None)
        view.event(f"collector, detectors ({WINDOW_S}-s windows, checked every {INTERVAL_S} s), alert evaluation, "
                   f"dispatcher and API at {api.url} running")
        view.event(f"report page: {api.url}/models/{CLASSIFIER}/report  (bearer token in {layout.api_token})")

        joined_by = time.monotonic() + min(30.0, deadline - time.monotonic())
        while not assigned.done.wait(0.2) and not interrupted.is_set() and time.monotonic() < joined_by:
            pass
        if interrupted.is_set():
            outcome, problems = "interrupted", ["stopped by a signal before the traffic started"]
        elif not assigned.done.is_set():
            problems = ["the collector did not join its consumer group within 30 s (see demo.log)"]
        else:
            def on_phase(phase: str) -> None:
                if phase == "healthy":
                    view.event(f"traffic starts: 3 models x {plan.rate:.0f} predictions/s, healthy for "
                               f"{plan.healthy_windows * plan.window_s:.0f} s")
                elif phase == "incident":
                    for model in MODELS:
                        view.event(f"incident: {model}: {INCIDENT[model]}")
                elif phase == "labels":
                    view.event(f"predictions stop; the last labels follow within {plan.label_lag_s:.0f} s")
                elif phase == "done":
                    view.event("traffic done; waiting for the last verdicts and notifications")

            logger = PredictionLogger(settings.kafka_bootstrap_servers or "")
            stack.callback(logger.close, 10)
            sending = threading.Thread(target=simulator.run, args=(logger, plan, stop_traffic, traffic, on_phase),
                                       name="traffic", daemon=True)
            sending.start()

            def stop_sending() -> None:
                stop_traffic.set()
                sending.join(timeout=40)

            stack.callback(stop_sending)
            view.event(f"waiting for the next {WINDOW_S}-s window boundary to start the traffic")
            outcome, problems = _watch(view, client, collector.stats, smtp, hooks, traffic, deadline, interrupted)
            if outcome == "ok":
                report = fetch_report(client, api.url, layout)
                view.event(f"drift report page {report['status']}: {report.get('file') or report.get('error')}")
        view.close()
        view.event("stopping: traffic, detectors, dispatcher, collector (flushing), API, catchers, broker")
    # Every stage has stopped; the store is still open in this process for the last look.
    snap = take_snapshot(client, collector.stats, smtp, hooks)
    if outcome == "ok":
        problems = unexpected(snap, hooks)
        outcome = "ok" if not problems else "unmet"
    summary = build_summary(layout=layout, client=client, smtp=smtp, hooks=hooks, traffic=traffic, api_url=api_url,
                            elapsed_s=time.monotonic() - started, outcome=outcome, problems=problems,
                            report=report)
    layout.summary.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    sys.stdout.write(render_summary(summary))
    sys.stdout.flush()
    return {"ok": EXIT_OK, "unmet": EXIT_UNMET, "interrupted": EXIT_INTERRUPTED}[outcome]


def fetch_report(client: Any, api_url: str, layout: Layout) -> dict[str, Any]:
    """The API's drift report page of the window where the classifier's drift alert fired, saved in reports/
    (the API stops with the demo; the file stays). Never fails the demo: the outcome says what happened."""
    rows = client.query("SELECT window_start, window_end FROM alert_events WHERE model = {m:String} AND "
                        "rule = {r:String} AND event = 'fired' ORDER BY at LIMIT 1",
                        parameters={"m": CLASSIFIER, "r": DRIFT_RULE}).result_rows
    if not rows or rows[0][0] is None:
        return {"status": "skipped", "error": "no drift alert window"}
    start, end = (_utc(t).isoformat().replace("+00:00", "Z") for t in rows[0])
    url = f"{api_url}/models/{CLASSIFIER}/report?{urllib.parse.urlencode({'start': start, 'end': end})}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {layout.api_token.read_text().strip()}"})
    out: dict[str, Any] = {"url": url}
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            page = answer.read()
        path = layout.reports / f"{CLASSIFIER}-drift.html"
        path.write_bytes(page)
        out.update(status=200, file=str(path.relative_to(layout.root)), bytes=len(page))
    except urllib.error.HTTPError as exc:
        out.update(status=exc.code, error=exc.read()[:300].decode("utf-8", "replace"))
    except OSError as exc:
        out.update(status="unreachable", error=str(exc))
    return out


def _watch(view: ProgressView, client: Any, stats: Any, smtp: SmtpCatcher, hooks: WebhookCatcher,
           traffic: TrafficStats, deadline: float, interrupted: threading.Event) -> tuple[str, list[str]]:
    """Show the progress until the story is complete, the time bound, or a signal: (outcome, problems)."""
    seen_fired: set[tuple[str, str]] = set()
    seen_emails = seen_hooks = 0
    done_at: float | None = None
    shutdown_reserve = 15.0  # stopping every stage in order takes a few seconds; keep them inside the bound
    while True:
        snap = take_snapshot(client, stats, smtp, hooks)
        for model, rule in snap.fired:
            if (model, rule) not in seen_fired:
                seen_fired.add((model, rule))
                view.event(f"ALERT fired: {model}: {rule}")
        for e in smtp.snapshot()[seen_emails:]:
            view.event(f"email   -> {e.file}: {e.subject}")
        seen_emails = snap.emails
        for c in hooks.snapshot()[seen_hooks:]:
            verdict = "signature verified" if c.verified else f"signature REJECTED ({c.error})"
            view.event(f"webhook <- retrain {c.model} ({c.reason}), {verdict}")
        seen_hooks = snap.webhooks
        view.status(traffic.phase, traffic, snap)
        missing = missing_expectations(snap, smtp, hooks)
        if traffic.phase == "done" and not missing:
            if done_at is None:
                done_at = time.monotonic()
            # The last windows' verdicts (performance waits for the labels), so the folder holds the whole story;
            # not worth failing the demo over if the machine is slow.
            if judged_to(client, traffic.last_window_end) or time.monotonic() - done_at > FINAL_VERDICTS_WAIT_S:
                return "ok", []
        if interrupted.is_set():
            return "interrupted", ["stopped by a signal before the end"]
        if time.monotonic() >= deadline - shutdown_reserve:
            if traffic.phase != "done":
                missing.insert(0, f"the traffic had not finished (phase {traffic.phase})")
            return "unmet", [f"time bound reached; {m}" for m in missing]
        interrupted.wait(1.0)
