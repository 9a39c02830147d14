"""Issue 16, item 4: a client that sends its request slowly, or stops halfway, is cut off at the deadline.

The real server (`start_api`, uvicorn on a socket) with a 1-second read
deadline, and raw sockets playing the slow clients: half a request head,
a head trickled one byte at a time (each byte well inside any idle timeout),
a body that stops short of its Content-Length. Each connection must be
closed by the server within a few seconds; a normal request still answers.
"""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from detectors.config import Registry
from driftline.api.serve import start_api
from driftline.config import Settings

pytestmark = pytest.mark.integration

DEADLINE_S = 1.0
TOKEN = "slow-client-writer-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_after(sock: socket.socket, began: float, limit: float) -> float:
    """Seconds until the server closed `sock` (reads whatever it answers first); fails after `limit`."""
    sock.settimeout(0.2)
    while time.monotonic() - began < limit:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - began
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic() - began
    raise AssertionError(f"the server kept the connection open for {limit} s")


def test_slow_and_stalled_requests_are_cut_off_at_the_read_deadline(base_settings: Settings, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - {{name: w, sha256: {hashlib.sha256(TOKEN.encode()).hexdigest()}, "
                      "scopes: [read, write]}\n")
    port = free_port()
    settings = base_settings.model_copy(update={"api_port": port, "api_tokens_file": tokens,
                                                "api_request_read_timeout_seconds": DEADLINE_S})
    api = start_api(settings, Registry())
    try:
        cases = {
            "half a head": [b"GET /healthz HTTP/1.1\r\nHost: x\r\n"],
            "a head one byte at a time": [bytes([b]) for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40],
            "a body that stops short": [b"POST /ingest/predictions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                        + TOKEN.encode() + b"\r\nContent-Type: application/x-ndjson\r\n"
                                        b"Content-Length: 1000\r\n\r\n", b'{"event_id": "a"'],
        }
        for what, pieces in cases.items():
            with socket.create_connection(("127.0.0.1", port)) as sock:
                began = time.monotonic()
                for piece in pieces:
                    try:
                        sock.sendall(piece)
                    except (BrokenPipeError, ConnectionResetError):
                        break  # closed by the server mid-trickle
                    time.sleep(0.1 if len(pieces) > 2 else 0)  # the trickle: ~4 s to send it all
                    if time.monotonic() - began > DEADLINE_S + 2:
                        break
                seconds = closed_after(sock, began, DEADLINE_S + 4)
            assert DEADLINE_S * 0.9 <= seconds < DEADLINE_S + 3, (what, seconds)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200  # the rest goes on
    finally:
        api.stop()
