"""Strict patterns for every name that can reach SQL or a dashboard.

Model, feature, class and metric names come from producers we do not control.
They are never pasted into SQL (values travel as query parameters or in
insert formats), but they do become Grafana variables, file names and map
keys, so they are held to one strict pattern here and rejected at ingest.
"""

from __future__ import annotations

import re

IDENTIFIER_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}"
"""Model, feature, class, metric and database names: letters, digits, `_ . -`, at most 128."""

INSTANCE_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:/\-]{0,254}"
"""Instance names may also carry `host:port` and `/`."""

TOPIC_PATTERN = r"[A-Za-z0-9._\-]{1,249}"
"""Kafka's own rule for topic names."""

_identifier = re.compile(IDENTIFIER_PATTERN)
_instance = re.compile(INSTANCE_PATTERN)
_topic = re.compile(TOPIC_PATTERN)


class InvalidName(ValueError):
    """A name that does not match its pattern; the message says which and why."""


def _check(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{what} must be a string, got {type(value).__name__}")
    if not pattern.fullmatch(value):
        shown = value if len(value) <= 64 else value[:61] + "..."
        raise InvalidName(f"{what} {shown!r} does not match {pattern.pattern}")
    return value


def validate_identifier(value: object, what: str = "name") -> str:
    return _check(value, _identifier, what)


def validate_topic(value: object, what: str = "topic") -> str:
    return _check(value, _topic, what)


def is_identifier(value: str) -> bool:
    return _identifier.fullmatch(value) is not None


def is_instance(value: str) -> bool:
    return _instance.fullmatch(value) is not None
