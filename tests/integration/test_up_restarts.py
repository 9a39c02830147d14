"""`driftline up` on the embedded default, stopped and killed: its local broker never outlives it.

A SIGKILLed parent used to leave tansu running and holding the port, so the next `up` on the folder
failed with "port in use". Now the broker dies with `up` (Linux parent-death signal) and, should one
survive anyway (another OS, a broker started by an older version), the next `up` finds it through the
pid file in the data folder and stops it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collector.local_broker import PID_FILE, _listening, broker_binary, free_port
from tests.conftest import clean_env

pytestmark = pytest.mark.integration


def start_up(cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`driftline up` in `cwd`, its log appended to up.log; returns once the banner is printed."""
    with open(cwd / "up.log", "ab") as log:
        up = subprocess.Popen([sys.executable, "-m", "driftline.cli", "up"], cwd=cwd, env=env,
                              stdout=subprocess.PIPE, stderr=log)
    line = up.stdout.readline().decode()  # type: ignore[union-attr]
    assert line.startswith("Driftline is up."), (line, (cwd / "up.log").read_text()[-3000:])
    return up


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, dead but not yet reaped by its parent, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def up_env(port: int, **extra: object) -> dict[str, str]:
    return clean_env(local_broker_port=port, kafka_session_timeout_ms=6000, kafka_max_poll_interval_ms=10000,
                     api_port=free_port(), **extra)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_sigkilled_up_takes_its_broker_with_it_and_the_next_up_starts(tmp_path: Path) -> None:
    port = free_port()
    env = up_env(port)
    up = start_up(tmp_path, env)
    pid_file = tmp_path / "driftline-data" / PID_FILE
    broker_pid = json.loads(pid_file.read_text())["pid"]
    assert alive(broker_pid)
    up.send_signal(signal.SIGKILL)
    up.wait(timeout=30)
    assert wait_gone(broker_pid), "the local broker outlived its SIGKILLed parent"
    again = start_up(tmp_path, env)  # the port is free again: no "port in use"
    again.send_signal(signal.SIGTERM)
    assert again.wait(timeout=60) == 0
    assert not pid_file.exists(), "a clean stop removes the pid file with the broker"


@pytest.mark.slow
def test_up_stops_an_orphaned_broker_it_started_and_says_so(tmp_path: Path) -> None:
    """A broker that survived its `up` (simulated: started without the parent-death signal) is stopped."""
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    orphan = subprocess.Popen([str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
                               "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        data = tmp_path / "driftline-data"
        data.mkdir()
        (data / PID_FILE).write_text(json.dumps({"pid": orphan.pid, "host": "127.0.0.1", "port": port}))
        deadline = time.monotonic() + 15
        while not _listening("127.0.0.1", port):
            assert time.monotonic() < deadline and orphan.poll() is None
            time.sleep(0.1)
        up = start_up(tmp_path, up_env(port))
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 0
        log = (tmp_path / "up.log").read_text()
        assert "stopped a local broker left running by an earlier `up`" in log
        assert str(orphan.pid) in log
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_a_pid_file_naming_another_program_is_not_obeyed(tmp_path: Path) -> None:
    """The pid file alone never kills: a reused pid that is not tansu on this port is left alone."""
    from collector.local_broker import reap_orphan

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = tmp_path / PID_FILE
        pid_file.write_text(json.dumps({"pid": other.pid, "host": "127.0.0.1", "port": 1}))
        assert reap_orphan(pid_file, "127.0.0.1", 1) is None
        assert other.poll() is None
        assert not pid_file.exists()
    finally:
        other.kill()
        other.wait()
