"""Model detail: one model (template variable) from its features' drift down to the minute it moved.

Alert emails link here with `var-model` and the window's time range.
"""

from __future__ import annotations

from dashboards.board import Board

UID = "driftline-model"  # alerts/render.py builds its links with this uid

M = "model = '${model}'"  # model names match the identifier pattern (no quotes): raw interpolation is safe

# The prediction, read as the model's task writes it: a number or a class.
PREDICTION_SIDES = f"""
SELECT 'current' AS side, variantElement(prediction, 'Float64') AS x, variantElement(prediction, 'String') AS c
FROM predictions WHERE {M} AND $__timeFilter(ts)
UNION ALL
SELECT 'reference' AS side, variantElement(prediction, 'Float64') AS x, variantElement(prediction, 'String') AS c
FROM reference_rows
WHERE {M} AND reference = (SELECT argMax(reference, uploaded_at) FROM reference_rows WHERE {M})
"""


def build() -> Board:
    b = Board(UID, "Driftline: model detail",
              "One model: which features drift and since when, its predictions against the reference, performance "
              "against its baseline, data quality, alerts and retraining.")
    b.variable("model", "Model", """
        SELECT DISTINCT model FROM drift_results WHERE $__timeFilter(window_end) ORDER BY model
        """)
    b.annotation("Alerts", "red", f"""
        SELECT at AS time, concat(event, ': ', rule, if(window_end IS NULL, '', concat(' (window to ',
               toString(window_end), ')'))) AS text, [event, rule] AS tags
        FROM alert_events
        WHERE {M} AND event IN ('fired', 'resolved') AND $__timeFilter(at)
        ORDER BY time
        """)
    b.annotation("Retrains", "purple", f"""
        SELECT created_at AS time, concat('retrain triggered via ', channel, ' (', status, ')') AS text,
               ['retrain', channel] AS tags
        FROM outbox FINAL
        WHERE {M} AND kind = 'webhook' AND event = 'firing' AND $__timeFilter(created_at)
        ORDER BY time
        """)

    b.row("Drift")
    b.panel("state", "Feature drift verdict per window", f"""
        SELECT window_end AS time, column AS feature, drifted
        FROM drift_results FINAL
        WHERE {M} AND segment = '' AND column_role != 'dataset' AND status IN ('ok', 'drifted')
          AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "feature", "drifted"), width=24, height=9,
            description="1 = drifted in that window (statistic past its threshold, with the effect-size guard).")
    b.panel("timeseries", "Drift statistic relative to its threshold", f"""
        SELECT window_end AS time, column AS feature,
               if(method IN ('ks', 'chisquare', 'z', 'anderson', 'cramer_von_mises') AND effect_size IS NULL,
                  threshold / greatest(score, 1e-12), score / threshold) AS ratio
        FROM drift_results FINAL
        WHERE {M} AND segment = '' AND column_role != 'dataset' AND score IS NOT NULL AND threshold > 0
          AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "feature", "ratio"),
            description="Above 1 means past the threshold: a distance over it, or a p-value under it (shown as "
                        "threshold / p-value).")
    b.panel("table", "Top drifted features now", f"""
        SELECT column AS feature, column_role AS role, method, score AS statistic, threshold, p_value,
               effect_size, drifted, current_rows
        FROM drift_results FINAL
        WHERE {M} AND segment = '' AND column_role != 'dataset'
          AND window_end = (SELECT max(window_end) FROM drift_results WHERE {M} AND $__timeFilter(window_end))
        ORDER BY drifted DESC, feature
        LIMIT 20
        """, ("feature", "role", "method", "statistic", "threshold", "p_value", "effect_size", "drifted",
              "current_rows"))
    b.panel("bars", "Predictions: reference against the selected range", f"""
        SELECT stat, anyIf(v, side = 'reference') AS reference, anyIf(v, side = 'current') AS current
        FROM (
            SELECT side, tupleElement(q, 1) AS stat, tupleElement(q, 2) AS v
            FROM (SELECT side, arrayJoin(arrayZip(['p05', 'p25', 'p50', 'p75', 'p95'],
                                                  quantiles(0.05, 0.25, 0.5, 0.75, 0.95)(x))) AS q
                  FROM ({PREDICTION_SIDES}) WHERE x IS NOT NULL GROUP BY side)
            UNION ALL
            SELECT side, concat('share of ', c) AS stat, count() / sum(count()) OVER (PARTITION BY side) AS v
            FROM ({PREDICTION_SIDES}) WHERE c IS NOT NULL GROUP BY side, c
        )
        GROUP BY stat
        ORDER BY stat
        """, ("stat", "reference", "current"),
            description="Numeric outputs: quantiles; classes: the share of each class. Reference: the latest upload.")

    b.panel("timeseries", "Multivariate: PCA reconstruction error and its band", f"""
        SELECT window_end AS time, value AS error, lower, upper
        FROM multivariate_drift_results FINAL
        WHERE {M} AND segment = '' AND method = 'pca_reconstruction' AND value IS NOT NULL
          AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "error", "lower", "upper"),
            description="Mean error of reconstructing each row from the reference's principal components; outside "
                        "[lower, upper] (the reference's own spread) the features' relationship has drifted.")
    b.panel("timeseries", "Multivariate: domain classifier AUC", f"""
        SELECT window_end AS time, value AS auc, upper AS threshold
        FROM multivariate_drift_results FINAL
        WHERE {M} AND segment = '' AND method = 'domain_classifier' AND value IS NOT NULL
          AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "auc", "threshold"),
            description="Cross-validated ROC AUC of a classifier telling the window's rows from the reference's: "
                        "0.5 is indistinguishable; at or above the threshold, drift.")

    b.row("Performance")
    b.panel("timeseries", "Performance against the reference baseline", f"""
        SELECT window_end AS time, metric, value, baseline
        FROM performance_results FINAL
        WHERE {M} AND segment = '' AND value IS NOT NULL AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "metric", "value", "baseline"))
    b.panel("timeseries", "Performance: estimated until labels arrive, then realized", f"""
        SELECT window_end AS time, metric, value, estimated, realized, label_coverage
        FROM performance_timeline
        WHERE {M} AND segment = '' AND value IS NOT NULL AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "metric", "value", "estimated", "realized", "label_coverage"), width=24,
            description="value: the realized metric once labels gave a verdict, else the estimate (CBPE for "
                        "classifiers, DLE for regressors) computed when the window closed; label_coverage: labelled "
                        "rows over predictions. CBPE assumes P(label | score) is as in the reference.")
    b.panel("timeseries", "Labels per window", f"""
        SELECT window_end AS time, max(labelled_rows) AS labelled, max(prediction_rows) AS predictions
        FROM performance_results FINAL
        WHERE {M} AND segment = '' AND $__timeFilter(window_end)
        GROUP BY time
        ORDER BY time
        """, ("time", "labelled", "predictions"))

    b.panel("table", "Concept drift firings on the labelled stream", f"""
        SELECT label_ingested_at AS time, detector, position, statistic, threshold, event_id
        FROM concept_drift_events FINAL
        WHERE {M} AND $__timeFilter(label_ingested_at)
        ORDER BY time DESC, position DESC
        LIMIT 200
        """, ("time", "detector", "position", "statistic", "threshold", "event_id"),
            description="Page-Hinkley, ADWIN and DDM on each prediction's error, in label arrival order; position = "
                        "labelled rows seen when the detector fired (docs/reference.md: Concept drift on the labelled stream).")

    b.row("Data quality and alerts")
    b.panel("timeseries", "Data-quality checks", f"""
        SELECT window_end AS time, if(column = '', check, concat(check, ' ', column)) AS check_name, value
        FROM quality_results FINAL
        WHERE {M} AND segment = '' AND value IS NOT NULL AND $__timeFilter(window_end)
        ORDER BY time
        """, ("time", "check_name", "value"))
    b.panel("table", "Alerts of this model", f"""
        SELECT rule, subject, status, severity, model_version AS version, active_since AS since, last_value, muted,
               notified_firing_at AS last_notified
        FROM alert_states FINAL
        WHERE {M} AND status != 'inactive'
        UNION ALL
        SELECT rule, '' AS subject, 'resolved' AS status, '' AS severity, model_version AS version,
               NULL AS since, value AS last_value, '' AS muted, at AS last_notified
        FROM alert_events
        WHERE {M} AND event = 'resolved' AND $__timeFilter(at)
        ORDER BY status = 'resolved', rule
        """, ("rule", "subject", "status", "severity", "version", "since", "last_value", "muted", "last_notified"))
    return b
