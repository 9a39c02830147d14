"""What one delivery attempt came to, and how long to wait before the next."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    retryable: bool
    detail: str  # status code or error class, never a secret or a response body


DELIVERED = Outcome(True, False, "delivered")


def http_outcome(status: int) -> Outcome:
    """2xx delivered; 5xx, 408 (timeout) and 429 (rate limited) worth retrying; any other answer is final."""
    if 200 <= status < 300:
        return Outcome(True, False, f"HTTP {status}")
    return Outcome(False, status >= 500 or status in (408, 429), f"HTTP {status}")


def backoff_seconds(attempt: int, *, base: float = 2.0, cap: float = 600.0, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))].

    Full jitter spreads the retries of many deliveries that failed together (an endpoint that was down),
    so they do not come back in one burst.
    """
    if attempt < 1:
        raise ValueError("attempts count from 1")
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(0, ceiling)
