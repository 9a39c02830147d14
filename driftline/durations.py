"""Durations written the way people write them in config files: `30s`, `15m`, `1h30m`, `7d`."""

from __future__ import annotations

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
        return timedelta(seconds=float(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 15m, 1h or 7d, got {type(value).__name__}")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"expected a duration like 15m, 1h or 7d, got {value!r}")
    return timedelta(seconds=total)
