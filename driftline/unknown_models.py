"""Events naming a model the registry does not define: recognised at ingest, counted, logged once, or dead-lettered.

Why this exists: a producer that mistypes its model name ("chrun" for
"churn") used to create a new model silently: its events were stored, no
detector ever ran on them, and the real model looked idle. Now every path
where events enter (the Kafka collector, HTTP ingest, replay) asks one
`ModelGate`, shared by them and replaced whole by a registry reload:

- counted per name in /metrics (`driftline_unknown_model_events_total`), the
  first `MAX_NAMED` names each with their own label so a flood of random names
  cannot blow up the series count;
- logged once per name (per process), with the closest registered name
  (difflib), since the likeliest cause is a typo;
- with the registry's `unknown_models: dead_letter`, dead-lettered (reason
  `unknown_model`, naming the closest registered model) instead of stored.

Without a registry nothing is unknown: the gate's `known` is None and the
decoder skips the check. The hot path costs one set lookup per event; the
rest runs only for events of unregistered models.

The store side (`unknown_model_counts`, `record_registry`) serves `driftline
db status`, `GET /unknown-models` and the fleet dashboard, which reads the
registry's names from the `registry_snapshots` table since Grafana has no
other way to know them.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from driftline import metrics

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from detectors.config import Registry

log = logging.getLogger(__name__)

REASON = "unknown_model"
"""The dead-letter `error_kind` of an event whose model is not in the registry (with `unknown_models: dead_letter`)."""
MAX_NAMED = 100
"""Distinct unknown names counted and logged one by one per process; later ones share `metrics.OTHER_MODEL`."""
CLOSEST_CUTOFF = 0.6  # difflib's default similarity: "chrun" -> "churn", "fraud" -/-> "churn"
Action = Literal["store", "dead_letter"]


def closest(name: str, registered: Iterable[str]) -> str | None:
    """The registered name most similar to `name` (a likely typo), or None if none is similar enough."""
    found = difflib.get_close_matches(name, list(registered), n=1, cutoff=CLOSEST_CUTOFF)
    return found[0] if found else None


def describe(name: str, registered: Iterable[str]) -> str:
    """The dead-letter reason (and log message) for `name`: which model it probably meant."""
    near = closest(name, registered)
    hint = f"; closest registered model: {near!r}" if near else "; no registered model has a similar name"
    return f"model {name!r} is not in the registry{hint} - at `$.model`"


@dataclass(frozen=True)
class _State:
    known: frozenset[str] | None  # None: no registry, nothing is unknown
    dead_letter: bool


class ModelGate:
    """The registry's model names as ingest sees them; `replace` swaps them whole (a reload), safe across threads."""

    def __init__(self, names: Iterable[str] | None = None, *, action: Action = "store") -> None:
        self._lock = threading.Lock()
        self._reasons: dict[str, str] = {}  # name -> reason, for the names logged so far (at most MAX_NAMED)
        self._state = _State(None, False)
        self.replace(names, action=action)

    @classmethod
    def from_registry(cls, registry: Registry | None) -> ModelGate:
        """The gate of `registry`; without one, a gate that lets every model through."""
        if registry is None:
            return cls(None)
        return cls([m.name for m in registry.models], action=registry.unknown_models)

    def replace(self, names: Iterable[str] | None, *, action: Action = "store") -> None:
        state = _State(None if names is None else frozenset(names), action == "dead_letter" and names is not None)
        with self._lock:
            self._reasons.clear()  # a reload may register a name, or change which one is closest: log afresh
            self._state = state  # one assignment: the decoder reads the old or the new state, never a mix

    @property
    def known(self) -> frozenset[str] | None:
        return self._state.known

    @property
    def dead_letter(self) -> bool:
        return self._state.dead_letter

    def unknown(self, names: Iterable[str]) -> list[str]:
        """The names among `names` the registry does not define (none without a registry), sorted."""
        known = self._state.known
        return [] if known is None else sorted(set(names) - known)

    def seen(self, kind: str, tally: Mapping[str, int]) -> dict[str, str]:
        """Account for events of unregistered models (`tally`: name -> events of one kind); returns name -> reason.

        Counts them in /metrics and logs each name the first time this process sees it. Called once per
        decoded run of records, with the run's tally, so the per-event cost stays a dict increment.
        """
        state = self._state
        known = state.known or frozenset()
        outcome = "dead_lettered" if state.dead_letter else "stored"
        reasons: dict[str, str] = {}
        for name, count in tally.items():
            reason = self._reasons.get(name)
            if reason is None:
                reason = describe(name, known)
                with self._lock:
                    first = name not in self._reasons and len(self._reasons) < MAX_NAMED
                    if first:
                        self._reasons[name] = reason
                if first:
                    log.warning("events of a model that is not in the registry", extra={
                        "model": name, "closest": closest(name, known), "kind": kind, "outcome": outcome,
                        "hint": "fix the producer's model name, or register the model in models.yaml"})
            reasons[name] = reason
            labelled = name if name in self._reasons else metrics.OTHER_MODEL
            metrics.unknown_model_events(kind, labelled, outcome, count)
        return reasons


