"""Fleet overview: every model at a glance (status, firing alerts, drift share, volume, label coverage)."""

from __future__ import annotations

from dashboards.board import Board

UID = "driftline-fleet"

# The latest window of each model in the time range, from the detectors' dataset row and performance verdicts.
STATUS_SQL = """
SELECT d.model AS model,
       multiIf(d.status IN ('no_data', 'no_reference'), 'no data', p.degraded = 1, 'degraded',
               d.status = 'drifted', 'drifting', 'ok') AS status,
       d.share AS drifted_share,
       d.last_window AS last_window,
       a.firing AS firing_alerts
FROM (
    SELECT model, argMax(status, window_end) AS status, argMax(score, window_end) AS share,
           max(window_end) AS last_window
    FROM drift_results FINAL
    WHERE column = '__dataset__' AND segment = '' AND $__timeFilter(window_end)
    GROUP BY model
) AS d
LEFT JOIN (
    SELECT model, max(degraded) AS degraded
    FROM (SELECT model, metric, argMax(degraded, window_end) AS degraded FROM performance_results FINAL
          WHERE segment = '' AND $__timeFilter(window_end) GROUP BY model, metric)
    GROUP BY model
) AS p ON p.model = d.model
LEFT JOIN (
    SELECT model, toUInt64(countIf(status = 'firing')) AS firing FROM alert_states FINAL GROUP BY model
) AS a ON a.model = d.model
ORDER BY status = 'ok', model
"""


# Names outside the latest registry snapshot a service wrote (driftline/unknown_models.py); none without a snapshot.
UNKNOWN_MODELS_SQL = """
WITH (SELECT argMax(models, written_at) FROM registry_snapshots) AS registered,
     (SELECT count() FROM registry_snapshots) AS snapshots
SELECT model, sumIf(n, t = 'prediction') AS predictions, sumIf(n, t = 'label') AS labels,
       sumIf(n, t = 'metric') AS metrics, sumIf(n, t = 'dead_letter') AS dead_lettered, max(last) AS last_seen
FROM (
    SELECT model, 'prediction' AS t, count() AS n, max(ingested_at) AS last FROM predictions
    WHERE $__timeFilter(ingested_at) GROUP BY model
    UNION ALL SELECT model, 'label', count(), max(ingested_at) FROM labels
    WHERE $__timeFilter(ingested_at) GROUP BY model
    UNION ALL SELECT model, 'metric', count(), max(ingested_at) FROM infra_metrics
    WHERE $__timeFilter(ingested_at) GROUP BY model
    UNION ALL SELECT JSONExtractString(raw, 'model') AS model, 'dead_letter', count(), max(received_at)
    FROM dead_letters WHERE error_kind = 'unknown_model' AND $__timeFilter(received_at) GROUP BY model
)
WHERE snapshots > 0 AND NOT has(registered, model)
GROUP BY model
ORDER BY predictions + labels + metrics + dead_lettered DESC, model
LIMIT 100
"""


def build() -> Board:
    b = Board(UID, "Driftline: fleet overview",
              "Every monitored model: is it healthy, what fires, how much drifts, how much traffic and labels.")
    b.panel("stat", "Models drifting or degraded", f"""
        SELECT countIf(status IN ('drifting', 'degraded')) AS unhealthy, count() AS models FROM ({STATUS_SQL})
        """, ("unhealthy", "models"), width=6, height=5)
    b.panel("stat", "Firing alerts", """
        SELECT toUInt64(countIf(status = 'firing')) AS firing, toUInt64(countIf(status = 'pending')) AS pending
        FROM alert_states FINAL
        """, ("firing", "pending"), width=6, height=5)
    b.panel("stat", "Predictions in range", """
        SELECT count() AS predictions, uniqExact(model) AS models FROM predictions WHERE $__timeFilter(ts)
        """, ("predictions", "models"), width=6, height=5)
    b.panel("stat", "Dead letters in range", """
        SELECT count() AS dead_letters FROM dead_letters WHERE $__timeFilter(received_at)
        """, ("dead_letters",), width=6, height=5)
    b.panel("table", "Model status (latest window)", STATUS_SQL,
            ("model", "status", "drifted_share", "last_window", "firing_alerts"), width=24, height=8,
            description="ok / drifting (dataset drift) / degraded (a performance metric below its bound) / no data.")
    b.panel("table", "Firing alerts", """
        SELECT model, rule, subject, severity, model_version AS version, active_since AS since, last_value,
               muted
        FROM alert_states FINAL
        WHERE status = 'firing'
        ORDER BY severity = 'critical' DESC, active_since
        """, ("model", "rule", "subject", "severity", "version", "since", "last_value", "muted"), width=24, height=7)
    b.panel("timeseries", "Drifted-feature share", """
        SELECT window_end AS time, model, score AS drifted_share
        FROM drift_results FINAL
        WHERE column = '__dataset__' AND segment = '' AND score IS NOT NULL AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "model", "drifted_share"), unit="percentunit")
    b.panel("timeseries", "Prediction volume", """
        SELECT $__timeInterval(ts) AS time, model, count() AS predictions
        FROM predictions
        WHERE $__timeFilter(ts)
        GROUP BY time, model
        ORDER BY time
        """, ("time", "model", "predictions"))
    b.panel("timeseries", "Label coverage", """
        SELECT window_end AS time, model, max(labelled_rows) / greatest(max(prediction_rows), 1) AS label_coverage
        FROM performance_results FINAL
        WHERE segment = '' AND $__timeFilter(window_end)
        GROUP BY time, model
        ORDER BY time
        """, ("time", "model", "label_coverage"), unit="percentunit",
            description="Share of the window's predictions whose label has arrived.")
    b.panel("table", "Events of unregistered models", UNKNOWN_MODELS_SQL,
            ("model", "predictions", "labels", "metrics", "dead_lettered", "last_seen"), width=24, height=6,
            description="Model names in events (stored, or dead-lettered as unknown_model) that the registry the "
                        "service runs with does not define: usually a producer's typo. `driftline db status` and "
                        "GET /unknown-models name the closest registered model.")
    return b
