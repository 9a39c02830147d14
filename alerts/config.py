"""Alert rules and channels as config-as-code (`alerts.yaml`, beside the model registry).

Validated as a whole at load, like Alertmanager's configuration: every
route names a defined channel, channel names are unique, exclusive options
(`url` / `url_file`, `secret` / `secret_file`, `password` / `password_file`)
are exclusive, and rules refer to models, features and metrics the model
registry defines. Errors carry file:line, the rule or channel, the field and
the value. Secrets are read from the environment or a file, never from this
file: fields ending in `_file` or `_env` name where they are.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from alerts.inhibit import DEFAULT_INHIBIT, InhibitRule
from alerts.lifecycle import Thresholds
from alerts.payload import PRESETS
from detectors.config import Registry
from driftline.yamlfile import (
    ConfigError,
    Duration,
    FieldError,
    Identifier,
    LocatedYaml,
    Strict,
    describe_validation_error,
    load_yaml,
)


def _one_source(values: dict[str, object], names: tuple[str, ...], what: str, *, required: bool) -> None:
    given = [n for n in names if values.get(n) is not None]
    if len(given) > 1 or (required and not given):
        raise ValueError(f"give exactly one of {', '.join(names)} for the {what} (got {', '.join(given) or 'none'})")


class Retries(Strict):
    """How a channel's outbox retries a failing delivery before dead-lettering it."""

    max_attempts: int = Field(8, ge=1, le=100, description="Attempts before the delivery is dead-lettered.")
    backoff: Duration = Field(timedelta(seconds=2), description="Base of the exponential backoff (full jitter).")
    backoff_cap: Duration = Field(timedelta(minutes=10), description="Longest wait between two attempts.")


class EmailChannel(Retries):
    type: Literal["email"]
    to: tuple[str, ...] = Field(min_length=1)
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "ssl"] = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    sender: str = "driftline@localhost"
    timeout: Duration = timedelta(seconds=15)
    ca_file: Path | None = Field(None, description="CA bundle to verify the SMTP server's certificate (default: system CAs).")
    attach_report: bool = Field(True, description="Attach the Evidently drift report to drift alert emails.")

    @model_validator(mode="after")
    def _check(self) -> EmailChannel:
        for address in (*self.to, self.sender):
            if "@" not in address or any(c in address for c in "\r\n,;<>"):
                raise ValueError(f"{address!r} is not a single email address")
        if self.username is not None:
            _one_source(self.__dict__, ("password_env", "password_file"), "SMTP password", required=True)
        return self


