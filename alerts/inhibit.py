"""Inhibition: a firing alert that explains others holds back their notifications.

Alertmanager ships no inhibition rules; a drifting model then sends one email
for the dataset and one per feature, and a broken pipeline sends a drift
email for every feature it broke. The defaults here, always within one model:

- a dataset-level drift alert inhibits the model's per-feature drift alerts;
- a data-quality alert (missing values, out-of-range values, unseen
  categories, dead letters, volume, which covers no data and ingestion
  trouble) inhibits the model's dataset, feature and multivariate drift
  alerts (missing values change the joint distribution too).

`alerts.yaml` can replace them (`inhibit:` as a list of source/target kinds)
or turn them off (`inhibit: []`). An alert never inhibits itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

Kind = str  # a condition kind: dataset_drift, feature_drift, multivariate_drift, performance_drop, quality, infra


class InhibitRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Kind
    target: Kind


DEFAULT_INHIBIT = (
    InhibitRule(source="dataset_drift", target="feature_drift"),
    InhibitRule(source="quality", target="dataset_drift"),
    InhibitRule(source="quality", target="feature_drift"),
    InhibitRule(source="quality", target="multivariate_drift"),
)


def inhibitors(alerts: Iterable[tuple[str, str, str]], firing: Iterable[tuple[str, str, str]],
               rules: Iterable[InhibitRule]) -> dict[str, str]:
    """For each alert (fingerprint, model, kind) that a firing one inhibits: the inhibiting fingerprint."""
    by_source: dict[tuple[str, str], str] = {}
    for fp, model, kind in sorted(firing):
        by_source.setdefault((model, kind), fp)
    out = {}
    rules = list(rules)
    for fp, model, kind in alerts:
        for rule in rules:
            source = by_source.get((model, rule.source))
            if rule.target == kind and source is not None and source != fp:
                out[fp] = source
                break
    return out
