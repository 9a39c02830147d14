"""The `driftline` command: the composition root that wires the stages together.

Subcommands:
  up            the whole service on one machine (embedded ClickHouse, a local broker if none is configured)
  collect       the collector alone, against configured Kafka and ClickHouse
  api           the HTTP API alone (`up` serves it too)
  simulate      live traffic of a churn model that starts drifting (the compose stack's simulator)
  db migrate    create or upgrade the schema
  db status     schema version and row counts
  db query SQL  run a read-only query and print the rows (embedded: only while no other process holds the store)
  config        the configuration table, with the values in effect
  detect        run detectors once: each model's latest window, or a backfill over --start/--end
  reference     upload a training sample as a model's reference (CSV or Parquet)
  report        an Evidently HTML drift report for a model and window
  models check  validate the model registry and print what it defines
  concept-drift run, status: the streaming detectors on the labelled stream (see driftline/cli_concept.py)
  alerts        check, list, history, evaluate, test   (see driftline/cli_alerts.py)
  silence       add, list, expire
  deliveries    list, replay, run (the notification outbox)
  dashboards    generate, check, push                 (see driftline/cli_dashboards.py)
  demo          everything plus three simulated models, catchers and a summary (see driftline/cli_demo.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import ValidationError

from driftline.config import Settings, load_settings
from driftline.heap import start_heap_trimmer
from driftline.logs import setup_logging
from driftline.privacy import Redactor
from driftline.store import StoreError, connect, migrate, schema_version
from driftline.store.client import lend_through_service
from driftline.store.retention import apply_retention
from driftline.unknown_models import ModelGate, record_registry, registered_names, unknown_model_counts
from driftline.yamlfile import ConfigError

log = logging.getLogger("driftline")

COUNTED_TABLES = ("predictions", "labels", "infra_metrics", "dead_letters")
UNKNOWN_MODELS_SCHEMA = 11  # the migration that adds registry_snapshots
INCARNATIONS_SCHEMA = 12  # the migration that adds partition_incarnations
SENDER_SEQUENCES_SCHEMA = 13  # the migration that adds sender_sequences
WATERMARK_FILE = "broker-log-ends.json"  # collector/incarnations.py: WatermarkFile


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        clickhouse_url=getattr(args, "clickhouse_url", None),
        kafka_bootstrap_servers=getattr(args, "bootstrap_servers", None),
    )


def _install_stop_handlers() -> threading.Event:
    """SIGTERM/SIGINT set the returned event; installed first, so a signal during start-up is a clean stop too."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        log.info("signal received, shutting down", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = connect(settings)
    applied = migrate(client)
    ttl_changed = apply_retention(client, settings)
    print(json.dumps({"applied": applied, "schema_version": schema_version(client),
                      "retention_changed": ttl_changed, "store": settings.redacted_clickhouse_url()}))
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    """Rows per table, the events of models the registry does not define (per name, with the closest one), and
    events lost: per partition from broker log ends, per PredictionLogger from its sequence numbers (exact).

    The registry is models.yaml when it exists, else the latest one a service recorded in the store; with
    neither, no model is unknown (as the collector counts none).
    """
    settings = _settings(args)
    client = connect(settings)
    version = schema_version(client)
    counts: dict[str, int] = {}
    unknown: list[dict[str, object]] = []
    lost: list[dict[str, object]] = []
    senders: dict[str, object] = {}
    if version >= INCARNATIONS_SCHEMA:
        from collector.incarnations import lost_events

        lost = lost_events(client)
    if version >= SENDER_SEQUENCES_SCHEMA:
        from driftline.sequences import missing_total, sender_gaps

        count, missing = missing_total(client)
        senders = {"senders": count, "events_missing": missing,
                   "missing_by_sender": [{"sender": g.sender, "events_missing": g.missing, "events_stored": g.stored,
                                          "highest_sequence": g.highest, "first_seen": g.first_seen,
                                          "last_seen": g.last_seen} for g in sender_gaps(client)]}
    if version:
        for table in COUNTED_TABLES:
            counts[table] = int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
        names = ([m.name for m in _registry(settings).models] if settings.models_file.exists()
                 else registered_names(client) if version >= UNKNOWN_MODELS_SCHEMA else None)
        if names is not None:
            unknown = [{"model": u.model, "closest": u.closest, "events": u.events, "predictions": u.predictions,
                        "labels": u.labels, "metrics": u.metrics, "dead_lettered": u.dead_lettered,
                        "last_seen": u.last_seen} for u in unknown_model_counts(client, names)]
    print(json.dumps({"store": settings.redacted_clickhouse_url(), "schema_version": version, "rows": counts,
                      "unknown_models": unknown, "events_lost": lost, "sender_sequences": senders}))
    return 0


