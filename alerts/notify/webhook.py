"""The retrain webhook notifier: one signed POST per attempt, classified for the retry stage.

Every attempt of a delivery carries the same `webhook-id` (the receiver's idempotency key) and a fresh
timestamp and signature. Redirects are not followed (a signed body is not re-sent to another host), and
neither the secret nor the response body reach an error message.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from alerts.notify.outcome import Outcome, http_outcome
from alerts.signing import WebhookSecret, signed_headers

USER_AGENT = "driftline-webhook/1"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


_opener = urllib.request.build_opener(_NoRedirect)


class WebhookNotifier:
    def __init__(self, url: str, secret: WebhookSecret, *, timeout_s: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError("the webhook URL must start with http:// or https://")
        self.url = url
        self._secret = secret
        self.timeout_s = timeout_s

    def notify(self, delivery_id: str, body: bytes) -> Outcome:
        """One attempt. Network failures and timeouts are retryable; the answer decides otherwise."""
        headers = {"content-type": "application/json", "user-agent": USER_AGENT,
                   **signed_headers(self._secret, delivery_id, body)}
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with _opener.open(request, timeout=self.timeout_s) as response:
                return http_outcome(response.status)
        except urllib.error.HTTPError as exc:
            return http_outcome(exc.code)
        except TimeoutError:
            return Outcome(False, True, "timeout")
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Outcome(False, True, f"unreachable: {type(reason).__name__}")
