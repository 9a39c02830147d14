"""Real endpoints on 127.0.0.1 for the tests: a scripted webhook receiver, an SMTP inbox (aiosmtpd) and a recording
stand-in for Grafana's HTTP API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerts.signing import WebhookSecret, verify_webhook
from collector.local_broker import free_port

SMTP_USER = "driftline"
SMTP_PASSWORD = "s3cret-smtp-pass"


class Receiver:
    """Answers each POST with the next scripted status (`"sleep"`: answer after `sleep_s`, too late for the sender).

    Like a receiver following the Standard Webhooks advice, it verifies the signature and accepts each
    `webhook-id` once: a repeated id is answered 200 again (so the sender stops) but not accepted twice.
    A request it answers late is still processed (accepted), as a slow real endpoint would.
    """

    def __init__(self, script: list[int | str], secret: str, *, sleep_s: float = 1.5, port: int | None = None) -> None:
        self.script = list(script)
        self.secret = WebhookSecret(secret)
        self.received: list[tuple[dict[str, str], bytes, int | str]] = []
        self.accepted: list[str] = []
        self.duplicates: list[str] = []
        self.arrived = threading.Semaphore(0)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                action = receiver.script.pop(0) if receiver.script else 200
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body, action))
                receiver.arrived.release()
                if action == "sleep":
                    time.sleep(sleep_s)
                    action = 200  # too late: the sender has given up, but the work was done
                if action == 200:
                    msg_id = verify_webhook(body, dict(self.headers.items()), receiver.secret)
                    with receiver.lock:
                        if msg_id in receiver.accepted:
                            receiver.duplicates.append(msg_id)  # dropped by its idempotency key, answered 200
                        else:
                            receiver.accepted.append(msg_id)
                try:
                    self.send_response(action if isinstance(action, int) else 200)
                    if action == 302:
                        self.send_header("location", "http://127.0.0.1:1/elsewhere")
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up (timeout) or was killed

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class Inbox:
    """An aiosmtpd handler keeping every message; recipients starting with `nobody@` are refused (550)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.arrival_times: list[float] = []  # time.time() of each message

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        self.arrival_times.append(time.time())
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]  # noqa: N802
        if address.startswith("nobody@"):
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535 itself


@contextmanager
def smtp_server(inbox: Inbox, port: int | None = None, **options: object) -> Iterator[int]:
    """A real SMTP server on 127.0.0.1 (AUTH PLAIN/LOGIN offered without TLS, for tests)."""
    port = port or free_port()
    options = {"auth_require_tls": False, "auth_required": False} | options
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            **options)  # type: ignore[arg-type]
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


class FakeGrafana:
    """Records every request; `fail` maps a path prefix to the status it answers."""

    def __init__(self, fail: dict[str, int] | None = None, folder_exists: bool = False) -> None:
        self.requests: list[tuple[str, str, dict[str, str], object]] = []
        self.fail = fail or {}
        self.folder_exists = folder_exists
        grafana = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                grafana.requests.append((method, self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                for prefix, status in grafana.fail.items():
                    if self.path.startswith(prefix):
                        return self._answer(status, {"message": "scripted failure"})
                if method == "GET" and self.path == "/api/folders/driftline":
                    if grafana.folder_exists:
                        return self._answer(200, {"uid": "driftline", "title": "Driftline"})
                    return self._answer(404, {"message": "folder not found"})
                if method == "POST" and self.path == "/api/folders":
                    return self._answer(200, {"uid": body["uid"], "title": body["title"]})  # type: ignore[index]
                if method == "POST" and self.path == "/api/dashboards/db":
                    uid = body["dashboard"]["uid"]  # type: ignore[index]
                    return self._answer(200, {"status": "success", "uid": uid, "url": f"/d/{uid}/x", "version": 1})
                return self._answer(404, {"message": "not found"})

            def do_GET(self) -> None:  # noqa: N802
                self._handle("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._handle("POST")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeGrafana":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