_FORMAT_CLAUSE = re.compile(r"\s+FORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE)


def cmd_db_query(args: argparse.Namespace) -> int:
    """A read-only query: tab-separated with a header, or as the query's own trailing `FORMAT X` asks."""
    settings = _settings(args)
    client = connect(settings)
    clause = _FORMAT_CLAUSE.search(args.sql)
    if clause is not None:  # the client appends its own FORMAT: the user's goes to the server as the format
        sys.stdout.buffer.write(client.raw_query(args.sql[: clause.start()], settings={"readonly": 2},
                                                 fmt=clause.group(1)))
        sys.stdout.flush()
        return 0
    result = client.query(args.sql, settings={"readonly": 2})
    print("\t".join(result.column_names))
    for row in result.result_rows:
        print("\t".join("" if v is None else str(v) for v in row))
    return 0


def cmd_db_schema(args: argparse.Namespace) -> int:
    """Print the DDL (no store needed): what `db migrate` runs, or the cluster variant (docs/operations.md: Scaling out)."""
    from driftline.store.cluster import cluster_ddl
    from driftline.store.migrations import MIGRATIONS

    if args.cluster:
        try:
            statements = cluster_ddl(args.cluster, args.coordination_cluster or f"{args.cluster}_coordination")
        except ValueError as exc:  # a cluster name that is not an identifier
            raise ConfigError(str(exc)) from None
    else:
        statements = [s for m in sorted(MIGRATIONS, key=lambda m: m.version) for s in m.statements]
    print(";\n\n".join(s.strip() for s in statements) + ";")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    for name, field in Settings.model_fields.items():
        value = getattr(settings, name)
        if name == "clickhouse_url":
            value = settings.redacted_clickhouse_url()
        print(f"DRIFTLINE_{name.upper():<32} {value!s:<28} {field.description}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from collector.loop import Collector, tune_gc_for_throughput

    settings = _settings(args)
    if not settings.kafka_bootstrap_servers:
        print("driftline collect: set DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers); "
              "`driftline up` starts a local broker instead", file=sys.stderr)
        return 2
    stop = _install_stop_handlers()
    registry = _registry(settings) if settings.models_file.exists() else None  # its privacy policies apply
    redactor = privacy_redactor(settings, registry)
    _migrate(settings)
    record_registry(connect(settings), registry)
    tune_gc_for_throughput()
    start_heap_trimmer(settings.heap_trim_seconds, stop)
    return 0 if Collector(settings, stop_event=stop, redactor=redactor, gate=ModelGate.from_registry(registry)).run() else 1


def cmd_reload(args: argparse.Namespace) -> int:
    """SIGHUP to the `up` of this store's folder, then its outcome: 0 reloaded, 2 refused (a bad file), 1 none."""
    from driftline.reloads import NotRunning, request_reload, run_folder

    settings = _settings(args)
    try:
        outcome = request_reload(run_folder(settings), timeout=args.timeout)
    except (NotRunning, TimeoutError) as exc:
        print(f"driftline: {exc}", file=sys.stderr)
        return 1
    if not outcome.get("ok"):
        print(f"driftline: {outcome.get('error')}", file=sys.stderr)
        return 2
    print(json.dumps(outcome["result"], indent=2))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from collector.broker_recycling import BrokerRecycling
    from collector.local_broker import LocalBroker, ensure_topics
    from collector.loop import Collector, tune_gc_for_throughput
    from driftline.api.models import reload_configuration
    from driftline.api.serve import start_api
    from driftline.reloads import forget, run_folder, serve_reloads

    settings = _settings(args)
    stop = _install_stop_handlers()
    registry = _registry(settings) if settings.models_file.exists() else None  # refuse a bad one before starting
    alert_config = None
    if settings.alerts_file.exists():
        from driftline.cli_alerts import load_alert_config

        if registry is None:
            raise ConfigError(f"{settings.alerts_file} exists but there is no model registry at {settings.models_file}")
        alert_config, _ = load_alert_config(settings, registry=registry)
        if not settings.public_url:
            log.warning("DRIFTLINE_PUBLIC_URL is unset: alert emails and webhooks carry no link to the drift report "
                        "(set it to the address users reach this service's API at)")
    redactor = privacy_redactor(settings, registry)  # shared by the collector and HTTP ingest; a reload replaces it
    gate = ModelGate.from_registry(registry)  # the same: the model names events are counted against
    _migrate(settings)
    record_registry(connect(settings), registry)
    broker = None
    if not settings.kafka_bootstrap_servers:
        # The pid file lets the next `up` on this folder stop a broker this one could not (SIGKILL elsewhere).
        broker = LocalBroker(settings.local_broker_host, settings.local_broker_port, gated=True,
                             state_dir=settings.embedded_path if settings.is_embedded else None).start()
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
        ensure_topics(broker.bootstrap_servers, list(settings.topics.values()), settings.local_broker_partitions)
    scheduler = None
    dispatcher = None
    api = None
    store_service = None
    try:
        # On the embedded default the broker keeps events in memory only: the collector reads it to its end
        # before it stops, and keeps the log ends it saw so that the next `up` counts what a kill lost.
        local = broker is not None
        collector = Collector(settings, stop_event=stop, redactor=redactor, gate=gate,
                              watermark_path=settings.embedded_path / WATERMARK_FILE
                              if local and settings.is_embedded else None,
                              drain_on_stop=local, on_drained=broker.stop if broker is not None else None,
                              hold_produce=broker.hold_produce if broker is not None else None,
                              recycling=BrokerRecycling(broker, list(settings.topics.values()),
                                                        settings.local_broker_partitions, settings.local_broker_max_mb)
                              if broker is not None else None, sole_reader=local)
        dispatcher = start_dispatcher(settings, alert_config, stop)
        scheduler = start_detectors(settings, registry, alert_config, dispatcher)
        api = start_api(settings, registry, reload=reloader(settings, scheduler, dispatcher), redactor=redactor,
                        gate=gate)
        serve_reloads(run_folder(settings), lambda: reload_configuration(api.ctx))  # SIGHUP, `driftline reload`
        if settings.is_embedded:  # the CLI's store commands beside this `up` run their queries here
            store_service = lend_store(settings)
        tune_gc_for_throughput()
        start_heap_trimmer(settings.heap_trim_seconds, stop)
        _print_banner(settings, local_broker=broker is not None, models=len(scheduler.registry.models) if scheduler else 0,
                      alerts=len(alert_config.rules) if alert_config else None, api_url=api.url)
        return 0 if collector.run() else 1
    finally:
        stop.set()
        if scheduler is not None:
            scheduler.stop(wait=False)
        if dispatcher is not None:
            dispatcher[0].wake.set()
            dispatcher[1].join(timeout=settings.shutdown_timeout_seconds)
        if store_service is not None:
            store_service.close()
        if api is not None:
            api.stop()
            forget(run_folder(settings))
        if broker is not None:
            broker.stop()


def lend_store(settings: Settings):  # type: ignore[no-untyped-def]
    """The store service for commands beside this `up`, or None (logged) when its socket cannot be had."""
    from driftline.store.service_link import StoreService

    try:
        return StoreService(settings.embedded_path, lambda: connect(settings))
    except OSError as exc:  # another process took the socket's name: commands beside `up` answer "in use"
        log.warning("the store is not lent to commands beside this `up`", extra={"error": str(exc)})
        return None


def start_dispatcher(settings: Settings, alert_config, stop: threading.Event):  # type: ignore[no-untyped-def]
    """The notification dispatcher on its own thread and store client.

    It runs without alerts.yaml too (attempting nothing), so a reload that adds the file turns alerts on.
    """
    from alerts.dispatch import Dispatcher

    dispatcher = Dispatcher(connect(settings), alert_config)
    thread = threading.Thread(target=dispatcher.run, args=(stop,), kwargs={"poll_seconds": settings.outbox_poll_seconds},
                              name="dispatcher", daemon=True)
    thread.start()
    return dispatcher, thread


def start_detectors(settings: Settings, registry, alert_config=None, dispatcher=None):  # type: ignore[no-untyped-def]
    """The detector scheduler over the model registry (evaluating alerts after each tick), or None without one."""
    from alerts.evaluate import Evaluator
    from detectors.priority import detector_clients
    from detectors.schedule import DetectorScheduler
    from detectors.shard import Shard

    if registry is None:  # a scheduler without models: a reload that finds models.yaml gives it jobs
        from detectors.config import Registry

        log.info("no model registry; detectors idle until one exists (then reload: SIGHUP or `driftline reload`)",
                 extra={"models_file": str(settings.models_file)})
        registry = Registry()
    if alert_config is not None and alert_config.attaches_reports:
        from detectors.report import warm_up

        threading.Thread(target=warm_up, name="report-warm-up", daemon=True).start()

    def evaluate_alerts(model, client) -> None:  # type: ignore[no-untyped-def]
        if scheduler.alert_config is None:  # no alerts.yaml (yet: a reload that adds it turns this on)
            return
        result = Evaluator(client, scheduler.registry, scheduler.alert_config, grafana_url=settings.grafana_url,
                           public_url=settings.public_url, catchup_windows=settings.detector_catchup_windows,
                           grace=dt.timedelta(seconds=settings.detector_grace_seconds), link_secret=scheduler.link_secret,
                           link_lifetime=dt.timedelta(days=settings.api_link_lifetime_days)).evaluate(model.name)
        if result.queued and dispatcher is not None:
            dispatcher[0].wake.set()

    scheduler = DetectorScheduler(
        registry, detector_clients(settings), grace=dt.timedelta(seconds=settings.detector_grace_seconds),
        catchup_windows=settings.detector_catchup_windows, workers=settings.detector_workers,
        after_tick=evaluate_alerts,
        shard=Shard.parse(settings.detector_shard),
        claim_settle=dt.timedelta(seconds=settings.detector_claim_settle_seconds),
        claim_lease=dt.timedelta(seconds=settings.detector_claim_lease_seconds),
    )
    scheduler.alert_config = alert_config  # swapped with the registry by a reload (see reloader)
    scheduler.link_secret = settings.link_secret()  # the same; a bad secret file fails the start
    scheduler.start()
    return scheduler


def reloader(settings: Settings, scheduler, dispatcher=None):  # type: ignore[no-untyped-def]
    """What `POST /models/reload` runs: validate every file, then switch the scheduler, evaluator and dispatcher.

    alerts.yaml added after the start turns alerts on, and removed turns them off (deliveries already queued
    wait, as without the file at start); a changed channel (a webhook URL) is used from the next delivery
    attempt, replays included. The report link secret is re-read too.
    """
    from alerts.config import AlertConfig
    from driftline.api.context import Reloaded
    from driftline.cli_alerts import load_alert_config

    def reload():  # type: ignore[no-untyped-def]
        registry = _registry(settings)
        privacy_redactor(settings, registry)  # a new policy without a key: refuse before switching anything
        alert_config = load_alert_config(settings, registry=registry)[0] if settings.alerts_file.exists() else None
        link_secret = settings.link_secret()
        changes = None
        if scheduler is not None or dispatcher is not None:
            before = scheduler.alert_config if scheduler is not None else dispatcher[0].config
            if alert_config is not None:
                changes = alert_config.changes_from(before)
            elif before is not None:
                changes = AlertConfig.model_validate({"channels": {}, "rules": []}).changes_from(before)
            if scheduler is not None:
                scheduler.alert_config = alert_config
                scheduler.link_secret = link_secret
            if dispatcher is not None:
                dispatcher[0].config = alert_config
                dispatcher[0].wake.set()
        if scheduler is not None:
            scheduler.reschedule(registry)
        record_registry(connect(settings), registry)
        log.info("configuration reloaded", extra={"models": [m.name for m in registry.models],
                                                  **({"alerts": changes} if changes else {})})
        return Reloaded(registry, changes)

    return reload


def _print_banner(settings: Settings, *, local_broker: bool, models: int = 0, alerts: int | None = None,
                  api_url: str = "") -> None:
    where = "local broker (in-memory, stops with this process)" if local_broker else "Kafka"
    detectors = (f"{models} model(s) from {settings.models_file}" if models
                 else f"idle (no registry at {settings.models_file})")
    alerting = f"{alerts} rule(s) from {settings.alerts_file}" if alerts is not None else f"off (no {settings.alerts_file})"
    print(
        f"Driftline is up.\n"
        f"  Kafka bootstrap servers : {settings.kafka_bootstrap_servers}   [{where}]\n"
        f"  topics                  : predictions={settings.topic_predictions} labels={settings.topic_labels} "
        f"metrics={settings.topic_metrics}\n"
        f"  ClickHouse              : {settings.redacted_clickhouse_url()} (database {settings.database})\n"
        f"  detectors               : {detectors}\n"
        f"  alerts                  : {alerting}\n"
        f"  HTTP API                : {api_url} (docs at {api_url}/docs)\n"
        f"Send a first event:  driftline send-example --bootstrap-servers {settings.kafka_bootstrap_servers}\n"
        f"Stop with Ctrl-C; then `driftline db status` shows what was stored.",
        flush=True,
    )


def cmd_api(args: argparse.Namespace) -> int:
    """The HTTP API alone, for a server deployment (a ClickHouse server shared with the other processes)."""
    from driftline.api.serve import start_api

    settings = _settings(args)
    stop = _install_stop_handlers()
    registry = _registry(settings) if settings.models_file.exists() else None
    redactor = privacy_redactor(settings, registry)
    _migrate(settings)
    record_registry(connect(settings), registry)
    api = start_api(settings, registry, reload=reloader(settings, None), redactor=redactor)
    print(json.dumps({"api": api.url, "docs": f"{api.url}/docs"}), flush=True)
    stop.wait()
    api.stop()
    return 0


def cmd_send_example(args: argparse.Namespace) -> int:
    """Send one prediction and its label through PredictionLogger (what a model service would do)."""
    from driftline.producer import PredictionLogger

    settings = _settings(args)
    if not settings.kafka_bootstrap_servers:
        print("driftline send-example: give --bootstrap-servers (printed by `driftline up`)", file=sys.stderr)
        return 2
    with PredictionLogger(
        settings.kafka_bootstrap_servers,
        topic_predictions=settings.topic_predictions,
        topic_labels=settings.topic_labels,
        topic_metrics=settings.topic_metrics,
    ) as logger:
        event_id = logger.log_prediction(
            "example-model", {"age": 42, "income": 51000.0, "country": "NL"}, 0.83,
            proba={"0": 0.17, "1": 0.83}, latency_ms=4.2,
        )
        logger.log_label("example-model", event_id, 1)
        logger.log_metrics("example-model", "example-host:8080", {"latency_p99_ms": 12.5, "rps": 40.0})
        logger.flush(timeout=30)
    print(json.dumps({"sent": {"prediction": event_id, "label": event_id, "metrics": 1},
                      "model": "example-model"}))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Live traffic of a churn model that drifts after --drift-after (the compose stack's simulator)."""
    from driftline.durations import parse_duration
    from driftline.producer import PredictionLogger
    from driftline.traffic import TrafficSpec, run

    settings = _settings(args)
    if not settings.kafka_bootstrap_servers:
        print("driftline simulate: give --bootstrap-servers (or DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS)", file=sys.stderr)
        return 2
    try:
        spec = TrafficSpec(model=args.model, rate=args.rate,
                           drift_after_s=parse_duration(args.drift_after).total_seconds(),
                           label_delay_s=parse_duration(args.label_delay).total_seconds(),
                           duration_s=parse_duration(args.duration).total_seconds() if args.duration else None)
    except ValueError as exc:
        print(f"driftline simulate: {exc}", file=sys.stderr)
        return 2
    stop = _install_stop_handlers()
    with PredictionLogger(settings.kafka_bootstrap_servers, topic_predictions=settings.topic_predictions,
                          topic_labels=settings.topic_labels, topic_metrics=settings.topic_metrics) as logger:
        log.info("simulating traffic", extra={"model": spec.model, "rate": spec.rate,
                                              "drift_after_s": spec.drift_after_s})
        sent = run(logger, spec, stop)
    print(json.dumps({"model": spec.model, "sent": sent}))
    return 0


def privacy_redactor(settings: Settings, registry) -> Redactor:  # type: ignore[no-untyped-def]
    """The privacy policies of `registry` with the configured key; ConfigError if a policy has no key."""
    try:
        return Redactor(registry.privacy_policies() if registry is not None else {}, settings.privacy_key_bytes())
    except ValueError as exc:  # PrivacyKeyMissing, or a key that is too short
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read DRIFTLINE_PRIVACY_KEY_FILE {settings.privacy_key_file}: "
                          f"{exc.strerror or type(exc).__name__}") from None


def _migrate(settings: Settings) -> None:
    """The schema, then the retention TTLs (`db migrate` does the same): what every service command starts with."""
    client = connect(settings)
    migrate(client)
    apply_retention(client, settings)


def _registry(settings: Settings, path: str | None = None):  # type: ignore[no-untyped-def]
    from detectors.config import load_registry

    return load_registry(Path(path) if path else settings.models_file)


def _models(registry, names: list[str] | None):  # type: ignore[no-untyped-def]
    return [registry.get(n) for n in names] if names else list(registry.models)


def _timestamp(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time like 2026-11-01T00:00Z, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def cmd_models_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    registry = _registry(settings, args.models_file)
    for model in registry.models:
        print(json.dumps({"model": model.name, "task": model.task.value, "features": len(model.features),
                          "window": str(model.window), "segments": list(model.segments)}))
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from detectors.backfill import detect

    settings = _settings(args)
    registry = _registry(settings, args.models_file)
    if (args.start is None) != (args.end is None):
        print("driftline detect: give both --start and --end, or neither", file=sys.stderr)
        return 2
    if args.start is not None and args.end <= args.start:
        print("driftline detect: --end must be after --start", file=sys.stderr)
        return 2
    client = connect(settings)
    migrate(client)
    stages = ("drift", "performance") if args.stage == "all" else (args.stage,)
    results = detect(client, _models(registry, args.model), stages=stages, start=args.start, end=args.end,
                     grace=dt.timedelta(seconds=settings.detector_grace_seconds), trigger="backfill" if args.start else "manual",
                     show_progress=not args.quiet)
    for r in results:
        print(json.dumps({"model": r.model, "stage": r.stage, "window_start": r.window.start.isoformat(),
                          "window_end": r.window.end.isoformat(), "status": r.status,
                          "duration_s": round(r.duration_s, 3), "dataset_drifted": r.dataset_drifted,
                          "drifted": r.drifted_columns, "multivariate_drifted": r.multivariate_drifted,
                          "failed_checks": r.failed_checks,
                          "degraded": r.degraded_metrics, **({"error": r.error} if r.error else {})}))
    return 1 if any(r.status == "error" for r in results) else 0


def cmd_report(args: argparse.Namespace) -> int:
    from detectors.report import write_report

    settings = _settings(args)
    registry = _registry(settings, args.models_file)
    model = registry.get(args.model)
    client = connect(settings)
    if (args.start is None) != (args.end is None) or (args.start is not None and args.end <= args.start):
        print("driftline report: give --start before --end, or neither (the latest complete window)", file=sys.stderr)
        return 2
    try:
        path = write_report(client, model, start=args.start, end=args.end, out=Path(args.out),
                            sample_rows=args.sample_rows)
    except ValueError as exc:  # an empty side, a bad sample size
        print(f"driftline report: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"model": model.name, "report": str(path)}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description="Model monitoring and drift detection.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, kafka: bool = False) -> None:
        p.add_argument("--clickhouse-url", help="overrides DRIFTLINE_CLICKHOUSE_URL")
        if kafka:
            p.add_argument("--bootstrap-servers", help="overrides DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS")

    from driftline import cli_alerts, cli_concept, cli_dashboards, cli_demo, cli_init, cli_reference

    cli_alerts.add_parsers(sub, common)
    cli_concept.add_parsers(sub, common)
    cli_dashboards.add_parsers(sub, common)
    cli_demo.add_parsers(sub, common)
    cli_init.add_parsers(sub, common)
    p = sub.add_parser(
        "up", help="run the whole service (embedded ClickHouse; a local broker if no Kafka is set)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run the whole service in one process: the collector (Kafka -> ClickHouse), the detectors on "
                    "their schedule,\nalert evaluation and delivery, and the HTTP API (DRIFTLINE_API_PORT, 8000).\n\n"
                    "Reads models.yaml, alerts.yaml and tokens.yaml (DRIFTLINE_MODELS_FILE, DRIFTLINE_ALERTS_FILE,\n"
                    "DRIFTLINE_API_TOKENS_FILE); each may be added or changed while it runs, then reloaded with\n"
                    "`driftline reload`, SIGHUP or POST /models/reload. With no DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS it "
                    "starts\nan in-memory broker; with no DRIFTLINE_CLICKHOUSE_URL it stores in ./driftline-data. "
                    "SIGTERM or Ctrl-C\nstops it cleanly. Every setting: `driftline config`.")
    common(p, kafka=True)
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("reload", help="make the running `up` re-read models.yaml, alerts.yaml, tokens.yaml and "
                                      "secret files, and print what changed")
    common(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the outcome (default 60)")
    p.set_defaults(func=cmd_reload)
    p = sub.add_parser("api", help="serve the HTTP API alone (`up` serves it too)")
    common(p)
    p.set_defaults(func=cmd_api)
    p = sub.add_parser("collect", help="run the collector: Kafka -> ClickHouse, exactly once")
    common(p, kafka=True)
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("send-example", help="send one example prediction, label and metrics event")
    common(p, kafka=True)
    p.set_defaults(func=cmd_send_example)
    p = sub.add_parser("simulate", help="send live traffic of a churn model that starts drifting (for demos)")
    common(p, kafka=True)
    p.add_argument("--model", default="demo-churn", help="model name (default demo-churn)")
    p.add_argument("--rate", type=float, default=20.0, help="predictions per second (default 20)")
    p.add_argument("--drift-after", default="10m", help="when the traffic starts drifting (default 10m)")
    p.add_argument("--label-delay", default="1m", help="how long after a prediction its label is sent (default 1m)")
    p.add_argument("--duration", help="stop after this long (default: until stopped)")
    p.set_defaults(func=cmd_simulate)
    p = sub.add_parser("config", help="print the configuration in effect and what each setting does")
    common(p, kafka=True)
    p.set_defaults(func=cmd_config)

    def registry_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models-file", help="the model registry (default: DRIFTLINE_MODELS_FILE or models.yaml)")

    cli_reference.add_parsers(sub, common, registry_arg)

    models = sub.add_parser("models", help="model registry commands").add_subparsers(dest="models_command", required=True, metavar="MODELS_COMMAND")
    p = models.add_parser("check", help="validate the model registry and list its models")
    common(p)
    registry_arg(p)
    p.set_defaults(func=cmd_models_check)

    p = sub.add_parser("detect", help="run detectors once (latest complete window), or backfill --start/--end")
    common(p)
    registry_arg(p)
    p.add_argument("--model", action="append", help="a model to detect (repeatable; default: all)")
    p.add_argument("--stage", choices=["drift", "performance", "all"], default="all",
                   help="drift (with data quality), performance, or all (default)")
    p.add_argument("--start", type=_timestamp, help="backfill from this time (ISO 8601, UTC if no zone)")
    p.add_argument("--end", type=_timestamp, help="backfill up to this time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("report", help="write an Evidently HTML drift report for a model and window")
    common(p)
    registry_arg(p)
    p.add_argument("--model", required=True)
    p.add_argument("--start", type=_timestamp, help="window start (default: the latest complete window)")
    p.add_argument("--end", type=_timestamp, help="window end")
    p.add_argument("--out", default="drift-report.html", help="output file (default drift-report.html)")
    p.add_argument("--sample-rows", type=int, default=50_000, help="rows sampled per side (default 50000)")
    p.set_defaults(func=cmd_report)

    db = sub.add_parser("db", help="schema and store commands").add_subparsers(dest="db_command", required=True, metavar="DB_COMMAND")
    p = db.add_parser("migrate", help="create or upgrade the schema (idempotent)")
    common(p)
    p.set_defaults(func=cmd_db_migrate)
    p = db.add_parser("status", help="schema version and row counts")
    common(p)
    p.set_defaults(func=cmd_db_status)
    p = db.add_parser("query", help="run a read-only SQL query and print tab-separated rows")
    p.add_argument("sql")
    common(p)
    p.set_defaults(func=cmd_db_query)
    p = db.add_parser("schema", help="print the schema DDL; with --cluster, its replicated/distributed cluster variant")
    p.add_argument("--cluster", help="the cluster holding the sharded event tables (remote_servers name)")
    p.add_argument("--coordination-cluster", help="one shard, every host a replica: the small and coordination "
                                                  "tables (default: CLUSTER_coordination)")
    p.set_defaults(func=cmd_db_schema)
    return parser


def unencodable_argument(args: argparse.Namespace) -> str | None:
    """Why a text argument cannot be used, naming it; None when all can.

    Python hands undecodable argv bytes over as lone surrogates, which would
    fail later, deep in a store or an HTTP call, as a traceback. File paths
    (Path values) are left alone: any bytes make a valid POSIX path.
    """
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str):
                continue
            shown = name.replace("_", "-")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"argument {shown} is not valid UTF-8 text: {text.encode('utf-8', 'backslashreplace').decode()!r}"
            if "\x00" in text:
                return f"argument {shown} holds a NUL character"
    return None


# Commands that own what they run (a service, a stream's cursor, the dispatcher) or need no store: they never
# borrow the store of a running `up` (driftline/store/service_link.py). Every other store command does.
OWN_THEIR_STORE = {("up",), ("demo",), ("api",), ("collect",), ("simulate",), ("send-example",),
                   ("deliveries", "run"), ("concept-drift", "run"), ("db", "migrate")}


def _borrows_store(args: argparse.Namespace) -> bool:
    sub = next((getattr(args, name) for name in vars(args) if name.endswith("_command") and name != "command"), None)
    return (args.command,) not in OWN_THEIR_STORE and (args.command, sub) not in OWN_THEIR_STORE


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (bad := unencodable_argument(args)) is not None:
        print(f"driftline: {bad}", file=sys.stderr)
        return 2
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"driftline: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level)
    lend_through_service(_borrows_store(args))
    try:
        return _run(args, settings)
    except BrokenPipeError:  # `driftline db query ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail too
        return 0
    finally:
        lend_through_service(False)  # main() called in-process (tests, notebooks) leaves no borrowing behind


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if hasattr(args, "handler"):
            extra = (_install_stop_handlers(),) if getattr(args, "needs_stop", False) else ()
            return int(args.handler(args, settings, *extra))
        return int(args.func(args))
    except StoreError as exc:
        print(f"driftline: {exc}", file=sys.stderr)
        return 3
    except ConfigError as exc:
        print(f"driftline: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"driftline: ClickHouse refused the query: {reason}", file=sys.stderr)
        return 2
    except Exception as exc:
        from collector.local_broker import BrokerUnavailable
        from detectors.config import UnknownModel

        from alerts.silences import SilenceError

        if isinstance(exc, UnknownModel):
            print(f"driftline: {exc.args[0]}", file=sys.stderr)
            return 2
        if hasattr(args, "handler") and isinstance(exc, SilenceError | LookupError | ValueError):
            print(f"driftline: {exc}", file=sys.stderr)
            return 2
        if isinstance(exc, BrokerUnavailable):
            print(f"driftline: {exc}", file=sys.stderr)
            return 4
        from driftline.api.serve import ApiUnavailable

        if isinstance(exc, ApiUnavailable):
            print(f"driftline: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
