"""From a configured channel to a notifier, reading its secrets from the environment or a file.

Secrets are read when a delivery is attempted, not when the configuration is
loaded, so a rotated secret file takes effect without a restart; a missing
secret is an error that names the variable or file, never the value.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from pydantic import SecretStr

from alerts.config import EmailChannel, WebhookChannel
from alerts.notify.email import EmailNotifier
from alerts.notify.webhook import WebhookNotifier
from alerts.signing import WebhookSecret


class MissingSecret(RuntimeError):
    """A channel's secret (or URL) is not where its configuration says."""


def read_secret(env: str | None, file: Path | None, what: str) -> SecretStr:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise MissingSecret(f"the {what} is read from ${env}, which is not set")
        return SecretStr(value.strip())
    if file is not None:
        try:
            return SecretStr(file.read_text().strip())
        except OSError as exc:
            raise MissingSecret(f"the {what} file {file} cannot be read: {exc.strerror}") from None
    raise MissingSecret(f"no {what} configured")


def webhook_notifier(channel: WebhookChannel) -> WebhookNotifier:
    url = channel.url if channel.url is not None else read_secret(None, channel.url_file, "webhook URL").get_secret_value()
    secret = read_secret(channel.secret_env, channel.secret_file, "webhook signing secret")
    try:
        signing = WebhookSecret(secret.get_secret_value())
    except ValueError as exc:
        raise MissingSecret(f"the webhook signing secret is not usable: {exc}") from None
    return WebhookNotifier(url, signing, timeout_s=channel.timeout.total_seconds())


def email_notifier(channel: EmailChannel, tls_context: ssl.SSLContext | None = None) -> EmailNotifier:
    if tls_context is None and channel.ca_file is not None:
        try:
            tls_context = ssl.create_default_context(cafile=str(channel.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise MissingSecret(f"the SMTP CA file {channel.ca_file} cannot be loaded: {exc}") from None
    password = None
    if channel.username is not None:
        password = read_secret(channel.password_env, channel.password_file, "SMTP password")
    return EmailNotifier(channel, password, timeout_s=channel.timeout.total_seconds(), tls_context=tls_context)
