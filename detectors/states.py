"""Drift summaries of hour-aligned windows from the merged window states, not from raw rows.

`driftline.store.window_states` keeps per (model, hour, feature) aggregates,
built here, for the hours of the spans a detection reads, when they are new
or their rows changed (one comparison per span: a count and a fingerprint
per hour, read from the rows' Kafka positions). For a window (and a
production reference range) on hour boundaries, this module merges the hours' states into the same `ColumnProfile`s and
`Summaries` the raw passes of `detectors.aggregates` build, for the columns
whose methods allow it:

* category counts (exact): every categorical method (chisquare, z,
  jensenshannon, psi, kl_div, hellinger), and numeric columns with few values
  (their counts are keyed by the quantized value, exact for integers below
  2^MANTISSA_BITS);
* Sturges bins (psi, kl_div, jensenshannon on numeric columns), when no
  quantized bin holding values straddles a Sturges edge (then the counts are
  exact: integer-valued columns, typically); otherwise the raw path;
* fine ECDF bins for normed Wasserstein: the quantized bins themselves, with
  the rigorous `w1_binning_error_bound`; a column whose bound straddles its
  threshold is handed back to the raw path (which refines it).

KS, Anderson-Darling, Cramer-von Mises, energy distance, exact statistics
under `exact_max_rows`, Hellinger on numeric columns (bins sized by the exact
pooled distinct count) and the target (labels join late) need raw rows: the
caller runs the raw passes for those columns only. An uploaded reference is
read from `reference_rows` with the same aggregates as the states (it is
small). The states are trusted only when their event counts equal the rows
`predictions` holds for both spans (data loaded before the migration, or
deleted since, sends the detection to the raw path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from detectors.aggregates import DETECTOR_SETTINGS, FEW_VALUES, ColumnProfile, Needs, Summaries, bin_edges
from detectors.config import ModelSpec
from detectors.drift import ColumnPlan
from detectors.sources import ALL_ROWS, TS, Column, Segment, Window
from detectors.summaries import BinCounts, CategoryCounts, ColumnType, cdf_stats_from_bins
from driftline.store import window_states as ws

BUCKET = timedelta(hours=1)


@dataclass
class KeyState:
    """One feature's merged state on one side."""

    rows: int = 0
    numbers: int = 0
    min: float | None = None
    max: float | None = None
    sum: float = 0.0
    sum2: float = 0.0
    histogram: dict[float, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)

    def add(self, key: float, count: int) -> None:
        """Count a quantized value; -0.0 and 0.0 are distinct keys in ClickHouse and one here."""
        if count:
            self.histogram[key] = self.histogram.get(key, 0) + count


def _aligned(moment: datetime) -> bool:
    return moment.timestamp() % BUCKET.total_seconds() == 0


def reference_span(model: ModelSpec, window: Window) -> Window | None:
    """The production range the reference reads, or None for an uploaded reference."""
    ref = model.reference
    if ref.range is not None:
        return Window(ref.range.start, ref.range.end)
    if ref.rolling is not None:
        start = window.start - ref.rolling.offset
        return Window(start, start + (ref.rolling.length or (window.end - window.start)))
    return None


def usable(model: ModelSpec, window: Window, segment: Segment) -> str:
    """'' when the states can serve this detection, else why not (for the log)."""
    if not model.drift.window_states:
        return "disabled"
    if segment != ALL_ROWS:
        return "segment"
    span = reference_span(model, window)
    for bound in (window.start, window.end, *((span.start, span.end) if span else ())):
        if not _aligned(bound):
            return "not hour-aligned"
    return ""


def _merged(client: Client, model: ModelSpec, span: Window, keys: list[str]) -> tuple[dict[str, KeyState], int]:
    """The states of `keys` over the hours of `span`, and the rows `predictions` holds there (the guard).

    The histograms are merged by ARRAY JOIN and GROUP BY (a typed hash aggregation), not by `sumMap`:
    measured on 72 hours of 20 features, 0.76 s against 1.96 s.
    """
    params = {"m": model.name, "s": span.start, "e": span.end, "k": keys}
    where = (f"model = {{m:String}} AND bucket >= {{s:{TS}}} AND bucket < {{e:{TS}}} "
             f"AND feature IN {{k:Array(String)}}")
    scalars = [m for c, m in zip(ws.STATE_COLUMNS, ws.MERGES, strict=True) if c != "histogram"]
    rows = client.query(f"SELECT feature, {', '.join(scalars)} FROM {ws.TABLE} WHERE {where} GROUP BY feature",
                        parameters=params, settings=DETECTOR_SETTINGS).result_rows
    bins = client.query(
        f"SELECT feature, k, sum(n) FROM {ws.TABLE} ARRAY JOIN histogram.1 AS k, histogram.2 AS n "
        f"WHERE {where} GROUP BY feature, k", parameters=params, settings=DETECTOR_SETTINGS).result_columns
    stored = int(client.query(
        f"SELECT count() FROM predictions WHERE model = {{m:String}} AND ts >= {{s:{TS}}} AND ts < {{e:{TS}}}",
        parameters=params).result_rows[0][0])
    out = {}
    for r in rows:
        rows_, numbers, lo, hi, total, total2, categories = r[1:]
        out[str(r[0])] = _key_state((rows_, numbers, lo, hi, total, total2, ([], []), categories))
    if bins:
        for feature, k, n in zip(*bins, strict=True):
            if feature in out:
                out[feature].add(float(k), int(n))
    return out, stored


