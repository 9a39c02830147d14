"""Drift verdicts for one model, window and segment, from the summaries ClickHouse computed.

Guards against false alarms live here: too few rows is `insufficient_data`,
not a verdict; an optional multiple-testing correction across the model's
features; an optional effect size, so a p-value that is significant only
because the window is huge does not count as drift on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.aggregates import MAX_CATEGORIES, ColumnProfile, Needs, Summaries
from detectors.config import ModelSpec
from detectors.correction import adjust_p_values
from detectors.methods.base import DriftMethod, DriftScore
from detectors.methods.registry import get_method
from detectors.methods.wasserstein import MIN_NORM
from detectors.select import default_method
from detectors.summaries import ColumnType, w1_binning_error_bound


@dataclass
class ColumnPlan:
    """The methods chosen for a column, before any statistic is computed."""

    profile: ColumnProfile
    method: DriftMethod
    threshold: float
    effect: DriftMethod | None = None
    effect_threshold: float | None = None
    status: str = "pending"  # pending | no_data | no_reference | insufficient_data | error
    error: str = ""


@dataclass
class DriftRow:
    column: str
    role: str
    column_type: str
    method: str
    threshold: float
    status: str
    statistic: float | None = None
    p_value: float | None = None
    adjusted_p_value: float | None = None
    score: float | None = None
    effect_method: str = ""
    effect_size: float | None = None
    effect_threshold: float | None = None
    drifted: bool = False
    exact: bool = True
    reference_rows: int = 0
    current_rows: int = 0
    error: str = ""


@dataclass
class DatasetDrift:
    share: float | None
    drifted_count: int
    columns: int
    threshold: float
    drifted: bool
    status: str


@dataclass
class DriftOutcome:
    columns: list[DriftRow] = field(default_factory=list)
    dataset: DatasetDrift | None = None


def plan_columns(model: ModelSpec, profiles: dict[str, ColumnProfile]) -> dict[str, ColumnPlan]:
    """Choose each column's method (override, else Evidently's default rule) and its status."""
    min_rows = model.drift.min_rows
    plans = {}
    for name, p in profiles.items():
        ctype = p.column.type
        method_name, threshold = model.method_override(name, ctype)
        if method_name is None:
            # With an empty side nothing is computed; the method recorded is the one the rule would pick.
            method_name = default_method(ctype, max(p.reference_count, 1), max(min(p.pooled_distinct, 6), 1))
        method = get_method(method_name)
        plan = ColumnPlan(p, method, threshold if threshold is not None else method.default_threshold)
        effect = model.drift.effect_size
        if effect is not None and method.kind == "p_value":
            is_numeric = ctype is ColumnType.NUMERIC
            plan.effect = get_method(effect.numeric if is_numeric else effect.categorical)
            plan.effect_threshold = effect.numeric_threshold if is_numeric else effect.categorical_threshold
        if p.current_rows == 0:
            plan.status = "no_data"
        elif p.reference_rows == 0:
            plan.status = "no_reference"
        elif p.reference_count < min_rows or p.current_count < min_rows:
            plan.status = "insufficient_data"
        elif ctype is ColumnType.CATEGORICAL and p.pooled_distinct_estimate > MAX_CATEGORIES:
            plan.status, plan.error = "error", f"more than {MAX_CATEGORIES} distinct values"
        plans[name] = plan
    return plans


def needs_of(model: ModelSpec, plans: dict[str, ColumnPlan]) -> Needs:
    """The summaries every planned column asks for, and whether its ECDF statistics are exact."""
    needs = Needs()
    for name, plan in plans.items():
        p = plan.profile
        if (p.column.role == "feature" and p.column.type is ColumnType.CATEGORICAL and p.reference_count
                and p.current_count and p.pooled_distinct_estimate <= MAX_CATEGORIES):
            needs.counts.add(name)  # unseen categories are a quality check even when drift is not computed
        if plan.status != "pending":
            continue
        for method in (plan.method, plan.effect):
            if method is None:
                continue
            need = method.needs_for(p.column.type, p.reference_distinct)
            if need == "counts":
                needs.counts.add(name)
            elif need == "bins":
                needs.bins.add((name, method.sturges_basis))
            elif method.exact_only or max(
                p.reference_count, p.current_count
            ) <= model.drift.exact_max_rows:
                needs.exact_cdf.add(name)
            else:
                needs.fine_cdf.add(name)
    needs.fine_cdf -= needs.exact_cdf
    return needs


def unsettled_by_bins(plans: dict[str, ColumnPlan], summaries: Summaries) -> set[str]:
    """Columns whose ECDF statistics came from equal-width bins that cannot settle their verdict.

    Normed Wasserstein has a rigorous bound on its binning error
    (`w1_binning_error_bound`): if the interval it allows around the score does not contain the
    threshold, no refinement could change the verdict. Other ECDF methods have no bound: refined always.
    """
    out = set()
    for name, (edges, ref, cur) in summaries.fine.items():
        plan = plans.get(name)
        if plan is None:  # summarised by another pass (the window states) for columns planned apart
            continue
        for method, threshold in ((plan.method, plan.threshold), (plan.effect, plan.effect_threshold)):
            if method is None or threshold is None or method.needs_for(plan.profile.column.type, plan.profile.reference_distinct) != "cdf":
                continue
            if method.name != "wasserstein":
                out.add(name)
                continue
            stats = summaries.cdf[name]
            scale = max(stats.ref_std, MIN_NORM)
            score, slack = stats.w1 / scale, w1_binning_error_bound(edges, ref, cur) / scale
            if score - slack <= threshold <= score + slack:
                out.add(name)
    return out


def _summary(method: DriftMethod, plan: ColumnPlan, summaries: Summaries) -> Any:
    need = method.needs_for(plan.profile.column.type, plan.profile.reference_distinct)
    name = plan.profile.column.name
    if need == "bins":
        return summaries.bins[(name, method.sturges_basis)]
    return {"counts": summaries.counts, "cdf": summaries.cdf}[need][name]


def score_columns(model: ModelSpec, plans: dict[str, ColumnPlan], summaries: Summaries) -> DriftOutcome:
    """Scores, correction, effect sizes and the dataset verdict."""
    rows: list[DriftRow] = []
    for plan in plans.values():
        p = plan.profile
        row = DriftRow(
            column=p.column.name, role=p.column.role, column_type=p.column.type.value,
            method=plan.method.name, threshold=plan.threshold, status=plan.status,
            effect_method=plan.effect.name if plan.effect else "", effect_threshold=plan.effect_threshold,
            reference_rows=p.reference_count, current_rows=p.current_count, error=plan.error,
        )
        rows.append(row)
        if plan.status != "pending":
            continue
        try:
            score: DriftScore = plan.method(_summary(plan.method, plan, summaries), plan.threshold)
            row.statistic, row.p_value, row.score, row.drifted = score.statistic, score.p_value, score.score, score.drifted
            row.exact = summaries.cdf[p.column.name].exact if p.column.name in summaries.cdf else True
            if plan.effect is not None and plan.effect_threshold is not None:
                effect = plan.effect(_summary(plan.effect, plan, summaries), plan.effect_threshold)
                row.effect_size = effect.score
            row.status = "ok"
        except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
            row.status, row.error = "error", f"{type(exc).__name__}: {exc}"
    _correct(model, rows)
    for row in rows:
        if row.status != "ok":
            row.drifted = False
            continue
        if row.effect_size is not None and row.effect_threshold is not None:
            row.drifted = row.drifted and row.effect_size >= row.effect_threshold
        row.status = "drifted" if row.drifted else "ok"
    return DriftOutcome(rows, _dataset(model, rows))


def _correct(model: ModelSpec, rows: list[DriftRow]) -> None:
    """Adjust the p-values of the model's features together; prediction and target stand alone."""
    tested = [r for r in rows if r.role == "feature" and r.status == "ok" and r.p_value is not None]
    if model.drift.correction == "none" or not tested:
        for r in rows:
            r.adjusted_p_value = r.p_value
        return
    adjusted = adjust_p_values([r.p_value for r in tested], model.drift.correction)  # type: ignore[misc]
    for r, adj in zip(tested, adjusted, strict=True):
        r.adjusted_p_value = adj
        r.drifted = adj < r.threshold
    for r in rows:
        if r not in tested:
            r.adjusted_p_value = r.p_value


def _dataset(model: ModelSpec, rows: list[DriftRow]) -> DatasetDrift:
    features = [r for r in rows if r.role == "feature"]
    judged = [r for r in features if r.status in ("ok", "drifted")]
    threshold = model.drift.share
    if not judged:
        statuses = {r.status for r in features}
        status = "no_data" if statuses == {"no_data"} else "no_reference" if "no_reference" in statuses else "insufficient_data"
        return DatasetDrift(None, 0, len(features), threshold, False, status)
    drifted = sum(r.drifted for r in judged)
    share = drifted / len(judged)
    is_drifted = share >= threshold
    return DatasetDrift(share, drifted, len(judged), threshold, is_drifted, "drifted" if is_drifted else "ok")