class WebhookChannel(Retries):
    type: Literal["webhook"]
    url: str | None = None
    url_file: Path | None = None
    preset: str = "generic"
    secret_env: str | None = None
    secret_file: Path | None = None
    timeout: Duration = timedelta(seconds=10)
    cooldown: Duration = Field(timedelta(hours=6), description="At most one retrain trigger per model per cooldown.")

    @model_validator(mode="after")
    def _check(self) -> WebhookChannel:
        _one_source(self.__dict__, ("url", "url_file"), "webhook URL", required=True)
        _one_source(self.__dict__, ("secret_env", "secret_file"), "signing secret", required=True)
        if self.url is not None and not self.url.startswith(("http://", "https://")):
            raise FieldError(("url",), f"the webhook URL must start with http:// or https://, got {self.url[:40]!r}")
        if self.preset not in PRESETS:
            raise FieldError(("preset",), f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        return self


Channel = Annotated[EmailChannel | WebhookChannel, Field(discriminator="type")]


class DatasetDrift(Strict):
    """Fires on the share of drifted features. Unset, `fire_share` is the model's own `drift.share`, so the
    alert, /status, the dashboards and the report all say the same; a rule that sets another one says so in
    its emails."""

    fire_share: float | None = Field(None, gt=0, le=1, description="default: the model's drift.share")
    clear_share: float | None = Field(None, ge=0, le=1, description="default: 0.6 x the firing share")

    def thresholds(self, model_share: float) -> Thresholds:
        fire = self.fire_share if self.fire_share is not None else model_share
        return Thresholds(fire, self.clear_share if self.clear_share is not None else round(0.6 * fire, 6))


class FeatureDrift(Strict):
    features: tuple[Identifier, ...] = Field(min_length=1)


class MultivariateDrift(Strict):
    """Drift of the features' joint distribution: fires on the method named, or on either (`any`)."""

    method: Literal["any", "pca_reconstruction", "domain_classifier"] = "any"


class PerformanceDrop(Strict):
    metric: str
    fire_drop: float = Field(0.05, ge=0)
    clear_drop: float = Field(0.02, ge=0)


class Quality(Strict):
    check: Literal["missing_share", "out_of_range_share", "unseen_category_share", "dead_letter_rate", "volume_ratio"]


class Infra(Strict):
    """A metric of the metrics topic (e.g. `latency_p99_ms`, `error_rate`, `throughput`), aggregated per window."""

    metric: Identifier
    aggregate: Literal["avg", "max", "min", "sum", "p99"] = "avg"
    fire_above: float | None = None
    clear_below: float | None = None
    fire_below: float | None = None
    clear_above: float | None = None

    def thresholds(self) -> Thresholds:
        if self.fire_above is not None:
            clear = self.clear_below if self.clear_below is not None else self.fire_above
            return Thresholds(self.fire_above, clear, "above")
        assert self.fire_below is not None
        clear = self.clear_above if self.clear_above is not None else self.fire_below
        return Thresholds(self.fire_below, clear, "below")

    @model_validator(mode="after")
    def _check(self) -> Infra:
        if (self.fire_above is None) == (self.fire_below is None):
            raise ValueError("give exactly one of fire_above or fire_below")
        self.thresholds()  # the clearing threshold must leave a band on the good side
        return self


class ConceptDrift(Strict):
    """A firing of the model's streaming concept drift detectors (all of its detectors, or those listed)."""

    detectors: tuple[Literal["page_hinkley", "adwin", "ddm"], ...] | None = Field(
        None, min_length=1, description="Only firings of these detectors count (default: any).")


class Condition(Strict):
    """Exactly one kind of condition per rule."""

    dataset_drift: DatasetDrift | None = None
    feature_drift: FeatureDrift | None = None
    multivariate_drift: MultivariateDrift | None = None
    performance_drop: PerformanceDrop | None = None
    quality: Quality | None = None
    infra: Infra | None = None
    concept_drift: ConceptDrift | None = None

    @model_validator(mode="after")
    def _one(self) -> Condition:
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError(f"a rule has exactly one condition (got {', '.join(given) or 'none'}); "
                             "use dataset_drift, feature_drift, multivariate_drift, performance_drop, quality, infra or concept_drift")
        if self.dataset_drift is not None and self.dataset_drift.fire_share is not None:
            self.dataset_drift.thresholds(self.dataset_drift.fire_share)  # a given clear_share must leave a band
        if self.performance_drop is not None:
            Thresholds(self.performance_drop.fire_drop, self.performance_drop.clear_drop)
        return self

    @property
    def kind(self) -> str:
        return next(k for k, v in self.__dict__.items() if v is not None)


class Rule(Strict):
    name: Identifier
    model: Identifier
    when: Condition
    severity: Literal["info", "warning", "critical"] = "warning"
    for_: int = Field(2, ge=1, le=1000, alias="for", description="Consecutive bad windows before firing.")
    clear_for: int = Field(2, ge=1, le=1000, description="Consecutive good windows before resolving.")
    repeat_interval: Duration = timedelta(hours=4)
    send_resolved: bool = True
    routes: tuple[Identifier, ...] = Field(min_length=1)
    labels: dict[Identifier, str] = Field(default_factory=dict)

    def thresholds(self, model_share: float = 0.5) -> Thresholds:
        """Feature drift, multivariate drift and quality are verdicts (1 bad, 0 good); the others have thresholds.
        `model_share`: the model's dataset drift share, the default of a dataset drift rule."""
        w = self.when
        if w.dataset_drift is not None:
            return w.dataset_drift.thresholds(model_share)
        if w.performance_drop is not None:
            return Thresholds(w.performance_drop.fire_drop, w.performance_drop.clear_drop)
        if w.infra is not None:
            return w.infra.thresholds()
        return Thresholds(1.0, 1.0)


KINDS = ("dataset_drift", "feature_drift", "multivariate_drift", "performance_drop", "quality", "infra", "concept_drift")


class AlertConfig(Strict):
    channels: dict[Identifier, Channel]
    rules: tuple[Rule, ...] = ()
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT

    @model_validator(mode="after")
    def _graph(self) -> AlertConfig:
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise FieldError(("rules", i, "name"), f"rule {rule.name!r} is defined twice")
            seen.add(rule.name)
            for j, route in enumerate(rule.routes):
                if route not in self.channels:
                    known = ", ".join(self.channels) or "none"
                    raise FieldError(("rules", i, "routes", j), f"route {route!r} names no channel (channels: {known})")
        for i, inhibit in enumerate(self.inhibit):
            for side in ("source", "target"):
                if getattr(inhibit, side) not in KINDS:
                    raise FieldError(("inhibit", i, side), f"unknown condition kind {getattr(inhibit, side)!r}; "
                                                           f"use one of {', '.join(KINDS)}")
        return self

    @property
    def attaches_reports(self) -> bool:
        return any(isinstance(c, EmailChannel) and c.attach_report for c in self.channels.values())

    def rules_of(self, model: str) -> list[Rule]:
        return [r for r in self.rules if r.model == model]

    def changes_from(self, old: AlertConfig | None) -> dict[str, list[str]]:
        """Channels and rules by name, added, removed or changed since `old` (a reload's answer says this)."""
        out: dict[str, list[str]] = {}
        for kind, before, after in (
                ("channels", {} if old is None else {n: c.model_dump() for n, c in old.channels.items()},
                 {n: c.model_dump() for n, c in self.channels.items()}),
                ("rules", {} if old is None else {r.name: r.model_dump() for r in old.rules},
                 {r.name: r.model_dump() for r in self.rules})):
            out[f"{kind}_added"] = sorted(set(after) - set(before))
            out[f"{kind}_removed"] = sorted(set(before) - set(after))
            out[f"{kind}_changed"] = sorted(n for n in set(before) & set(after) if before[n] != after[n])
        return out


def check_against_registry(config: AlertConfig, registry: Registry, doc: LocatedYaml | None = None) -> None:
    """Rules must name models of the registry, and features and metrics those models have."""
    problems = []
    known = {m.name: m for m in registry.models}

    def where(*loc: str | int) -> str:
        return f"{doc.where(loc)}: " if doc is not None else ""

    for i, rule in enumerate(config.rules):
        model = known.get(rule.model)
        if model is None:
            problems.append(f"{where('rules', i, 'model')}rule {rule.name!r}: model {rule.model!r} is not in the "
                            f"registry ({', '.join(known) or 'none'})")
            continue
        if rule.when.feature_drift is not None:
            for j, feature in enumerate(rule.when.feature_drift.features):
                if feature not in model.features:
                    problems.append(f"{where('rules', i, 'when', 'feature_drift', 'features', j)}rule {rule.name!r}: "
                                    f"model {model.name!r} has no feature {feature!r}")
        cd = rule.when.concept_drift
        if cd is not None:
            active = model.concept_drift.active(model.task) if model.concept_drift.enabled else ()
            for j, detector in enumerate(cd.detectors or ()):
                if detector not in active:
                    problems.append(f"{where('rules', i, 'when', 'concept_drift', 'detectors', j)}rule {rule.name!r}: "
                                    f"model {model.name!r} does not run {detector!r} "
                                    f"(concept_drift runs: {', '.join(active) or 'none'})")
            if not active:
                problems.append(f"{where('rules', i, 'when', 'concept_drift')}rule {rule.name!r}: model "
                                f"{model.name!r} has concept_drift disabled")
        if rule.when.performance_drop is not None and rule.when.performance_drop.metric not in model.metrics:
            problems.append(f"{where('rules', i, 'when', 'performance_drop', 'metric')}rule {rule.name!r}: model "
                            f"{model.name!r} does not compute {rule.when.performance_drop.metric!r} "
                            f"({', '.join(model.metrics)})")
    if problems:
        raise ConfigError("\n".join(problems))


def load_alerts(path: Path, registry: Registry | None = None) -> AlertConfig:
    """The alert configuration in `path`, checked as a whole (and against the registry, if given)."""
    doc = load_yaml(path)
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.where(())}: the alert configuration must be a mapping with `channels:` and `rules:`")
    try:
        config = AlertConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(doc, exc)) from None
    if registry is not None:
        check_against_registry(config, registry, doc)
    return config
