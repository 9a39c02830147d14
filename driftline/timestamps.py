"""ClickHouse hands back DateTime64('UTC') values as naive datetimes: this makes them aware again."""

from __future__ import annotations

import datetime as dt
from typing import TypeVar

T = TypeVar("T")


def as_utc(value: T) -> T:
    """A naive datetime read from the store, as the UTC time it is; any other value unchanged."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)  # type: ignore[return-value]
    return value
