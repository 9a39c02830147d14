"""Running `driftline collect` as a real subprocess on its own chDB folder, and reading it back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from driftline.config import Settings
from tests.conftest import driftline_env


class CollectorProcess:
    def __init__(self, settings: Settings, store: Path, log_path: Path, **extra: object) -> None:
        self.env = driftline_env(settings.model_copy(update={"clickhouse_url": f"chdb:{store}"}), **extra)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "CollectorProcess":
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "driftline.cli", "collect"], env=self.env,
                                     stdout=log, stderr=log)
        return self

    def log_lines(self) -> list[dict]:
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            out = []
            for line in f.read().decode("utf-8", "replace").splitlines():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
            return out

    def wait_for(self, message: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(l.get("msg") == message for l in self.log_lines()):
                return True
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self, timeout: float) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds to exit)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started


def group_caught_up(settings: Settings) -> bool:
    """True when the group's committed Kafka offsets reach the end of every partition."""
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    try:
        parts = [TopicPartition(t, p) for t in settings.topics.values() for p in (consumer.partitions_for_topic(t) or ())]
        ends = consumer.end_offsets(parts)
        committed = admin.list_group_offsets({settings.consumer_group: parts})[settings.consumer_group]
        return all(ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in parts)
    finally:
        consumer.close()
        admin.close()
