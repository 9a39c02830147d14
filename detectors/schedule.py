"""When detection runs: per-model APScheduler jobs that catch up every window they missed.

Windows are aligned to multiples of the model's window length since the Unix
epoch (hourly windows start on the hour). Each tick of a model's job runs, in
time order, every complete window of each stage that has no finished run yet,
looking back at most `catchup_windows` windows: after downtime the missed
windows are computed, and a window that failed is retried on the next tick.
A model's job never overlaps itself (max_instances=1) and a failing model only
records its failure.

Several workers split the models by shard (`detectors/shard.py`): each
schedules only its own. Before running a tick's due windows a worker claims
them (`detectors/claims.py`) and runs only those it won, so even two workers
given the same shard never judge one window twice.

After a tick's windows, the model's labelled stream goes through the concept
drift detectors (`detectors/concept_drift.py`), before the alert evaluation,
so a firing is seen by the same tick's alerts. The stream is not claimed: two
workers given the same shard would process the same rows to the same state
and the same firings (written over each other), only twice the work.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta, timezone

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from clickhouse_connect.driver.client import Client

from detectors.claims import WindowClaims, new_worker_id
from detectors.concept_drift import run_recorded
from detectors.config import VERSION_SEPARATOR, ModelSpec, Registry
from detectors.run import RunResult, run_stage
from detectors.shard import Shard
from detectors.sources import TS, Window
from driftline import metrics
from driftline.timestamps import as_utc

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=timezone.utc)
DONE = ("ok", "no_data")
"""Run statuses that finish a window; `error` and `insufficient_data` (labels still coming) are retried."""


def window_containing(t: dt.datetime, length: timedelta) -> Window:
    start = EPOCH + ((t - EPOCH) // length) * length
    return Window(start, start + length)


def windows_between(start: dt.datetime, end: dt.datetime, length: timedelta) -> Iterator[Window]:
    """Aligned windows that overlap [start, end)."""
    w = window_containing(start, length)
    while w.start < end:
        yield w
        w = Window(w.end, w.end + length)


def stage_horizon(model: ModelSpec, stage: str, now: dt.datetime, grace: timedelta) -> dt.datetime:
    """Windows ending at or before this instant are complete for `stage`."""
    delay = model.label_delay if stage == "performance" else timedelta(0)
    return now - grace - delay


def last_complete_window(model: ModelSpec, stage: str, now: dt.datetime, grace: timedelta) -> Window:
    """The latest aligned window that is over (plus grace, plus the label delay for performance)."""
    horizon = stage_horizon(model, stage, now, grace)
    last = window_containing(horizon, model.window)
    return last if last.end <= horizon else Window(last.start - model.window, last.start)


def due_windows(client: Client, model: ModelSpec, stage: str, now: dt.datetime, *, grace: timedelta,
                catchup_windows: int) -> list[Window]:
    """Complete windows of the look-back with no finished run of this stage, oldest first.

    A finished performance window is due again when labels for it were ingested after its last
    finished run started: late labels keep arriving after a first verdict, and the verdict must
    count them (recomputing replaces the window's results).
    """
    last = last_complete_window(model, stage, now, grace)
    first_start = last.start - model.window * (catchup_windows - 1)
    candidates = list(windows_between(first_start, last.end, model.window))
    window_ms = int(model.window.total_seconds() * 1000)
    finished = {
        as_utc(start): as_utc(started)
        for start, started in client.query(
            f"SELECT window_start, max(started_at) FROM detector_runs WHERE model = {{m:String}} "
            f"AND stage = {{st:String}} AND status IN {{done:Array(String)}} AND window_start >= {{s:{TS}}} "
            f"AND dateDiff('millisecond', window_start, window_end) = {{len:Int64}} GROUP BY window_start",
            parameters={"m": model.name, "st": stage, "s": first_start, "done": list(DONE), "len": window_ms},
        ).result_rows
    }
    if stage == "performance" and finished:
        finished = {start: started for start, started in finished.items()
                    if start not in _relabelled(client, model, finished)}
    return [w for w in candidates if w.start not in finished]


def _relabelled(client: Client, model: ModelSpec, finished: dict[dt.datetime, dt.datetime]) -> set[dt.datetime]:
    """Finished windows with a prediction whose label was ingested after that window's last run started.

    Matched by event_id, as the performance stage joins: a label's own ts says when it was sent, not which
    window it belongs to (one sent days late belongs to its prediction's window). Labels past a window's
    horizon count too: the rerun counts them as past the horizon. The labels read are only those ingested
    since the oldest finished run (the right side of the join); predictions are read for the look-back only.
    """
    starts = sorted(finished)
    length_ms = int(model.window.total_seconds() * 1000)
    rows = client.query(
        f"SELECT intDiv(toUnixTimestamp64Milli(p.ts), {{len:Int64}}) * {{len:Int64}} AS w, max(l.latest) "
        f"FROM predictions AS p INNER JOIN (SELECT event_id, max(ingested_at) AS latest FROM labels "
        f"WHERE model = {{m:String}} AND ts >= {{lo:{TS}}} AND ingested_at > {{since:{TS}}} GROUP BY event_id) AS l "
        f"ON l.event_id = p.event_id "
        f"WHERE p.model = {{m:String}} AND p.ts >= {{lo:{TS}}} AND p.ts < {{hi:{TS}}} GROUP BY w",
        parameters={"m": model.name, "lo": starts[0], "hi": starts[-1] + model.window,
                    "since": min(finished.values()), "len": length_ms},
    ).result_rows
    out = set()
    for w_ms, latest in rows:
        start = EPOCH + dt.timedelta(milliseconds=int(w_ms))
        if start in finished and as_utc(latest) > finished[start]:
            out.add(start)
    return out


class DetectorScheduler:
    """One job per model of this worker's shard; `client_factory` gives each worker thread its own store client."""

    def __init__(self, registry: Registry, client_factory: Callable[[], Client], *, grace: timedelta,
                 catchup_windows: int, workers: int = 2,
                 on_result: Callable[[RunResult], None] | None = None,
                 after_tick: Callable[[ModelSpec, Client], None] | None = None,
                 shard: Shard = Shard(), claim_settle: timedelta = timedelta(seconds=0.5),
                 claim_lease: timedelta = timedelta(minutes=5), worker_id: str | None = None) -> None:
        self.registry = registry
        self.shard = shard
        self.claims = WindowClaims(worker_id or new_worker_id(),
                                   settle=claim_settle, lease=claim_lease)
        self.lost_claims = 0  # windows another worker had claimed first (a misconfiguration if it grows)
        self._client_factory = client_factory
        self._local = threading.local()
        self.grace = grace
        self.catchup_windows = catchup_windows
        self.on_result = on_result
        self.after_tick = after_tick  # e.g. the alert evaluation of the model, on this thread's client
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=timezone.utc,
        )

    def _client(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client_factory()
        return client

    def tick(self, model: ModelSpec, now: dt.datetime | None = None) -> list[RunResult]:
        """Run every due window of both stages for `model`."""
        now = now or dt.datetime.now(timezone.utc)
        client = self._client()
        results = []
        due: dict[str, list[Window]] = {}
        for stage in ("drift", "performance"):
            try:
                due[stage] = due_windows(client, model, stage, now, grace=self.grace,
                                         catchup_windows=self.catchup_windows)
            except Exception:
                log.exception("cannot list due windows", extra={"model": model.name, "stage": stage})
        try:
            won, lost = self.claims.acquire(client, model.name, [(st, w) for st, ws in due.items() for w in ws])
        except Exception:
            log.exception("cannot claim due windows; trying again next tick", extra={"model": model.name})
            won, lost, due = set(), {}, {}
        self.lost_claims += len(lost)
        for stage, windows in due.items():
            behind = metrics.WINDOWS_BEHIND.labels(model.name, stage)
            behind.set(len(windows))
            for window in windows:
                if (stage, window) not in won:
                    continue  # another worker runs it (and records it in detector_runs)
                result = run_stage(client, model, window, stage, trigger="schedule")
                results.append(result)
                behind.dec(1 if result.status in DONE else 0)
                if self.on_result is not None:
                    self.on_result(result)
        if model.concept_drift.enabled:
            run_recorded(client, model, now=now)  # logs and records its own failure; never raises
        if self.after_tick is not None:
            try:
                self.after_tick(model, client)
            except Exception:
                log.exception("after-tick step failed", extra={"model": model.name})
        return results

    def missing_references(self) -> list[str]:
        """Models whose registry names an uploaded reference that is not in the store (their drift is `no_reference`)."""
        wanted = {(m.name, m.reference.upload) for m in self.registry.models if m.reference.upload is not None}
        if not wanted:
            return []
        present = {tuple(r) for r in self._client().query(
            "SELECT DISTINCT model, reference FROM reference_rows").result_rows}
        for model, reference in list(present):  # a per-version upload counts for its base name
            present.add((model, reference.split(VERSION_SEPARATOR, 1)[0]))
        return sorted(f"{m}/{r}" for m, r in wanted - present)

    def start(self, *, run_now: bool = True) -> None:
        self._warn_missing_references()
        self._add_jobs(run_now=run_now)
        self.scheduler.start()
        log.info("detector scheduler started", extra={"shard": str(self.shard), "models": self.models()})

    def reschedule(self, registry: Registry) -> None:
        """Switch to a reloaded registry: one job per model again, each due now; running ticks finish."""
        for job in self.scheduler.get_jobs():
            if job.id.startswith("detect:"):
                job.remove()
        self.registry = registry
        self._warn_missing_references()
        self._add_jobs(run_now=True)
        log.info("detector schedule reloaded", extra={"shard": str(self.shard), "models": self.models()})

    def models(self) -> list[str]:
        """The registry's models this worker's shard takes."""
        return [m.name for m in self.registry.models if self.shard.owns(m.name)]

    def _warn_missing_references(self) -> None:
        for missing in self.missing_references():
            model, reference = missing.split("/", 1)
            log.warning("reference not uploaded yet; drift results stay `no_reference` until it is",
                        extra={"model": model, "reference": reference,
                               "fix": f"driftline reference upload --model {model} --name {reference} FILE"})

    def _add_jobs(self, *, run_now: bool) -> None:
        for model in self.registry.models:
            if not self.shard.owns(model.name):
                continue  # another shard's worker schedules it
            spec = model.schedule_or_default
            if spec.cron is not None:
                trigger = CronTrigger.from_crontab(spec.cron, timezone=timezone.utc)
            else:
                assert spec.interval is not None
                trigger = IntervalTrigger(seconds=spec.interval.total_seconds(), timezone=timezone.utc)
            kwargs = {"next_run_time": dt.datetime.now(timezone.utc)} if run_now else {}
            self.scheduler.add_job(self.tick, trigger, args=[model], id=f"detect:{model.name}",
                                   name=f"detect {model.name}", **kwargs)

    def stop(self, wait: bool = True) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
