"""Models, their status and their detector results: the read side of the API (and the registry reload).

Model names in paths are held to the identifier pattern, time ranges and page
sizes are bounded, and every value reaches ClickHouse as a query parameter.
Results are read with FINAL (the result tables are ReplacingMergeTrees). No
`from __future__ import annotations`: FastAPI reads annotations at run time.
"""

import datetime as dt
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from detectors.config import ModelSpec
from detectors.performance import label_gaps
from driftline.api.auth import Authenticator, Principal, load_tokens
from driftline.api.context import FORBIDDEN, NOT_FOUND, UNAUTHORIZED, ApiContext
from driftline.names import IDENTIFIER_PATTERN
from driftline.privacy import PrivacyKeyMissing
from driftline.timestamps import as_utc
from driftline.unknown_models import unknown_model_counts
from driftline.yamlfile import ConfigError

log = logging.getLogger(__name__)

MAX_SPAN = dt.timedelta(days=400)
# Inside ClickHouse's DateTime64 range, with room for a rolling reference's offset before a window.
EARLIEST = dt.datetime(1971, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)
ModelName = Annotated[str, Path(pattern=f"^{IDENTIFIER_PATTERN}$", max_length=128,
                                description="a model of the registry", examples=["churn"])]
RESULT_TABLES = {
    "drift": ("drift_results", "column", ["column", "column_role", "column_type", "method", "statistic", "p_value",
                                          "adjusted_p_value", "score", "threshold", "effect_size", "drifted", "status",
                                          "reference_rows", "current_rows"]),
    "quality": ("quality_results", "check", ["column", "check", "value", "threshold", "failed", "status", "rows"]),
    "performance": ("performance_results", "metric", ["metric", "value", "baseline", "ci_low", "ci_high", "max_drop",
                                                      "degraded", "status", "labelled_rows", "prediction_rows"]),
    "estimated": ("estimated_performance_results", "metric", [
        "metric", "method", "value", "sampling_error", "ci_low", "ci_high", "baseline", "max_drop", "degraded", "status",
        "prediction_rows", "estimated_rows", "detail"]),
    "multivariate": ("multivariate_drift_results", "method", ["method", "value", "lower", "upper", "drifted", "status",
                                                             "reference_rows", "current_rows", "sample_rows"]),
}


class Page(BaseModel):
    """One page of rows; `next_offset` is the offset of the next page, or null on the last one."""

    items: list[dict[str, Any]]
    limit: int
    offset: int
    next_offset: int | None

    model_config = {"json_schema_extra": {"examples": [{
        "items": [{"window_start": "2026-11-30T10:00:00+00:00", "window_end": "2026-11-30T11:00:00+00:00",
                   "model_version": "3", "segment": "", "column": "monthly_charges", "method": "wasserstein",
                   "score": 0.41, "threshold": 0.1, "drifted": True, "status": "ok"}],
        "limit": 100, "offset": 0, "next_offset": None}]}}


class ModelSummary(BaseModel):
    name: str = Field(examples=["churn"])
    task: str = Field(examples=["binary_classification"])
    owner: str | None = Field(examples=["team-retention"])
    features: list[str] = Field(examples=[["tenure_months", "monthly_charges", "contract"]])
    window_seconds: float = Field(examples=[3600.0])


class UnknownModelEvents(BaseModel):
    """Events in the store naming a model the registry does not define (a typo, or a model not registered yet)."""

    model: str = Field(examples=["chrun"])
    closest: str | None = Field(description="the registered model with the most similar name", examples=["churn"])
    events: int = Field(description="stored events plus dead letters", examples=[1200])
    predictions: int = Field(examples=[1000])
    labels: int = Field(examples=[200])
    metrics: int = Field(examples=[0])
    dead_lettered: int = Field(description="dead letters with reason unknown_model (`unknown_models: dead_letter`)",
                               examples=[0])
    last_seen: str | None = Field(description="when the latest of them was ingested (ISO 8601 UTC)",
                                  examples=["2026-12-01T10:00:00+00:00"])


class TokenChanges(BaseModel):
    """Tokens by name, as tokens.yaml changed since the last load (a changed token: new secret, scope or team)."""

    added: list[str] = Field(default_factory=list, examples=[["retention-ci"]])
    removed: list[str] = Field(default_factory=list, examples=[["old-ci"]])
    changed: list[str] = Field(default_factory=list, examples=[["grafana-reader"]])


class AlertChanges(BaseModel):
    """Channels and rules by name, as alerts.yaml changed since the last load (changed: any field, such as a
    webhook URL; a secret read from a file or the environment is read at each delivery and needs no reload)."""

    channels_added: list[str] = Field(default_factory=list, examples=[["pagerduty-bridge"]])
    channels_removed: list[str] = Field(default_factory=list, examples=[[]])
    channels_changed: list[str] = Field(default_factory=list, examples=[["retrain-pipeline"]])
    rules_added: list[str] = Field(default_factory=list, examples=[[]])
    rules_removed: list[str] = Field(default_factory=list, examples=[[]])
    rules_changed: list[str] = Field(default_factory=list, examples=[["feature-drift"]])


