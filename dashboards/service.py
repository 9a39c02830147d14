"""Service and infrastructure: the four golden signals per model and instance, and Driftline's own health.

The golden signals come from the metrics topic under these metric names (the
ones `PredictionLogger.log_metrics` examples and the simulator send):
`latency_p99_ms` (latency), `rps` (traffic), `error_rate` (errors, 0-1) and
`cpu_utilization` (saturation, 0-1). Driftline's health comes from its own
tables: the collector's commit log, dead letters, detector runs and
notification attempts.
"""

from __future__ import annotations

from dashboards.board import Board

UID = "driftline-service"
ALL = "__all__"
MODEL = f"('${{model}}' = '{ALL}' OR model = '${{model}}')"  # `All` is inserted as {ALL}, verbatim


def _signal(metric: str, aggregate: str) -> str:
    return f"""
        SELECT $__timeInterval(ts) AS time, concat(model, ' / ', instance) AS series,
               {aggregate}(metrics['{metric}']) AS value
        FROM infra_metrics
        WHERE {MODEL} AND mapContains(metrics, '{metric}') AND $__timeFilter(ts)
        GROUP BY time, series
        ORDER BY time
        """


def build() -> Board:
    b = Board(UID, "Driftline: service and infrastructure",
              "The golden signals of every model's serving instances, and the health of Driftline itself.")
    b.variable("model", "Model", """
        SELECT DISTINCT model FROM infra_metrics WHERE $__timeFilter(ts) ORDER BY model
        """, all_value=ALL)

    b.row("Golden signals (metrics topic)")
    b.panel("timeseries", "Latency p99", _signal("latency_p99_ms", "max"), ("time", "series", "value"), unit="ms")
    b.panel("timeseries", "Traffic", _signal("rps", "sum"), ("time", "series", "value"), unit="reqps")
    b.panel("timeseries", "Errors", _signal("error_rate", "avg"), ("time", "series", "value"), unit="percentunit")
    b.panel("timeseries", "Saturation (CPU)", _signal("cpu_utilization", "max"), ("time", "series", "value"),
            unit="percentunit")

    b.row("Driftline: collector")
    b.panel("timeseries", "Collector throughput", """
        SELECT $__timeInterval(written_at) AS time, topic, sum(events) / $__interval_s AS events_per_s
        FROM ingest_batches
        WHERE $__timeFilter(written_at)
        GROUP BY time, topic
        ORDER BY time
        """, ("time", "topic", "events_per_s"), unit="ops")
    b.panel("timeseries", "Collector lag (messages behind the log end)", """
        SELECT $__timeInterval(written_at) AS time, topic, max(lag) AS lag
        FROM ingest_batches
        WHERE $__timeFilter(written_at)
        GROUP BY time, topic
        ORDER BY time
        """, ("time", "topic", "lag"))
    b.panel("timeseries", "Dead letters by reason", """
        SELECT $__timeInterval(received_at) AS time, error_kind AS reason, count() AS dead_letters
        FROM dead_letters
        WHERE $__timeFilter(received_at)
        GROUP BY time, reason
        ORDER BY time
        """, ("time", "reason", "dead_letters"))
    b.panel("table", "Dead letters: latest", """
        SELECT received_at, topic, error_kind AS reason, error, raw_bytes
        FROM dead_letters
        WHERE $__timeFilter(received_at)
        ORDER BY received_at DESC
        LIMIT 50
        """, ("received_at", "topic", "reason", "error", "raw_bytes"))

    b.row("Driftline: detectors and notifications")
    b.panel("timeseries", "Detector run duration", """
        SELECT $__timeInterval(started_at) AS time, stage, avg(duration_ms) AS mean_ms, max(duration_ms) AS max_ms
        FROM detector_runs
        WHERE $__timeFilter(started_at)
        GROUP BY time, stage
        ORDER BY time
        """, ("time", "stage", "mean_ms", "max_ms"), unit="ms")
    b.panel("timeseries", "Detector runs by status", """
        SELECT $__timeInterval(started_at) AS time, status, count() AS runs
        FROM detector_runs
        WHERE $__timeFilter(started_at)
        GROUP BY time, status
        ORDER BY time
        """, ("time", "status", "runs"), description="`error` runs are retried on the next tick.")
    b.panel("timeseries", "Notification attempts by outcome", """
        SELECT $__timeInterval(at) AS time, concat(channel, ' ', outcome) AS attempts_of, count() AS attempts
        FROM delivery_attempts
        WHERE $__timeFilter(at)
        GROUP BY time, attempts_of
        ORDER BY time
        """, ("time", "attempts_of", "attempts"),
            description="delivered, retry (a failed attempt that will be retried), dead (given up), replayed.")
    b.panel("table", "Deliveries pending or dead", """
        SELECT delivery_id, channel, kind, model, event, status, attempts, next_attempt_at, last_error, created_at
        FROM outbox FINAL
        WHERE status != 'delivered'
        ORDER BY created_at DESC
        LIMIT 50
        """, ("delivery_id", "channel", "kind", "model", "event", "status", "attempts", "next_attempt_at",
              "last_error", "created_at"), description="Dead deliveries: `driftline deliveries replay ID`.")
    return b
