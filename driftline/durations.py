"""Durations written the way people write them in config files: `30s`, `15m`, `1h30m`, `7d`."""

from __future__ import annotations

import math
import re
from datetime import timedelta

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """`1h30m` -> 1:30:00. Bare numbers are seconds. Zero and negative durations are accepted here; fields bound them."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 15m, 1h or 7d, got {value!r}")
    if isinstance(value, int | float):
        return _seconds(float(value), value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 15m, 1h or 7d, got {type(value).__name__}")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        if len(match.group(1)) > 15:
            raise ValueError(f"duration {value!r} is longer than any this service can hold")
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration like 15m, 1h or 7d, got {value!r}")
    return _seconds(total, value)


def _seconds(total: float, value: object) -> timedelta:
    """A timedelta, or a ValueError (so a 422, not a 500) for what none can hold: inf, NaN, beyond ~2.7 million years."""
    if not math.isfinite(total):
        raise ValueError(f"expected a finite duration, got {value!r}")
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"duration {value!r} is longer than any this service can hold") from None