class ReloadResult(BaseModel):
    models: list[str] = Field(examples=[["churn", "eta"]])
    tokens: TokenChanges | None = Field(None, description="what the reload changed in tokens.yaml (null when "
                                                         "this API does not reload tokens)")
    alerts: AlertChanges | None = Field(None, description="what the reload changed in alerts.yaml (null outside "
                                                         "`up`, or when there was and is no alerts.yaml; a removed one "
                                                         "lists its rules and channels as removed: alerts are off)")


def token_changes(old: Authenticator, new: Authenticator) -> TokenChanges:
    before, after = old.fingerprints(), new.fingerprints()
    return TokenChanges(added=sorted(set(after) - set(before)), removed=sorted(set(before) - set(after)),
                        changed=sorted(n for n in set(before) & set(after) if before[n] != after[n]))


def reload_configuration(ctx: ApiContext) -> ReloadResult:
    """Re-read every configuration file and switch to them all, or to none (ConfigError, PrivacyKeyMissing).

    The one reload behind `POST /models/reload`, SIGHUP and `driftline reload`.
    """
    assert ctx.reload is not None
    changes = None
    with ctx.lock:
        tokens = load_tokens(ctx.tokens_file) if ctx.tokens_file is not None else None
        link_secret = ctx.settings.link_secret()  # a broken secret file keeps everything as it was
        reloaded = ctx.reload()
        registry = reloaded.registry
        if ctx.redactor is not None:  # before the switch: a policy without a key keeps the old config
            ctx.redactor.replace(registry.privacy_policies())
        ctx.gate.replace([m.name for m in registry.models], action=registry.unknown_models)
        ctx.registry = registry
        ctx.link_secret = link_secret
        if tokens is not None:
            changes = token_changes(ctx.authenticator, tokens)
            ctx.authenticator = tokens
    if changes is not None and (changes.added or changes.removed or changes.changed):
        log.info("API tokens reloaded", extra=changes.model_dump())
    return ReloadResult(models=[m.name for m in ctx.registry.models], tokens=changes,
                        alerts=None if reloaded.alerts is None else AlertChanges(**reloaded.alerts))


def summary(m: ModelSpec) -> ModelSummary:
    return ModelSummary(name=m.name, task=m.task.value, owner=m.owner, features=list(m.features),
                        window_seconds=m.window.total_seconds())


def json_value(v: Any) -> Any:
    """A ClickHouse value as JSON: timestamps as ISO 8601 UTC, NaN as null."""
    if isinstance(v, dt.datetime):
        return as_utc(v).isoformat()
    if isinstance(v, float) and v != v:
        return None
    return v


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json_value(v) for k, v in row.items()}