@dataclass(frozen=True)
class UnknownModel:
    """Events of one unregistered model name in the store: stored rows per kind and dead letters."""

    model: str
    closest: str | None
    predictions: int
    labels: int
    metrics: int
    dead_lettered: int
    last_seen: str | None  # ISO 8601 UTC of the latest ingest

    @property
    def events(self) -> int:
        return self.predictions + self.labels + self.metrics + self.dead_lettered


def unknown_model_counts(client: Client, registered: Collection[str], *, limit: int = 100) -> list[UnknownModel]:
    """Per unregistered model name: its stored events (by table) and its `unknown_model` dead letters.

    A name registered since (a reload) is not listed, though its earlier dead letters stay in the store.

    One scan of the `model` column of each event table (sorted by model first, so cheap), names passed as a
    parameter. Sorted by events, most first; at most `limit` names.
    """
    rows = client.query(
        "SELECT model, sumIf(n, t = 'predictions'), sumIf(n, t = 'labels'), sumIf(n, t = 'infra_metrics'), "
        "sumIf(n, t = 'dead_letters'), max(last) FROM ("
        " SELECT model, 'predictions' AS t, count() AS n, max(ingested_at) AS last FROM predictions"
        "  WHERE model NOT IN {known:Array(String)} GROUP BY model"
        " UNION ALL SELECT model, 'labels', count(), max(ingested_at) FROM labels"
        "  WHERE model NOT IN {known:Array(String)} GROUP BY model"
        " UNION ALL SELECT model, 'infra_metrics', count(), max(ingested_at) FROM infra_metrics"
        "  WHERE model NOT IN {known:Array(String)} GROUP BY model"
        " UNION ALL SELECT JSONExtractString(raw, 'model') AS model, 'dead_letters', count(), max(received_at)"
        "  FROM dead_letters WHERE error_kind = {reason:String} GROUP BY model"
        ") WHERE model NOT IN {known:Array(String)} GROUP BY model ORDER BY sum(n) DESC, model LIMIT {limit:UInt32}",
        parameters={"known": sorted(registered), "reason": REASON, "limit": limit},
    ).result_rows
    out = []
    for model, predictions, labels, infra, dead, last in rows:
        stamp = last.isoformat() if last is not None and last.tzinfo is not None else (
            last.isoformat() + "+00:00" if last is not None else None)
        out.append(UnknownModel(str(model), closest(str(model), registered), int(predictions), int(labels),
                                int(infra), int(dead), stamp))
    return out


def record_registry(client: Client, registry: Registry | None) -> None:
    """Write the registry's model names to `registry_snapshots`, for the fleet dashboard (Grafana reads the store).

    Written at every service start and reload; the latest snapshot counts. Without a registry nothing is
    written, so the dashboard shows no model as unknown (as the collector counts none).
    """
    if registry is None:
        return
    client.insert("registry_snapshots", [[sorted(m.name for m in registry.models), registry.unknown_models]],
                  column_names=["models", "unknown_models"])


def registered_names(client: Client) -> list[str] | None:
    """The model names of the latest registry snapshot in the store, or None if no service has written one."""
    rows = client.query("SELECT models FROM registry_snapshots ORDER BY written_at DESC LIMIT 1").result_rows
    return list(rows[0][0]) if rows else None
