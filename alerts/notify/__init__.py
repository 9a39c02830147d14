"""One notifier per channel, each with one method: `notify(...) -> Outcome` (delivered, or retryable or not, and why).

Retries, backoff, deduplication and the outbox are around the notifiers, not inside them (Alertmanager's stages).
"""