def _uploaded(client: Client, model: ModelSpec, keys: list[str]) -> dict[str, KeyState]:
    """The same aggregates over an uploaded reference's rows (small: read raw)."""
    aggregates = ", ".join(ws.AGGREGATES)
    pairs = ws.PAIRS
    rows = client.query(
        f"SELECT kv.1 AS feature, {aggregates} FROM reference_rows ARRAY JOIN {pairs} AS kv "
        f"WHERE model = {{m:String}} AND reference = {{r:String}} AND kv.1 IN {{k:Array(String)}} GROUP BY feature",
        parameters={"m": model.name, "r": model.reference.upload, "k": keys}, settings=DETECTOR_SETTINGS,
    ).result_rows
    return {str(r[0]): _key_state(r[1:]) for r in rows}


def _key_state(row: Any) -> KeyState:
    rows, numbers, lo, hi, total, total2, (hkeys, hcounts), (ckeys, ccounts) = row
    finite = lambda v: None if v is None or not math.isfinite(float(v)) else float(v)  # noqa: E731
    state = KeyState(int(rows), int(numbers), finite(lo), finite(hi), float(total), float(total2))
    for k, c in zip(hkeys, hcounts, strict=True):
        state.add(float(k), int(c))
    state.categories = {str(k): int(c) for k, c in zip(ckeys, ccounts, strict=True) if c}
    return state


@dataclass
class Sides:
    """Both sides' states per column name, the row counts, and the columns the states cannot serve."""

    reference: dict[str, KeyState]
    current: dict[str, KeyState]
    reference_rows: int
    current_rows: int
    unserved: set[str]


def read(client: Client, model: ModelSpec, window: Window, columns: list[Column]) -> Sides | None:
    """Both sides' merged states; None when the states do not hold every row of a span (use raw rows)."""
    keys = [ws.EVENTS_KEY] + [c.name for c in columns if c.role != "target"]
    span = reference_span(model, window)
    for side in (window, span):
        if side is not None:  # build the hours no detection has read yet, and those whose rows changed since
            ws.refresh(client, model.name, side.start, side.end)
    current, stored = _merged(client, model, window, keys)
    if current.get(ws.EVENTS_KEY, KeyState()).rows != stored:
        return None
    if span is None:
        reference = _uploaded(client, model, keys)
    else:
        reference, stored = _merged(client, model, span, keys)
        if reference.get(ws.EVENTS_KEY, KeyState()).rows != stored:
            return None
    unserved = {c.name for c in columns if c.role == "target"}
    for c in columns:
        if c.type is ColumnType.CATEGORICAL and not all(
            _exact_integer_keys(side.get(c.name, KeyState())) for side in (reference, current)
        ):
            unserved.add(c.name)  # a number sent as a category: its string needs the exact value
    return Sides(reference, current, reference.get(ws.EVENTS_KEY, KeyState()).rows,
                 current.get(ws.EVENTS_KEY, KeyState()).rows, unserved)


def _exact_integer_keys(state: KeyState) -> bool:
    """True when the quantized numbers are exact (integers below 2^MANTISSA_BITS): their strings are exact."""
    limit = 2 ** ws.MANTISSA_BITS
    return all(k == int(k) and abs(k) < limit for k in state.histogram)


def _categories(c: Column, state: KeyState) -> dict[Any, int]:
    """Category counts as the raw path keys them: strings, plus numbers as ClickHouse prints them."""
    if c.type is ColumnType.NUMERIC:
        return dict(state.histogram)
    out = dict(state.categories)
    for k, n in state.histogram.items():
        key = str(int(k))
        out[key] = out.get(key, 0) + n
    return out


def _std(state: KeyState) -> float | None:
    if state.numbers == 0:
        return None
    mean = state.sum / state.numbers
    return math.sqrt(max(state.sum2 / state.numbers - mean * mean, 0.0))


def profiles(sides: Sides, columns: list[Column]) -> dict[str, ColumnProfile]:
    """The `aggregates.profile` of the served columns, from states (distinct counts of quantized values)."""
    out: dict[str, ColumnProfile] = {}
    for c in columns:
        if c.name in sides.unserved:
            continue
        ref, cur = sides.reference.get(c.name, KeyState()), sides.current.get(c.name, KeyState())
        ref_counts, cur_counts = _categories(c, ref), _categories(c, cur)
        p = ColumnProfile(c, sides.reference_rows, sides.current_rows, sum(ref_counts.values()),
                          sum(cur_counts.values()))
        if c.type is ColumnType.NUMERIC:
            p.reference_min, p.reference_max, p.current_min, p.current_max = ref.min, ref.max, cur.min, cur.max
            p.reference_std = _std(ref)
        pooled = len(ref_counts.keys() | cur_counts.keys())
        p.reference_distinct = min(len(ref_counts), FEW_VALUES + 1)
        p.pooled_distinct = min(pooled, FEW_VALUES + 1)
        if c.type is ColumnType.CATEGORICAL:
            p.pooled_distinct_estimate = pooled
        out[c.name] = p
    return out


