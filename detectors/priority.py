"""Detection yields the CPU to ingest: the detector workers' queries run at a lower priority.

Why: on the embedded default, `up` runs the collector and the detectors in
one process on the same cores. A detection is batch work that can wait a
few seconds; ingest cannot, or every event's lag grows while a window is
judged (the 30-minute soak measured lag p99 of 6.6-9.9 s, detector runs
of 12-15 s at p95 taking both cores). So each detector worker's client asks
ClickHouse to run its queries at Linux nice `background_nice`
(`os_threads_nice_value_query`): ClickHouse sets it on every thread of the
query and restores it when the thread leaves the query, so the engine's
shared threads serve the collector's inserts at full priority afterwards.

ClickHouse applies that setting only with CAP_SYS_NICE (root has it; a
container usually does not). Without it, the embedded engine's detection
queries are held to one thread instead (`max_threads = 1`), so at least one
core stays free for ingest. On a ClickHouse server the setting is sent
with each query and the server decides; the server's cores are not this
process's to cap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from driftline.config import Settings
from driftline.store import connect

log = logging.getLogger(__name__)

CAP_SYS_NICE = 23
"""The capability's bit in /proc/<pid>/status CapEff (linux/capability.h)."""


def can_renice(status: Path = Path("/proc/self/status")) -> bool:
    """Whether this process holds CAP_SYS_NICE, without which ClickHouse ignores a query's nice value."""
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def background_settings(nice: int, *, embedded: bool, renice: bool) -> dict[str, int]:
    """The session settings that put a detector client's queries behind ingest (empty when `nice` is 0)."""
    if nice <= 0:
        return {}
    if renice or not embedded:
        return {"os_threads_nice_value_query": nice}
    return {"max_threads": 1}


def yield_to_ingest(client: Client, nice: int, *, embedded: bool) -> dict[str, int]:
    """Apply `background_settings` to `client` for all its later queries; returns what was applied."""
    settings = background_settings(nice, embedded=embedded, renice=can_renice())
    for key, value in settings.items():
        if embedded:  # the chDB handle keeps session state: SET once, as a server session would
            client.command(f"SET {key} = {int(value)}")
        else:
            client.set_client_setting(key, value)
    if settings:
        log.debug("detector queries run behind ingest", extra={"settings": settings})
    return settings


def detector_clients(settings: Settings) -> Callable[[], Client]:
    """The detector workers' client factory: a store client whose queries run behind ingest (`background_nice`)."""
    def new_client() -> Client:
        client = connect(settings)
        yield_to_ingest(client, settings.background_nice, embedded=settings.is_embedded)
        return client
    return new_client
