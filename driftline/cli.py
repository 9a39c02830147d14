"""The `driftline` command: the composition root that wires the stages together.

Subcommands:
  up            the whole service on one machine (embedded ClickHouse, a local broker if none is configured)
  collect       the collector alone, against configured Kafka and ClickHouse
  db migrate    create or upgrade the schema
  db status     schema version and row counts
  db query SQL  run a read-only query and print the rows (embedded: only while no other process holds the store)
  config        the configuration table, with the values in effect
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from clickhouse_connect.driver.exceptions import DatabaseError
from pydantic import ValidationError

from driftline.config import Settings, load_settings
from driftline.logs import setup_logging
from driftline.store import StoreError, connect, migrate, schema_version

log = logging.getLogger("driftline")

COUNTED_TABLES = ("predictions", "labels", "infra_metrics", "dead_letters")


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
    print(json.dumps({"applied": applied, "schema_version": schema_version(client),
                      "store": settings.redacted_clickhouse_url()}))
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = connect(settings)
    version = schema_version(client)
    counts: dict[str, int] = {}
    if version:
        for table in COUNTED_TABLES:
            counts[table] = int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])
    print(json.dumps({"store": settings.redacted_clickhouse_url(), "schema_version": version, "rows": counts}))
    return 0


def cmd_db_query(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = connect(settings)
    result = client.query(args.sql, settings={"readonly": 2})
    print("\t".join(result.column_names))
    for row in result.result_rows:
        print("\t".join("" if v is None else str(v) for v in row))
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
    migrate(connect(settings))
    tune_gc_for_throughput()
    return 0 if Collector(settings, stop_event=stop).run() else 1


def cmd_up(args: argparse.Namespace) -> int:
    from collector.local_broker import LocalBroker, ensure_topics
    from collector.loop import Collector, tune_gc_for_throughput

    settings = _settings(args)
    stop = _install_stop_handlers()
    migrate(connect(settings))
    broker = None
    if not settings.kafka_bootstrap_servers:
        broker = LocalBroker(settings.local_broker_host, settings.local_broker_port).start()
        settings = settings.model_copy(update={"kafka_bootstrap_servers": broker.bootstrap_servers})
        ensure_topics(broker.bootstrap_servers, list(settings.topics.values()), settings.local_broker_partitions)
    try:
        collector = Collector(settings, stop_event=stop)
        tune_gc_for_throughput()
        _print_banner(settings, local_broker=broker is not None)
        return 0 if collector.run() else 1
    finally:
        if broker is not None:
            broker.stop()


def _print_banner(settings: Settings, *, local_broker: bool) -> None:
    where = "local broker (in-memory, stops with this process)" if local_broker else "Kafka"
    print(
        f"Driftline is up.\n"
        f"  Kafka bootstrap servers : {settings.kafka_bootstrap_servers}   [{where}]\n"
        f"  topics                  : predictions={settings.topic_predictions} labels={settings.topic_labels} "
        f"metrics={settings.topic_metrics}\n"
        f"  ClickHouse              : {settings.redacted_clickhouse_url()} (database {settings.database})\n"
        f"Send a first event:  driftline send-example --bootstrap-servers {settings.kafka_bootstrap_servers}\n"
        f"Stop with Ctrl-C; then `driftline db status` shows what was stored.",
        flush=True,
    )


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="driftline", description="Model monitoring and drift detection.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, kafka: bool = False) -> None:
        p.add_argument("--clickhouse-url", help="overrides DRIFTLINE_CLICKHOUSE_URL")
        if kafka:
            p.add_argument("--bootstrap-servers", help="overrides DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS")

    p = sub.add_parser("up", help="run the whole service (embedded ClickHouse; a local broker if no Kafka is set)")
    common(p, kafka=True)
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("collect", help="run the collector: Kafka -> ClickHouse, exactly once")
    common(p, kafka=True)
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("send-example", help="send one example prediction, label and metrics event")
    common(p, kafka=True)
    p.set_defaults(func=cmd_send_example)
    p = sub.add_parser("config", help="print the configuration in effect and what each setting does")
    common(p, kafka=True)
    p.set_defaults(func=cmd_config)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        print(f"driftline: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_format, settings.log_level)
    try:
        return int(args.func(args))
    except StoreError as exc:
        print(f"driftline: {exc}", file=sys.stderr)
        return 3
    except DatabaseError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"driftline: ClickHouse refused the query: {reason}", file=sys.stderr)
        return 2
    except Exception as exc:
        from collector.local_broker import BrokerUnavailable

        if isinstance(exc, BrokerUnavailable):
            print(f"driftline: {exc}", file=sys.stderr)
            return 4
        raise


if __name__ == "__main__":
    sys.exit(main())