def needs_raw(plans: dict[str, ColumnPlan], needs: Needs) -> set[str]:
    """Served columns whose methods need raw rows after all: exact ECDF sums, Hellinger's distinct-sized bins."""
    out = set(needs.exact_cdf)
    out |= {name for name, basis in needs.bins if basis != "pooled_rows"}
    return out & set(plans)


def _intervals(histogram: dict[float, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each quantized key's bin [lo, hi] (truncation toward zero), sorted, with its count."""
    keys = np.array(sorted(histogram), dtype=float)
    counts = np.array([histogram[k] for k in keys], dtype=np.int64)
    _, exponent = np.frexp(keys)
    step = np.ldexp(1.0, exponent - 1 - ws.MANTISSA_BITS)
    lo = np.where(keys < 0, keys - step, keys)
    hi = np.where(keys < 0, keys, keys + step)
    zero = keys == 0  # exactly 0 (or a subnormal): a bin of the smallest width, so its mass stays at 0
    lo[zero], hi[zero] = 0.0, np.nextafter(0.0, 1.0)
    return lo, hi, counts


def fine_bins(ref: dict[float, int], cur: dict[float, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges and both sides' counts over the quantized bins: every value lies in the bin given its count."""
    r_lo, r_hi, r_n = _intervals(ref)
    c_lo, c_hi, c_n = _intervals(cur)
    edges = np.unique(np.concatenate([r_lo, r_hi, c_lo, c_hi]))
    if edges.size < 2:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    k = edges.size - 1
    out = []
    for lo, n in ((r_lo, r_n), (c_lo, c_n)):
        counts = np.zeros(k, dtype=np.int64)
        np.add.at(counts, np.clip(np.searchsorted(edges, lo, side="right") - 1, 0, k - 1), n)
        out.append(counts)
    return edges, out[0], out[1]


def _out_of_range(cur: dict[float, int], lo: float, hi: float) -> int:
    """Current values surely outside [lo, hi]: their whole quantized bin is (a lower bound of the raw count)."""
    if not cur:
        return 0
    b_lo, b_hi, n = _intervals(cur)
    return int(n[(b_hi < lo) | (b_lo > hi)].sum())


def _sturges_counts(histogram: dict[float, int], edges: np.ndarray) -> np.ndarray | None:
    """Counts per Sturges bin, or None when a quantized bin holding values straddles an edge (counts ambiguous)."""
    k = len(edges) - 1
    if not histogram:
        return np.zeros(k, dtype=np.int64)
    lo, hi, n = _intervals(histogram)
    inner = edges[1:-1]
    first = np.searchsorted(inner, lo, side="right")  # the bin of the interval's lower end
    if np.any(np.searchsorted(inner, hi, side="left") != first):  # an interior edge in (lo, hi]: ambiguous
        return None
    return np.bincount(first, weights=n, minlength=k).astype(np.int64)


def histograms(sides: Sides, profiles_: dict[str, ColumnProfile], needs: Needs, summaries: Summaries) -> set[str]:
    """`aggregates.histograms` from the states for the served columns; returns the columns they cannot serve.

    Evidently's Sturges bins are exact from the states only when no quantized bin straddles an edge
    (integer-valued columns, typically); otherwise the column goes to the raw path, so binned methods
    keep agreeing with Evidently to the last digit.
    """
    unserved: set[str] = set()
    for name, p in profiles_.items():
        c = p.column
        ref, cur = sides.reference.get(name, KeyState()), sides.current.get(name, KeyState())
        if name in needs.counts:
            summaries.counts[name] = CategoryCounts(_categories(c, ref), _categories(c, cur))
        for basis in sorted(b for n, b in needs.bins if n == name):
            edges = bin_edges(p, basis, {})
            counts = [_sturges_counts(side.histogram, edges) for side in (ref, cur)]
            if counts[0] is None or counts[1] is None:
                unserved.add(name)
                continue
            summaries.bins[(name, basis)] = BinCounts(edges, counts[0], counts[1])
        if name in needs.fine_cdf:
            edges, r, k_ = fine_bins(ref.histogram, cur.histogram)
            summaries.fine[name] = (edges, r, k_)
            summaries.cdf[name] = cdf_stats_from_bins(edges, r, k_, p.reference_std or 0.0)
        if c.type is ColumnType.NUMERIC and p.reference_min is not None and p.reference_max is not None:
            summaries.out_of_range[name] = _out_of_range(cur.histogram, p.reference_min, p.reference_max)
    return unserved
