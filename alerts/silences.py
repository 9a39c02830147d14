"""Silences: matchers over alert labels, an author, a comment and an expiry, as in Alertmanager.

A silence holds back the notifications of the alerts it matches while it is
active; the alerts themselves keep being evaluated, so when it expires an
alert that is still firing notifies then. Matchers are `name=value`,
`name!=value`, `name=~regex` and `name!~regex` (the regex must match the
whole value). Every matcher must hold. A silence with no matcher is refused:
it would mute everything.

Regexes run on RE2 (google-re2): time linear in the label's length whatever
the pattern, so a tenant's silence cannot stall every team's evaluation (a
backtracking engine took minutes on `(.*.*)*!`). RE2 has no backreferences
or lookaround; such a pattern is refused when the silence is created, and
one stored by an older version is kept but mutes nothing (logged once).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import re2

from clickhouse_connect.driver.client import Client

from alerts.store import AlertEvent, record_events, version_stamp
from driftline.names import validate_identifier
from driftline.timestamps import as_utc

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
OPS = ("=~", "!~", "!=", "=")
MAX_VALUE = 1024
MAX_MATCHERS = 32


class SilenceError(ValueError):
    """A silence that cannot be created or expired; the message says why."""


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a refused pattern is the caller's error, answered with the reason, not logged
    options.max_mem = 8 << 20  # bounds the compiled program; a pattern past it is refused
    return options


_OPTIONS = _re2_options()


def compile_matcher_regex(pattern: str) -> Any:
    """The RE2 program of a matcher's regex, or SilenceError with RE2's reason."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise SilenceError(f"invalid regex {pattern!r}: {reason} (silences use RE2 syntax: no backreferences "
                           "or lookaround)") from None


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_identifier(self.name, what="label name")
        if self.op not in OPS:
            raise SilenceError(f"unknown matcher operator {self.op!r}; use =, !=, =~ or !~")
        if len(self.value) > MAX_VALUE:
            raise SilenceError(f"matcher value longer than {MAX_VALUE} characters")
        if self.op in ("=~", "!~"):
            try:
                object.__setattr__(self, "_regex", compile_matcher_regex(self.value))
            except SilenceError as exc:
                raise SilenceError(f"matcher {self.name}{self.op}: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`name<op>value`, e.g. `model=churn` or `subject=~age|income`."""
        for op in OPS:
            name, sep, value = text.partition(op)
            if sep and name and "=" not in name and "!" not in name:
                return cls(name.strip(), op, value)
        raise SilenceError(f"cannot read matcher {text!r}; write name=value, name!=value, name=~regex or name!~regex")

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        hit = self._regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    author: str
    comment: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    created_at: dt.datetime

    def active(self, now: dt.datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: dict[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)


COLUMNS = ["id", "matchers", "author", "comment", "starts_at", "ends_at", "created_at", "updated_at"]


def _write(client: Client, s: Silence) -> None:
    client.insert("silences", [[s.id, [(m.name, m.op, m.value) for m in s.matchers], s.author, s.comment,
                                s.starts_at, s.ends_at, s.created_at, version_stamp()]], column_names=COLUMNS)


def create_silence(client: Client, matchers: list[Matcher], *, author: str, comment: str, ends_at: dt.datetime,
                   starts_at: dt.datetime | None = None, now: dt.datetime | None = None) -> Silence:
    now = now or dt.datetime.now(UTC)
    starts_at = starts_at or now
    if not matchers:
        raise SilenceError("a silence needs at least one matcher (one with none would mute every alert)")
    if len(matchers) > MAX_MATCHERS:
        raise SilenceError(f"at most {MAX_MATCHERS} matchers per silence")
    if not author.strip():
        raise SilenceError("a silence needs an author")
    if not comment.strip():
        raise SilenceError("a silence needs a comment saying why")
    if ends_at <= starts_at:
        raise SilenceError("a silence must end after it starts")
    silence = Silence(str(uuid.uuid4()), tuple(matchers), author[:200], comment[:2000], starts_at, ends_at, now)
    _write(client, silence)
    record_events(client, [AlertEvent(at=now, event="silence_created", actor=silence.author,
                                      detail=f"{silence.id} {' '.join(map(str, matchers))} until "
                                             f"{ends_at.isoformat()}: {silence.comment}")])
    return silence


@dataclass(frozen=True)
class UnusableMatcher(Matcher):
    """A stored matcher this version cannot run (a regex RE2 refuses): it matches nothing, so its silence
    mutes nothing; an alert that should have been muted notifies, rather than one that should not be, stays quiet."""

    def __post_init__(self) -> None:
        pass

    def matches(self, labels: dict[str, str]) -> bool:
        return False


_reported_unusable: set[str] = set()


def _matcher(stored: object, silence_id: str) -> Matcher:
    """Named tuples come back as dicts or tuples, depending on the client's settings."""
    if isinstance(stored, dict):
        name, op, value = stored["name"], stored["op"], stored["value"]
    else:
        name, op, value = stored  # type: ignore[misc]
    try:
        return Matcher(name, op, value)
    except (SilenceError, ValueError) as exc:
        if silence_id not in _reported_unusable:
            _reported_unusable.add(silence_id)
            log.error("a stored silence has a matcher this version cannot run; the silence mutes nothing until "
                      "it is expired and created again", extra={"silence": silence_id, "error": str(exc)})
        return UnusableMatcher(name, op, value)


def list_silences(client: Client) -> list[Silence]:
    rows = client.query(f"SELECT {', '.join(COLUMNS[:-1])} FROM silences FINAL ORDER BY created_at").result_rows
    return [Silence(r[0], tuple(_matcher(m, r[0]) for m in r[1]), r[2], r[3], as_utc(r[4]), as_utc(r[5]), as_utc(r[6]))
            for r in rows]


def active_silences(client: Client, now: dt.datetime) -> list[Silence]:
    return [s for s in list_silences(client) if s.active(now)]


def expire_silence(client: Client, silence_id: str, *, author: str, now: dt.datetime | None = None) -> Silence:
    now = now or dt.datetime.now(UTC)
    found = {s.id: s for s in list_silences(client)}.get(silence_id)
    if found is None:
        raise SilenceError(f"no silence with id {silence_id!r}")
    if found.ends_at <= now:
        raise SilenceError(f"silence {silence_id} already ended at {found.ends_at.isoformat()}")
    expired = Silence(found.id, found.matchers, found.author, found.comment, found.starts_at,
                      max(now, found.starts_at), found.created_at)
    _write(client, expired)
    record_events(client, [AlertEvent(at=now, event="silence_expired", actor=author[:200] or "unknown",
                                      detail=silence_id)])
    return expired
