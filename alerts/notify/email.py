"""The email notifier: one SMTP conversation per attempt, with STARTTLS or SSL and authentication.

The message is built with the standard library's `EmailMessage` (SMTP policy), which refuses line breaks
in header values: a model or feature name cannot add a header. Answers are classified the way SMTP means
them: 4xx and network failures are worth retrying, 5xx (bad recipient, refused sender, failed
authentication) are final. The password is held as a SecretStr and never reaches a message.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP

from pydantic import SecretStr

from alerts.config import EmailChannel
from alerts.notify.outcome import DELIVERED, Outcome


def build_message(channel: EmailChannel, *, subject: str, text: str, html: str | None = None,
                  attachments: Sequence[tuple[str, bytes, str]] = (),
                  inline_images: Sequence[tuple[str, bytes]] = ()) -> EmailMessage:
    """A plain-text message with an HTML alternative and attachments (filename, content, MIME type).

    `inline_images`: (Content-ID without brackets, PNG) the HTML shows as `cid:` images, related to it."""
    message = EmailMessage(policy=SMTP)
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message["Subject"] = subject  # raises ValueError on CR/LF: no header injection
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
        page = message.get_payload()[-1]  # type: ignore[index]
        for content_id, png in inline_images:
            page.add_related(png, maintype="image", subtype="png", cid=f"<{content_id}>", disposition="inline")
    for filename, content, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        message.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream", filename=filename)
    return message


def _login(smtp: smtplib.SMTP, user: str, password: SecretStr) -> None:
    """AUTH with one mechanism (PLAIN, else LOGIN), so a refused password is one clear 535.

    `smtplib.login` tries every advertised mechanism in turn after a refusal, and some servers then stall
    until the timeout, which would read as an outage instead of a wrong password.
    """
    smtp.ehlo_or_helo_if_needed()
    advertised = (smtp.esmtp_features.get("auth") or "").upper().split()
    mechanism = "PLAIN" if "PLAIN" in advertised else "LOGIN" if "LOGIN" in advertised else None
    if mechanism is None:
        raise smtplib.SMTPNotSupportedError("no AUTH mechanism in common (PLAIN or LOGIN)")
    smtp.user, smtp.password = user, password.get_secret_value()
    smtp.auth(mechanism, smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login)


class EmailNotifier:
    def __init__(self, channel: EmailChannel, password: SecretStr | None = None, *, timeout_s: float = 15.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        if channel.username is not None and password is None:
            raise ValueError("the channel names an SMTP user: give its password (from the environment or a file)")
        self.channel = channel
        self._password = password
        self.timeout_s = timeout_s
        self._tls = tls_context or ssl.create_default_context()

    def notify(self, message: EmailMessage) -> Outcome:
        c = self.channel
        try:
            if c.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.smtp_host, c.smtp_port, timeout=self.timeout_s, context=self._tls)
            else:
                smtp = smtplib.SMTP(c.smtp_host, c.smtp_port, timeout=self.timeout_s)
            with smtp:
                if c.security == "starttls":
                    smtp.starttls(context=self._tls)
                if c.username is not None and self._password is not None:
                    _login(smtp, c.username, self._password)
                refused = smtp.send_message(message)
            if refused:
                return Outcome(False, False, f"refused recipients: {', '.join(sorted(refused))}")
            return DELIVERED
        except smtplib.SMTPAuthenticationError as exc:
            return Outcome(False, False, f"SMTP {exc.smtp_code}: authentication failed")
        except smtplib.SMTPResponseException as exc:
            return Outcome(False, 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}")
        except smtplib.SMTPRecipientsRefused as exc:
            temporary = all(400 <= code < 500 for code, _ in exc.recipients.values())
            return Outcome(False, temporary, f"refused recipients: {', '.join(sorted(exc.recipients))}")
        except smtplib.SMTPNotSupportedError:
            return Outcome(False, False, "the server does not support STARTTLS or AUTH as configured")
        except (smtplib.SMTPException, ssl.SSLError, TimeoutError, OSError) as exc:
            return Outcome(False, True, f"unreachable: {type(exc).__name__}")
