"""Opening the ClickHouse store, embedded (chDB) or server, through one client API.

Both targets speak the same SQL through clickhouse-connect, so nothing above
this module knows which one it talks to. The embedded engine belongs to one
process at a time; a second process gets `StoreInUse` with a message that
says what to do instead of a chDB stack trace.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from driftline.config import Settings

log = logging.getLogger(__name__)

_embedded_lock = threading.Lock()
_through_service = False  # see lend_through_service


def lend_through_service(allowed: bool = True) -> None:
    """Let `connect` reach an embedded folder held by a running `up` through it (driftline/store/service_link.py).

    Off by default: only the CLI's store commands turn it on; `up` itself, and anything that must own the
    folder, still gets StoreInUse.
    """
    global _through_service
    _through_service = allowed


class StoreError(RuntimeError):
    """The store could not be opened or refused an operation."""


class StoreInUse(StoreError):
    """Another process holds the embedded chDB folder."""


def connect(settings: Settings, *, database: bool = True) -> Client:
    """A new client on the configured store. Each thread that writes should hold its own."""
    db = settings.database if database else None
    if settings.is_embedded:
        path = settings.embedded_path
        path.mkdir(parents=True, exist_ok=True)
        if _through_service and _held_by_a_process(path):
            from driftline.store.service_link import open_service_client

            remote = open_service_client(path, db)
            if remote is not None:  # the operations the CLI uses, run by the `up` holding the folder
                return remote  # type: ignore[return-value]
        with _embedded_lock:
            try:
                client = clickhouse_connect.get_client(dsn=f"chdb://{path}", chdb_options=engine_options(settings))
            except Exception as exc:  # chDB reports a held folder as a generic error: ask the folder's lock
                text = str(exc)
                if _held_by_a_process(path):
                    raise StoreInUse(
                        f"the embedded ClickHouse folder {path} is in use by another process "
                        "that does not lend it (only one process may open it; a running `driftline up` lends it to "
                        "the store commands beside it): stop that process, or run a ClickHouse server for several "
                        "processes"
                    ) from None
                if "already initialized" in text:
                    raise StoreError(f"cannot open the embedded ClickHouse folder {path}: this process already "
                                     "opened another embedded folder (one per process)") from None
                raise StoreError(f"cannot open the embedded ClickHouse folder {path}: {text}") from None
        if db:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
            client.database = db
        return client
    parts = urlsplit(settings.clickhouse_url)
    password = settings.clickhouse_password()
    kwargs: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or (8443 if parts.scheme == "https" else 8123),
        "secure": parts.scheme == "https",
        "username": unquote(parts.username) if parts.username else "default",
        "password": password.get_secret_value() if password else "",
    }
    try:
        client = clickhouse_connect.get_client(**kwargs)
    except Exception as exc:
        # The driver's message may echo connection details; name the redacted URL only.
        raise StoreError(
            f"cannot reach ClickHouse at {settings.redacted_clickhouse_url()}: {type(exc).__name__}"
        ) from None
    if db:
        client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
        client.database = db
    return client


def engine_options(settings: Settings) -> dict[str, int] | None:
    """Server settings of the embedded engine, fixed when the first client of the process opens it.

    Merges are background work like detection: at `background_nice` they leave the CPU to the collector's
    inserts when both compete (the 30-minute soak's lag spikes came with merges). ClickHouse applies it only
    with CAP_SYS_NICE, as for detection (detectors/priority.py); without it the setting does nothing.
    """
    if settings.background_nice <= 0:
        return None
    return {"os_threads_nice_value_merge_mutate": settings.background_nice}


def _held_by_a_process(path: Path) -> bool:
    """Whether a running engine holds `path`: ClickHouse keeps an exclusive flock on its `status` file.

    Only this says "in use"; any other failure (permissions, a damaged folder) keeps chDB's own text.
    """
    status = path / "status"
    try:
        with status.open("rb") as held:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(held, fcntl.LOCK_UN)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False

