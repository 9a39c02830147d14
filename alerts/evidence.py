"""How far each drifted feature moved, in the words and the picture an owner reads at a glance.

Why: a p-value says how sure the test is, not how far a feature went; with thousands of rows a trivial
shift gets p < 0.001. Owners asked "how far did it move", so each drifted feature in a firing email
carries effect sizes (numeric: the mean's shift in reference standard deviations, the KS statistic, the
Wasserstein distance normed by the reference's standard deviation; categorical: the categories whose
share changed most) and a small reference-versus-current histogram. All from one bounded, deterministic
sample of the window and its reference (detectors/sample.py), the one Evidently's report is drawn from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from clickhouse_connect.driver.client import Client
from scipy import stats

from alerts.histogram_png import bar_pairs
from detectors.config import ModelSpec
from detectors.sample import sample_frames
from detectors.sources import Window
from detectors.summaries import ColumnType

NUMERIC_BINS = 12
TOP_CATEGORIES = 7  # more are drawn as one "other" bar


@dataclass(frozen=True)
class FeatureEvidence:
    name: str
    effects: tuple[str, ...]  # e.g. "mean +1.3 reference SDs (41.2 to 96.0)"
    bins: str  # what the bars are: "12 bins from 0.5 to 410" or "DE, FR, US, other"
    png: bytes | None  # None: a side had no values to draw
    content_id: str  # the inline image's Content-ID (without angle brackets)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _numeric(name: str, ref: pd.Series, cur: pd.Series, cid: str) -> FeatureEvidence:
    ref, cur = pd.to_numeric(ref, errors="coerce").dropna(), pd.to_numeric(cur, errors="coerce").dropna()
    if ref.empty or cur.empty:
        return FeatureEvidence(name, ("no values on one side to compare",), "", None, cid)
    sd = float(ref.std(ddof=1)) if len(ref) > 1 else 0.0
    effects = []
    shift = float(cur.mean() - ref.mean())
    if sd > 0:
        effects.append(f"mean {'+' if shift >= 0 else '-'}{_fmt(abs(shift) / sd)} reference SDs "
                       f"({_fmt(float(ref.mean()))} to {_fmt(float(cur.mean()))})")
    else:
        effects.append(f"mean {_fmt(float(ref.mean()))} to {_fmt(float(cur.mean()))} (the reference is constant)")
    effects.append(f"KS statistic {_fmt(float(stats.ks_2samp(ref, cur).statistic))}")
    if sd > 0:
        effects.append(f"normed Wasserstein {_fmt(float(stats.wasserstein_distance(ref, cur)) / sd)}")
    pooled = np.concatenate([ref.to_numpy(float), cur.to_numpy(float)])
    low, high = (float(v) for v in np.quantile(pooled, [0.01, 0.99]))
    if high <= low:
        low, high = float(pooled.min()), float(pooled.max()) + 1e-9
    edges = np.linspace(low, high, NUMERIC_BINS + 1)
    shares = [np.histogram(np.clip(side.to_numpy(float), low, high), bins=edges)[0] / len(side) for side in (ref, cur)]
    return FeatureEvidence(name, tuple(effects), f"{NUMERIC_BINS} bins from {_fmt(low)} to {_fmt(high)}",
                           bar_pairs(list(shares[0]), list(shares[1])), cid)


def _categorical(name: str, ref: pd.Series, cur: pd.Series, cid: str) -> FeatureEvidence:
    ref, cur = ref.dropna().astype(str), cur.dropna().astype(str)
    if ref.empty or cur.empty:
        return FeatureEvidence(name, ("no values on one side to compare",), "", None, cid)
    ref_share, cur_share = ref.value_counts(normalize=True), cur.value_counts(normalize=True)
    categories = sorted(set(ref_share.index) | set(cur_share.index))
    change = {c: float(cur_share.get(c, 0.0)) - float(ref_share.get(c, 0.0)) for c in categories}
    moved = sorted(categories, key=lambda c: (-abs(change[c]), c))[:3]
    effects = tuple(f"share of {c!r} {ref_share.get(c, 0.0):.0%} to {cur_share.get(c, 0.0):.0%}" for c in moved
                    if abs(change[c]) >= 0.005) or ("no category's share moved by half a point",)
    shown = sorted(categories, key=lambda c: (-(ref_share.get(c, 0.0) + cur_share.get(c, 0.0)), c))[:TOP_CATEGORIES]
    bars = [[float(s.get(c, 0.0)) for c in shown] for s in (ref_share, cur_share)]
    labels = list(shown)
    if len(categories) > len(shown):
        bars = [b + [max(0.0, 1.0 - sum(b))] for b in bars]
        labels.append("other")
    return FeatureEvidence(name, effects, ", ".join(labels), bar_pairs(bars[0], bars[1]), cid)


def feature_evidence(client: Client, model: ModelSpec, window: Window, names: Sequence[str],
                     sample_rows: int = 5000) -> dict[str, FeatureEvidence]:
    """Evidence per drifted feature in `names` (those the registry declares), from one sample of each side."""
    declared = [n for n in names if n in model.features]
    if not declared:
        return {}
    reference, current = sample_frames(client, model, window, sample_rows, prediction=False)
    out = {}
    for i, name in enumerate(declared):
        cid = f"histogram-{i}@driftline"
        kind = model.features[name].type
        make = _numeric if kind == ColumnType.NUMERIC else _categorical
        out[name] = make(name, reference.get(name, pd.Series(dtype=object)),
                         current.get(name, pd.Series(dtype=object)), cid)
    return out
