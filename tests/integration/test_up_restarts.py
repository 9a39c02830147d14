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


STOPS = ("SIGTERM", "SIGKILL", "SIGTERM", "SIGKILL", "SIGKILL")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
@pytest.mark.xdist_group("fault")  # on the fault suite's worker: never beside its kill scenarios (see below)
def test_up_restarted_five_times_under_a_steady_logger_stores_each_event_once_and_counts_what_it_lost(
        tmp_path: Path) -> None:
    """Two clean stops and three kills of `up` while a PredictionLogger in another process logs 100 events/s.

    A clean stop holds new events at the gate, reads the in-memory broker to its end and stops it: nothing
    is lost. A kill takes with it what the broker held that the collector had not stored; the logger cannot
    know (the broker acknowledged it), so Driftline counts it: exactly from the logger's sequence numbers,
    and as a lower bound per partition when the next `up` meets the new incarnation.

    Each stop comes while the logger is being answered by that `up`'s broker and its collector is storing:
    after a restart the logger takes some seconds to find the new broker, and the collector to join its
    group (a loaded CI machine took longer than the 4 s each `up` lived: two kills then met no traffic at
    all, and in another run a collector that had not fetched yet left its kill uncounted by log ends).
    """
    port = free_port()
    env = up_env(port)
    out, stop_file, progress = tmp_path / "logged.json", tmp_path / "stop-logging", tmp_path / "latest-ack"
    up = start_up(tmp_path, env)
    logger = subprocess.Popen([sys.executable, "-m", "tests.integration.steady_logger", f"127.0.0.1:{port}", "100",
                               str(out), str(stop_file), str(progress)], cwd=Path(__file__).resolve().parents[2])
    stops: list[tuple[str, float]] = []
    from tests.conftest import run_driftline

    def stored_now() -> int:  # through the running `up`, which lends its store to the CLI
        done = run_driftline(["db", "query", "SELECT count() FROM predictions FORMAT TSV"],
                             clean_env(clickhouse_url=f"chdb:{tmp_path / 'driftline-data'}"))
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.strip())

    try:
        for kind in STOPS:
            started, stored_before = time.time(), stored_now()
            time.sleep(4)
            deadline = time.monotonic() + 90
            while not progress.exists() or float(progress.read_text() or 0) < started + 1:
                assert time.monotonic() < deadline, "the logger got no acknowledgement from this `up`'s broker"
                time.sleep(0.1)
            while stored_now() <= stored_before:  # and its collector is storing (it may still be joining its group)
                assert time.monotonic() < deadline, "this `up`'s collector stored nothing"
            up.send_signal(getattr(signal, kind))
            assert up.wait(timeout=90) == (0 if kind == "SIGTERM" else -signal.SIGKILL), (tmp_path / "up.log").read_text()[-3000:]
            # The stop's time is when its broker stopped answering: it acknowledges nothing after that, and
            # (on a kill) kept acknowledging for some milliseconds after the signal while it died with `up`.
            deadline = time.monotonic() + 20
            while _listening("127.0.0.1", port):
                assert time.monotonic() < deadline, "the local broker outlived `up`"
                time.sleep(0.005)
            stops.append((kind, time.time()))
            up = start_up(tmp_path, env)
        time.sleep(4)
        stop_file.touch()
        assert logger.wait(timeout=120) == 0
    finally:
        stop_file.touch()
        if logger.poll() is None:
            logger.kill()
        time.sleep(3)  # the last events reach the collector before the final clean stop reads the broker out
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=90)
    logged = json.loads(out.read_text())
    assert logged["undelivered"] == 0 and not logged["errors"], logged["errors"]

    from tests.conftest import query_store, run_driftline

    store = tmp_path / "driftline-data"
    stored = {eid: int(n) for eid, n in query_store(store, "SELECT event_id, count() FROM predictions GROUP BY event_id")}
    duplicates = sum(n - 1 for n in stored.values())
    missing = [(eid, model, acked) for eid, model, _, acked in logged["events"] if eid not in stored]
    status = json.loads(run_driftline(["db", "status"], clean_env(clickhouse_url=f"chdb:{store}")).stdout)
    counted = sum(int(p["events_lost"]) for p in status["events_lost"] if p["topic"] == "predictions")
    by_sender = status["sender_sequences"]
    # A missing event was lost by the broker that acknowledged it: at the first stop (the moment its broker
    # stopped answering) after its acknowledgement.
    # (Not the stop after it was logged: events logged while `up` was down are acknowledged by the next broker.)
    per_stop = {f"{i + 1}:{kind}": 0 for i, (kind, _) in enumerate(stops)}
    for _, _, acked in missing:
        i = next((j for j, (_, at) in enumerate(stops) if at >= acked), len(stops) - 1)
        per_stop[f"{i + 1}:{stops[i][0]}"] += 1
    per_model = {m: {"logged": sum(1 for _, mm, _, _ in logged["events"] if mm == m),
                     "stored": sum(1 for eid, mm, _, _ in logged["events"] if mm == m and eid in stored)}
                 for m in ("fraud", "churn")}
    figures = {"logged": len(logged["events"]), "stored": len(stored), "duplicates": duplicates,
               "missing": len(missing), "counted_lost": counted, "counted_missing_by_sender": by_sender["events_missing"],
               "missing_per_stop": per_stop,
               "per_model": per_model, "resent_by_logger": logged["resent"],
               "producers_replaced": logged["producers_replaced"]}
    print(json.dumps(figures))
    assert duplicates == 0, figures
    assert set(stored) <= {eid for eid, _, _, _ in logged["events"]}, figures
    assert all(n == 0 for stop, n in per_stop.items() if stop.endswith("SIGTERM")), figures  # clean: nothing lost
    assert all(n > 0 for stop, n in per_stop.items() if stop.endswith("SIGKILL")), figures  # the kills did cost
    # Driftline counts the loss itself, exactly, from the logger's sequence numbers (driftline/sequences.py):
    # one sender, every event it logged and never stored.
    assert by_sender["senders"] == 1 and by_sender["events_missing"] == len(missing), figures
    # Counted from broker log ends, per partition, as for producers without sequence numbers: never more than
    # there was, and not all of it (events acknowledged after the collector's last fetch before the kill).
    assert 0 < counted <= len(missing), figures
    lost_rows = int(query_store(store, "SELECT countIf(lost > 0) FROM partition_incarnations")[0][0])
    assert lost_rows >= 3, figures  # each kill is on record as a loss


