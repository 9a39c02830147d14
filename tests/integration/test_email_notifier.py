"""The email notifier against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import email
import ssl
from collections.abc import Iterator
from email.policy import default

import pytest
from pydantic import SecretStr

from alerts.channels import email_notifier
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


def self_signed(tmp_path):  # type: ignore[no-untyped-def]
    """A certificate for 127.0.0.1 and its key, written to tmp_path; the certificate is its own CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftline-test-smtp")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    return cert_file, server


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_authentication_and_certificate_verification(tmp_path, monkeypatch, security: str) -> None:  # type: ignore[no-untyped-def]
    cert_file, server_tls = self_signed(tmp_path)
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    inbox = Inbox()
    # aiosmtpd's auth_require_tls only knows STARTTLS; on an implicit-TLS port every byte is encrypted anyway.
    options = ({"tls_context": server_tls, "require_starttls": True, "auth_require_tls": True}
               if security == "starttls" else {"ssl_context": server_tls})
    with smtp_server(inbox, **options) as port:
        ch = channel(port, security=security, username="driftline", password_env="SMTP_PASSWORD", ca_file=cert_file)
        message = build_message(ch, subject="tls", text="over TLS")
        outcome = email_notifier(ch).notify(message)
        assert outcome.delivered, outcome
        untrusted = email_notifier(channel(port, security=security, username="driftline",
                                           password_env="SMTP_PASSWORD")).notify(message)  # system CAs only
    assert len(inbox.messages) == 1
    assert not untrusted.delivered and untrusted.retryable and "SSLCertVerificationError" in untrusted.detail
