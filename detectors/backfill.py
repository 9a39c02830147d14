"""One-off detection and backfills: `driftline detect`.

Without a range, each model's latest complete window is detected. With
`--start/--end`, every aligned window overlapping the range is (re)computed
from the raw rows kept in ClickHouse, replacing earlier results: the way to
apply a configuration change to history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from datetime import timedelta, timezone

from clickhouse_connect.driver.client import Client

from detectors.config import ModelSpec
from detectors.run import STAGES, RunResult, run_stage
from detectors.schedule import last_complete_window, windows_between
from detectors.sources import Window
from driftline.progress import Progress


def planned_windows(model: ModelSpec, stage: str, *, start: dt.datetime | None, end: dt.datetime | None,
                    now: dt.datetime, grace: timedelta) -> list[Window]:
    if start is None or end is None:
        return [last_complete_window(model, stage, now, grace)]
    return list(windows_between(start, end, model.window))


def detect(client: Client, models: Sequence[ModelSpec], *, stages: Sequence[str] = STAGES,
           start: dt.datetime | None = None, end: dt.datetime | None = None, grace: timedelta = timedelta(0),
           trigger: str = "manual", show_progress: bool = True) -> list[RunResult]:
    """Run `stages` for `models` over the planned windows, oldest first, with a progress bar."""
    now = dt.datetime.now(timezone.utc)
    plan = [(m, s, w) for m in models for s in stages
            for w in planned_windows(m, s, start=start, end=end, now=now, grace=grace)]
    progress = Progress(len(plan), "detect") if show_progress else None
    results = []
    for model, stage, window in plan:
        result = run_stage(client, model, window, stage, trigger=trigger)
        results.append(result)
        if progress is not None:
            progress.advance(f"{model.name} {stage} {window.start:%Y-%m-%d %H:%M} {result.status}")
    return results