@pytest.mark.slow
def test_a_clean_stop_before_the_collector_joined_its_group_still_reads_the_broker_out(tmp_path: Path) -> None:
    """SIGTERM right after the banner: the collector has no partitions yet, and must not take that for
    "read to the end" (it did: CI seed 1619765127 lost 800 events of a stop 4 s after a restart)."""
    from driftline.producer import PredictionLogger
    from tests.conftest import query_store

    port = free_port()
    env = up_env(port)
    up = start_up(tmp_path, env)
    with PredictionLogger(f"127.0.0.1:{port}") as logger:
        ids = {logger.log_prediction("fraud", {"amount": float(i)}, i % 2) for i in range(200)}
        assert logger.flush(30) == 0
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=90) == 0
    stored = {row[0] for row in query_store(tmp_path / "driftline-data", "SELECT event_id FROM predictions")}
    assert stored == ids


@pytest.mark.slow
def test_a_sigkilled_up_takes_up_its_own_claimed_windows_at_once_after_a_restart(tmp_path: Path) -> None:
    """Issue 17, must-show 5: labels keep arriving, so the performance stage re-claims recent windows on
    every tick; the killed `up` leaves claims on them. The restarted `up` on the same host sees that their
    worker's process is gone and judges those windows on its next tick, instead of waiting out the
    300-s lease with a warning about "another detector worker"."""
    import random
    import threading

    from driftline.producer import PredictionLogger

    (tmp_path / "models.yaml").write_text(
        "models:\n  - name: restarted\n    task: binary_classification\n    features: {x: numeric}\n"
        "    reference: {rolling: {offset: 6s}}\n    window: 2s\n    label_delay: 1s\n"
        "    schedule: {interval: 1s}\n")
    port = free_port()
    env = up_env(port, detector_grace_seconds=0.5, detector_catchup_windows=10)
    stop = threading.Event()

    def traffic() -> None:
        rng = random.Random(3)
        logger = PredictionLogger(f"127.0.0.1:{port}")
        try:
            pending: list[tuple[float, str, int]] = []
            while not stop.is_set():
                try:
                    event_id = logger.log_prediction("restarted", {"x": rng.gauss(0, 1)}, rng.random() > 0.5)
                    pending.append((time.monotonic() + 1.0, event_id, int(rng.random() > 0.5)))
                    while pending and pending[0][0] <= time.monotonic():
                        _, done, label = pending.pop(0)
                        logger.log_label("restarted", done, label)
                except Exception:  # the broker is down between the kill and the restart: the logger's business
                    pass
                time.sleep(0.02)
        finally:
            try:
                logger.close(timeout=5)
            except Exception:  # what is left in its buffer is not this test's subject
                pass

    up = start_up(tmp_path, env)
    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while (tmp_path / "up.log").read_text().count('"stage": "performance"') < 6:
            assert time.monotonic() < deadline and up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.2)
        up.send_signal(signal.SIGKILL)
        up.wait(timeout=30)
        before = len((tmp_path / "up.log").read_text())
        again = start_up(tmp_path, env)
        time.sleep(12)
        after = (tmp_path / "up.log").read_text()[before:]
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
    finally:
        stop.set()
        sender.join(timeout=30)
        if up.poll() is None:
            up.kill()
    assert after.count('"stage": "performance"') >= 3, after[-3000:]
    assert "claimed by another detector worker" not in after, after[-3000:]
