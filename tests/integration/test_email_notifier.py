"""The email notifier against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.policy import default

import pytest
from pydantic import SecretStr

from alerts.config import EmailChannel
from alerts.notify.email import EmailNotifier, build_message
from collector.local_broker import free_port
from tests.integration.receivers import SMTP_PASSWORD as PASSWORD
from tests.integration.receivers import Inbox, smtp_server


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    with smtp_server(inbox) as port:
        yield inbox, port


def channel(port: int, **extra: object) -> EmailChannel:
    fields: dict[str, object] = {"type": "email", "to": ["owner@example.com"], "smtp_host": "127.0.0.1",
                                 "smtp_port": port, "security": "none", "sender": "driftline@example.com"}
    return EmailChannel.model_validate(fields | extra)


def test_delivers_text_html_and_attachment_with_authentication(smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, port = smtp
    ch = channel(port, username="driftline", password_env="SMTP_PASSWORD")
    message = build_message(ch, subject="[FIRING] churn: dataset drift", text="age drifted",
                            html="<p><b>age</b> drifted</p>", attachments=[("report.html", b"<html>r</html>", "text/html")])
    outcome = EmailNotifier(ch, SecretStr(PASSWORD)).notify(message)
    assert outcome.delivered, outcome
    assert len(inbox.messages) == 1
    sender, rcpts, raw = inbox.messages[0]
    assert sender == "driftline@example.com" and rcpts == ["owner@example.com"]
    got = email.message_from_bytes(raw, policy=default)
    assert got["subject"] == "[FIRING] churn: dataset drift"
    assert got.get_body(("plain",)).get_content().strip() == "age drifted"  # type: ignore[union-attr]
    assert "<b>age</b>" in got.get_body(("html",)).get_content()  # type: ignore[union-attr]
    attachment = next(got.iter_attachments())
    assert attachment.get_filename() == "report.html" and attachment.get_content() == "<html>r</html>"
    assert PASSWORD.encode() not in raw


def test_wrong_password_and_unknown_recipient_are_final(smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, port = smtp
    ch = channel(port, username="driftline", password_env="SMTP_PASSWORD")
    outcome = EmailNotifier(ch, SecretStr("wrong")).notify(build_message(ch, subject="s", text="t"))
    assert (outcome.delivered, outcome.retryable) == (False, False) and "authentication failed" in outcome.detail
    assert "wrong" not in outcome.detail
    nobody = channel(port, to=["nobody@example.com"])
    outcome = EmailNotifier(nobody).notify(build_message(nobody, subject="s", text="t"))
    assert (outcome.delivered, outcome.retryable) == (False, False)
    assert inbox.messages == []


def test_server_down_is_retryable_and_header_injection_is_refused() -> None:
    ch = channel(free_port())
    outcome = EmailNotifier(ch, timeout_s=2).notify(build_message(ch, subject="s", text="t"))
    assert (outcome.delivered, outcome.retryable) == (False, True) and outcome.detail.startswith("unreachable")
    with pytest.raises(ValueError):
        build_message(ch, subject="churn\r\nBcc: everyone@example.com", text="t")
