"""What receives Driftline's notifications in the demo: a real SMTP server and a real webhook endpoint on 127.0.0.1.

- `SmtpCatcher` (aiosmtpd) accepts every message and writes it, as received,
  to `emails/NNN-<model>-<firing|resolved>.eml` (open it with any mail client);
- `WebhookCatcher` (the standard library's HTTP server) verifies each POST's
  Standard Webhooks signature with the demo's secret, as a retrain pipeline
  should, answers 200 (401 to a bad signature; 200 again to a repeated
  `webhook-id`, which it does not accept twice), and appends one JSON line per
  call to `webhooks.jsonl`.

Both keep what they received in memory too, for the progress view and the summary.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import re
import threading
from dataclasses import asdict, dataclass, field
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller

from alerts.signing import WebhookSecret, WebhookVerificationError, verify_webhook
from collector.local_broker import free_port

MAX_WEBHOOK_BYTES = 1 << 20
_SUBJECT = re.compile(r"^\[(?P<state>[A-Z]+)\] \w+: model (?P<model>[A-Za-z0-9_.-]+):")
_RULE_LINE = re.compile(r"^- (?P<rule>[A-Za-z0-9_][A-Za-z0-9_.-]*): ")


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class CaughtEmail:
    file: str  # relative to the demo folder
    subject: str
    model: str
    state: str  # FIRING or RESOLVED
    rules: list[str]
    to: list[str]
    received_at: str
    attachments: list[str] = field(default_factory=list)


def describe_email(raw: bytes) -> tuple[str, str, str, list[str], list[str]]:
    """(subject, model, state, rules named in the text, attachment names) of a Driftline alert email."""
    message = email.message_from_bytes(raw, policy=default_policy)
    subject = str(message.get("Subject", ""))
    match = _SUBJECT.match(subject)
    body = message.get_body(("plain",))
    text = (body.get_content() if body is not None else "").replace("\r\n", "\n")  # type: ignore[union-attr]
    # The text is "Model M (version V)", a blank line, then one "- rule: what" line (and a detail line) per
    # alert, then a blank line before the drifted features and the links.
    paragraphs = text.split("\n\n")
    notices = paragraphs[1] if len(paragraphs) > 1 else ""
    rules = [m.group("rule") for line in notices.splitlines() if (m := _RULE_LINE.match(line))]
    attachments = [a.get_filename() or "" for a in message.iter_attachments()]  # type: ignore[attr-defined]
    return (subject, match.group("model") if match else "", match.group("state") if match else "", rules,
            attachments)


class SmtpCatcher:
    """An SMTP server on 127.0.0.1:`port` (0: a free one) writing each message to `folder`."""

    def __init__(self, folder: Path, root: Path, port: int = 0) -> None:
        self.folder, self.root = folder, root
        self.port = port or free_port()
        self.emails: list[CaughtEmail] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        try:
            subject, model, state, rules, attachments = describe_email(raw)
        except Exception:  # not one of ours: keep it anyway
            subject, model, state, rules, attachments = "", "", "", [], []
        with self._lock:
            number = len(self.emails) + 1
            slug = "-".join(p for p in (model, state.lower()) if p) or "message"
            path = self.folder / f"{number:03d}-{slug}.eml"
            path.write_bytes(raw)
            self.emails.append(CaughtEmail(str(path.relative_to(self.root)), subject, model, state, rules,
                                           list(envelope.rcpt_tos), _now(), attachments))
        return "250 OK"

    def start(self) -> "SmtpCatcher":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def snapshot(self) -> list[CaughtEmail]:
        with self._lock:
            return list(self.emails)


@dataclass
class CaughtWebhook:
    received_at: str
    path: str
    webhook_id: str
    verified: bool
    accepted: bool  # verified and not a repeat of an accepted webhook-id
    model: str
    reason: str
    error: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # the three Standard Webhooks headers, as received
    body: str = ""  # the raw body, as signed: verify_webhook(body.encode(), headers, secret) checks it again
    payload: object = None

    def as_json(self) -> dict[str, object]:
        return asdict(self)


class WebhookCatcher:
    """An HTTP endpoint on 127.0.0.1:`port` (0: a free one) verifying and logging each POST to `log_path`."""

    def __init__(self, log_path: Path, secret_file: Path, port: int = 0) -> None:
        self.log_path = log_path
        self._secret_file = secret_file
        self.calls: list[CaughtWebhook] = []
        self._lock = threading.Lock()
        catcher = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                try:
                    length = int(self.headers.get("content-length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_WEBHOOK_BYTES:
                    self._answer(413)
                    return
                status = catcher.receive(self.path, dict(self.headers.items()), self.rfile.read(length))
                self._answer(status)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/retrain"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-catcher", daemon=True)

    def receive(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Verify, record and answer one call (the HTTP status)."""
        lower = {k.lower(): v for k, v in headers.items()}
        error = ""
        try:
            msg_id = verify_webhook(body, headers, WebhookSecret(self._secret_file.read_text()))
            verified = True
        except (WebhookVerificationError, ValueError, OSError) as exc:
            msg_id, verified, error = lower.get("webhook-id", ""), False, str(exc)
        try:
            payload = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")[:2000]
        inner = payload.get("client_payload", payload.get("conf", payload)) if isinstance(payload, dict) else {}
        with self._lock:
            repeat = verified and any(c.accepted and c.webhook_id == msg_id for c in self.calls)
            call = CaughtWebhook(_now(), path, msg_id, verified, verified and not repeat,
                                 str(inner.get("model", "")) if isinstance(inner, dict) else "",
                                 str(inner.get("reason", "")) if isinstance(inner, dict) else "", error,
                                 {k: v for k, v in lower.items() if k.startswith("webhook-")},
                                 body.decode("utf-8", "replace"), payload)
            self.calls.append(call)
            with self.log_path.open("a") as f:
                f.write(json.dumps(call.as_json(), separators=(",", ":")) + "\n")
        return 200 if verified else 401

    def start(self) -> "WebhookCatcher":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> list[CaughtWebhook]:
        with self._lock:
            return list(self.calls)