def time_range(start: dt.datetime | None, end: dt.datetime | None, *,
               default: dt.timedelta = dt.timedelta(days=1)) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) in UTC, defaulting to the last day; 422 if inverted, longer than MAX_SPAN or out of range."""
    end_ = as_utc(end) if end else dt.datetime.now(dt.timezone.utc)
    start_ = as_utc(start) if start else end_ - default
    if start_ >= end_:
        raise HTTPException(422, "start must be before end")
    if end_ - start_ > MAX_SPAN:
        raise HTTPException(422, f"the time range may span at most {MAX_SPAN.days} days")
    if start_ < EARLIEST or end_ > LATEST:
        raise HTTPException(422, f"the time range must lie between {EARLIEST.date()} and {LATEST.date()}")
    return start_, end_


Start = Annotated[dt.datetime | None, Query(description="windows ending after this (ISO 8601; default: a day "
                                                        "before end)", examples=["2026-11-30T00:00:00Z"])]
End = Annotated[dt.datetime | None, Query(description="windows starting before this (default: now)",
                                          examples=["2026-12-01T00:00:00Z"])]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="rows to skip (the previous page's next_offset)")]


def router(ctx: ApiContext) -> APIRouter:
    api = APIRouter(tags=["models"], responses={**UNAUTHORIZED, **FORBIDDEN})
    reader = Depends(ctx.needs("read"))

    @api.get("/models")
    def models(who: Annotated[Principal, reader]) -> list[ModelSummary]:
        """The models of the registry this token may see (a team token: its team's)."""
        return [summary(m) for m in ctx.visible(who)]

    @api.get("/unknown-models")
    def unknown_models(who: Annotated[Principal, reader],
                       limit: Annotated[int, Query(ge=1, le=1000, description="most names listed")] = 100,
                       ) -> list[UnknownModelEvents]:
        """Models named by stored events or dead letters that the registry does not define, most events first.

        A team token sees the names whose closest registered model is one of its team's (a typo of its own).
        """
        registry = ctx.registry
        found = unknown_model_counts(ctx.client, [m.name for m in registry.models], limit=limit)
        return [UnknownModelEvents(**vars(u), events=u.events) for u in found
                if who.team is None or (u.closest is not None and ctx.may_see(who, u.closest))]

    @api.post("/models/reload", responses={422: {"description": "the files are invalid; the running registry is kept"}})
    def reload(who: Annotated[Principal, Depends(ctx.needs("admin"))]) -> ReloadResult:
        """Re-read models.yaml (and alerts.yaml, inside `up`) and tokens.yaml, and switch to them only if all
        are valid. A token removed from (or changed in) tokens.yaml answers 401 from the moment this returns."""
        if who.team is not None:
            raise HTTPException(403, f"token {who.name!r} is limited to team {who.team!r}; the reload switches "
                                     "every team's configuration, so it needs an admin token without a team")
        if ctx.reload is None:
            raise HTTPException(409, "this API was started without configuration files to reload")
        try:
            return reload_configuration(ctx)
        except (ConfigError, PrivacyKeyMissing) as exc:
            raise HTTPException(422, f"configuration not reloaded, still running the previous one: {exc}") from None

    @api.get("/models/{model}", responses=NOT_FOUND)
    def model_detail(model: ModelName, who: Annotated[Principal, reader]) -> dict[str, Any]:
        """One model's full registry entry, defaults applied."""
        return ctx.model_for(model, who).model_dump(mode="json")

    @api.get("/models/{model}/status", responses=NOT_FOUND)
    def status(model: ModelName, who: Annotated[Principal, reader]) -> dict[str, Any]:
        """The latest window's dataset drift, the latest performance verdicts and the alerts firing now."""
        spec = ctx.model_for(model, who)
        drift = ctx.client.query(
            "SELECT window_start, window_end, status, score FROM drift_results FINAL WHERE model = {m:String} "
            "AND segment = '' AND column = '__dataset__' ORDER BY window_end DESC LIMIT 1",
            parameters={"m": spec.name}).named_results()
        perf = ctx.client.query(
            "SELECT metric, argMax(value, window_end) AS value, argMax(status, window_end) AS status FROM "
            "performance_results FINAL WHERE model = {m:String} AND segment = '' GROUP BY metric ORDER BY metric",
            parameters={"m": spec.name}).named_results()
        firing = ctx.client.query(
            "SELECT rule, subject, severity, active_since FROM alert_states FINAL WHERE model = {m:String} "
            "AND status = 'firing' ORDER BY rule, subject", parameters={"m": spec.name}).named_results()
        late = ctx.client.query(
            "SELECT sum(labels), count(), max(window_end) FROM late_labels FINAL WHERE model = {m:String}",
            parameters={"m": spec.name}).result_rows[0]
        latest = next(iter(drift), None)
        return {"model": spec.name, "drift": json_row(latest) if latest else None,
                "performance": [json_row(r) for r in perf], "firing_alerts": [json_row(r) for r in firing],
                "label_gaps": label_gaps(ctx.client, spec, dt.datetime.now(dt.timezone.utc)),
                "labels_past_horizon": {"labels": int(late[0]), "windows": int(late[1]),
                                        "latest_window_end": json_value(late[2]) if late[1] else None,
                                        "label_horizon_seconds": spec.label_horizon.total_seconds()}}

    def results(kind: str):  # type: ignore[no-untyped-def]
        table, key, columns = RESULT_TABLES[kind]

        def endpoint(model: ModelName, who: Annotated[Principal, reader], start: Start = None, end: End = None,
                     segment: Annotated[str, Query(max_length=300, description="`key=value`; empty: all rows")] = "",
                     limit: Limit = 100, offset: Offset = 0) -> Page:
            spec = ctx.model_for(model, who)
            start_, end_ = time_range(start, end)
            rows = ctx.client.query(
                f"SELECT window_start, window_end, model_version, segment, {', '.join(columns)} FROM {table} FINAL "
                "WHERE model = {m:String} AND segment = {seg:String} AND window_end > {s:DateTime64(3, 'UTC')} "
                "AND window_start < {e:DateTime64(3, 'UTC')} "
                f"ORDER BY window_start, {key} LIMIT {{lim:UInt32}} OFFSET {{off:UInt32}}",
                parameters={"m": spec.name, "seg": segment, "s": start_, "e": end_, "lim": limit + 1,
                            "off": offset}).named_results()
            items = [json_row(r) for r in rows]
            more = len(items) > limit
            return Page(items=items[:limit], limit=limit, offset=offset, next_offset=offset + limit if more else None)

        endpoint.__name__ = f"{kind}_results"
        endpoint.__doc__ = f"{kind.capitalize()} results of the model's windows in [start, end), oldest first."
        return endpoint

    for kind in RESULT_TABLES:
        api.get(f"/models/{{model}}/{kind}", tags=["results"], name=f"{kind} results",
                responses=NOT_FOUND)(results(kind))
    return api
