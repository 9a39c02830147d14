"""`driftline report`: Evidently's HTML drift report for a model and window, for ML owners.

Evidently needs the rows in pandas, so the report works on a bounded,
deterministic sample of each side (`detectors/sample.py`): the same window
always gives the same report. The verdicts Driftline stores
come from the full window (`drift_results`). So that the report agrees with
them, Evidently is given each feature's stored method and threshold and the
model's dataset share, and the page opens with Driftline's own verdict: an
owner who reads "critical" in the email must not read "not detected" below
it without being told why (a sample, a multiple-testing correction or an
effect-size gate are what can still make them differ).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass
from datetime import timedelta, timezone
from pathlib import Path

from clickhouse_connect.driver.client import Client

from detectors.config import ModelSpec
from detectors.schedule import last_complete_window
from detectors.sample import sample_frames
from detectors.sources import TS, Window
from detectors.summaries import ColumnType


def warm_up() -> None:
    """Import Evidently ahead of the first report (about 3 s), so the first alert email is not late by that much."""
    import evidently.presets  # noqa: F401


class NothingToReport(ValueError):
    """A side of the report has no rows: `side` is "reference" or "current window"."""

    def __init__(self, model: str, side: str, window: Window) -> None:
        super().__init__(f"model {model!r}: the {side} has no rows for {window}; nothing to report")
        self.model, self.side, self.window = model, side, window


def report_window(model: ModelSpec, start: dt.datetime | None, end: dt.datetime | None,
                  now: dt.datetime | None = None) -> Window:
    """[start, end), or the model's latest complete drift window when neither is given."""
    if start is not None and end is not None:
        return Window(start, end)
    return last_complete_window(model, "drift", now or dt.datetime.now(timezone.utc), timedelta(0))


def render_report(client: Client, model: ModelSpec, window: Window, *, sample_rows: int = 50_000) -> str:
    """The report of `window` as one self-contained HTML page (charts included, nothing fetched).

    Raises NothingToReport when a side has no rows, ValueError for a bad sample size. Takes seconds
    (Evidently's import alone is about 3 s the first time): call it off the event loop.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    reference, current = sample_frames(client, model, window, sample_rows)
    if reference.empty or current.empty:
        raise NothingToReport(model.name, "reference" if reference.empty else "current window", window)
    numeric = [n for n, f in model.features.items() if f.type is ColumnType.NUMERIC]
    categorical = [n for n, f in model.features.items() if f.type is ColumnType.CATEGORICAL]
    prediction = [c for c in reference.columns if c not in model.features]
    if prediction and (reference[prediction[0]].isna().all() or current[prediction[0]].isna().all()):
        # A reference uploaded without the model's output: report the features only.
        reference, current = reference.drop(columns=prediction), current.drop(columns=prediction)
        prediction = []
    if prediction:
        (numeric if reference[prediction[0]].dtype.kind == "f" else categorical).append(prediction[0])
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    verdict = stored_verdict(client, model, window)
    judged = [c for c in verdict.methods if c in reference.columns] or list(model.features)
    preset = DataDriftPreset(columns=judged, drift_share=model.drift.share,
                             per_column_method={c: m for c, m in verdict.methods.items() if c in judged} or None,
                             per_column_threshold={c: t for c, t in verdict.thresholds.items() if c in judged} or None)
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
        name=f"{model.name} {window}",
    )
    page = escape_embedded_data(snapshot.get_html_str(as_iframe=False))
    return with_banner(page, verdict.banner(model, len(reference), len(current)))


@dataclass
class StoredVerdict:
    """The detector's verdict on a window: the dataset row and each judged feature's method and threshold."""

    status: str | None
    drifted: int
    judged: int
    methods: dict[str, str]
    thresholds: dict[str, float]

    def banner(self, model: ModelSpec, reference_rows: int, current_rows: int) -> str:
        share = f"the model's dataset threshold: a share of {model.drift.share:g} of its features"
        if self.status is None:
            said = "Driftline has not judged this window yet"
        elif self.status in ("ok", "drifted"):
            said = (f"Driftline's verdict on this window: dataset drift {'DETECTED' if self.status == 'drifted' else 'not detected'}"
                    f", {self.drifted} of {self.judged} features drifted ({share})")
        else:
            said = f"Driftline's verdict on this window: {self.status.replace('_', ' ')} ({share})"
        return (f"{said}. Below, Evidently recomputes it with the same methods and thresholds on samples of "
                f"{reference_rows} reference and {current_rows} current rows; the verdict above comes from every row, "
                "with any multiple-testing correction or effect-size gate the model sets, and is the one alerts use.")


def stored_verdict(client: Client, model: ModelSpec, window: Window) -> StoredVerdict:
    rows = client.query(
        f"SELECT column, column_role, method, threshold, status, drifted FROM drift_results FINAL "
        f"WHERE model = {{m:String}} AND segment = '' AND window_start = {{s:{TS}}} AND window_end = {{e:{TS}}}",
        parameters={"m": model.name, "s": window.start, "e": window.end}).result_rows
    features = [r for r in rows if r[1] == "feature" and r[4] in ("ok", "drifted")]
    dataset = next((r for r in rows if r[1] == "dataset"), None)
    return StoredVerdict(status=str(dataset[4]) if dataset else None, drifted=sum(int(r[5]) for r in features),
                         judged=len(features), methods={str(r[0]): str(r[2]) for r in features},
                         thresholds={str(r[0]): float(r[3]) for r in features})


def with_banner(page: str, text: str) -> str:
    """`page` with `text` (escaped) as a bar at the top of its body."""
    bar = (f'<div role="note" style="font:14px sans-serif;padding:10px 16px;background:#fff4e5;'
           f'border-bottom:1px solid #e0a040">{html.escape(text)}</div>')
    found = re.search(r"<body[^>]*>", page)
    return page[: found.end()] + bar + page[found.end():] if found else bar + page


# Evidently's page holds its data as two JavaScript assignments, one line each (JSON has no raw line breaks):
# `var metric_<32 hex> = {...};` and `var additional_graphs_metric_<32 hex> = {...};`.
_DATA_LINE = re.compile(r"^(\s*var (?:additional_graphs_)?metric_[0-9a-f]{32} = )(.*;)$", re.M)
_SCRIPT_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                                "\u2028": "\\u2028", "\u2029": "\\u2029"})


def escape_embedded_data(page: str) -> str:
    """The page with every `<`, `>`, `&`, U+2028 and U+2029 of its embedded data written as a JSON escape.

    Evidently puts the sampled values (category values come straight from events) as raw JSON inside a
    script element, where a value holding `</script><script>...` would end the element and run as code
    under Driftline's origin. The escapes mean the same string to JavaScript and cannot close an element.
    A page whose data lines are not where this expects them is refused rather than served unescaped.
    """
    escaped, found = _DATA_LINE.subn(lambda m: m.group(1) + m.group(2).translate(_SCRIPT_UNSAFE), page)
    if found != 2:
        raise RuntimeError(f"the report's embedded data was not found as expected ({found} of 2 lines): "
                           "this Evidently version's page layout is not supported")
    return escaped


def write_report(client: Client, model: ModelSpec, *, start: dt.datetime | None, end: dt.datetime | None,
                 out: Path, sample_rows: int = 50_000) -> Path:
    """Render the report to `out` (HTML). Raises ValueError (NothingToReport) when a side has no rows."""
    html = render_report(client, model, report_window(model, start, end), sample_rows=sample_rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
