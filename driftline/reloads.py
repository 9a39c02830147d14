"""Reloading a running `up` from outside it: SIGHUP, and `driftline reload` which sends it and waits.

`POST /models/reload` needs an admin token; on the host, the Prometheus and
Alertmanager convention is SIGHUP, and the right to signal the process (the
same user, or root) is the credential. `up` writes its pid to `up.pid` in its
run folder (the chDB folder on the embedded default) and, after every reload
however triggered by a signal, the outcome to `last-reload.json` there, so
`driftline reload` can say what changed or why nothing did, as the API does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from driftline.config import Settings

log = logging.getLogger(__name__)

PID_FILE = "up.pid"
OUTCOME_FILE = "last-reload.json"


class NotRunning(RuntimeError):
    """No `up` runs for this folder: its files are read when it starts."""


def run_folder(settings: Settings) -> Path:
    """Where `up` keeps its pid and reload outcome: the chDB folder, or `.driftline` beside a server store."""
    return settings.embedded_path if settings.is_embedded else Path(".driftline").resolve()


def serve_reloads(folder: Path, reload: Any) -> None:
    """Write this process's pid and reload on SIGHUP; `reload()` returns a pydantic result or raises."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / PID_FILE).write_text(json.dumps({"pid": os.getpid()}))
    busy = threading.Lock()

    def run() -> None:
        with busy:  # two signals in a row: one reload after the other, never two at once
            try:
                result = reload()
                outcome = {"ok": True, "result": result.model_dump(mode="json")}
                log.info("configuration reloaded on SIGHUP", extra={"models": outcome["result"].get("models")})
            except Exception as exc:  # a bad file: the running configuration stays, and the reason is kept
                outcome = {"ok": False, "error": f"configuration not reloaded, still running the previous one: {exc}"}
                log.warning("reload on SIGHUP refused", extra={"error": outcome["error"]})
            outcome["at"] = dt.datetime.now(dt.timezone.utc).isoformat()
            temporary = folder / (OUTCOME_FILE + ".tmp")
            temporary.write_text(json.dumps(outcome))
            temporary.replace(folder / OUTCOME_FILE)

    def handler(_signum: int, _frame: object) -> None:
        threading.Thread(target=run, name="reload", daemon=True).start()  # never block the main thread here

    signal.signal(signal.SIGHUP, handler)


def forget(folder: Path) -> None:
    """At a clean stop: no pid file left to name a process that is gone."""
    (folder / PID_FILE).unlink(missing_ok=True)


def request_reload(folder: Path, timeout: float = 60.0) -> dict[str, Any]:
    """Signal the `up` of `folder` to reload and return its outcome; NotRunning when there is none."""
    try:
        pid = int(json.loads((folder / PID_FILE).read_text())["pid"])
    except (OSError, ValueError, KeyError) as exc:
        raise NotRunning(f"no running `driftline up` found for {folder} ({type(exc).__name__}); "
                         "a service that is not running reads its files when it starts") from None
    if not _is_driftline(pid):
        raise NotRunning(f"{folder / PID_FILE} names pid {pid}, which is not a `driftline up` (a stale file from "
                         "a killed run?); not signalling it")
    outcome = folder / OUTCOME_FILE
    before = outcome.stat().st_mtime_ns if outcome.exists() else None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise NotRunning(f"the `driftline up` of {folder} (pid {pid}) is not running; it reads its files when "
                         "it starts") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outcome.exists() and outcome.stat().st_mtime_ns != before:
            try:
                return dict(json.loads(outcome.read_text()))
            except ValueError:
                pass  # replaced as we read: read again
        time.sleep(0.05)
    raise TimeoutError(f"`driftline up` (pid {pid}) did not report a reload within {timeout:.0f} s; see its log")


def _is_driftline(pid: int) -> bool:
    """Whether `pid` runs `driftline up` (Linux: its command line); SIGHUP would kill most other programs."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():
        return True  # no /proc to ask: the pid file is trusted, as kill(1) would
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"driftline" in w for w in words) and b"up" in words

