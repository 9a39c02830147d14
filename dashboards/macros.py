"""Grafana's query text as ClickHouse finally receives it: template variables and the plugin's macros expanded.

Used to run every panel's query against a real ClickHouse engine outside
Grafana (`driftline dashboards check` and the tests). The expansions follow
the ClickHouse plugin's documented macros: `$__timeFilter(col)` becomes
`col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)`, the `_ms`
variants use `fromUnixTimestamp64Milli(<ms>)`, `$__timeInterval(col)` groups
by the panel interval in seconds, `$__interval_s` is that interval. Template
variables are replaced as Grafana's frontend does before the query is sent:
`${name}`, `$name` and `${name:singlequote}`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

_MACRO = re.compile(r"\$__(timeFilter_ms|timeFilter|dateFilter|timeInterval_ms|timeInterval)\(([^()]*)\)")
_SIMPLE = re.compile(r"\$__(fromTime_ms|toTime_ms|fromTime|toTime|interval_s)\b")
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


class UnknownVariable(KeyError):
    """A query names a template variable the dashboard does not define."""


def _seconds(t: dt.datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def _millis(t: dt.datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


def expand(sql: str, *, start: dt.datetime, end: dt.datetime, interval_s: int,
           variables: Mapping[str, str]) -> str:
    """`sql` with every macro and template variable replaced; raises UnknownVariable for an undefined one."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("the time range needs a time zone")
    interval_s = max(1, int(interval_s))

    def macro(m: re.Match[str]) -> str:
        name, column = m.group(1), m.group(2).strip()
        if name == "timeFilter":
            return f"{column} >= {_seconds(start)} AND {column} <= {_seconds(end)}"
        if name == "timeFilter_ms":
            return f"{column} >= {_millis(start)} AND {column} <= {_millis(end)}"
        if name == "dateFilter":
            return f"{column} >= toDate('{start:%Y-%m-%d}') AND {column} <= toDate('{end:%Y-%m-%d}')"
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({column}), INTERVAL {interval_s} second)"
        return f"toStartOfInterval(toDateTime64({column}, 3), INTERVAL {interval_s * 1000} millisecond)"

    def simple(m: re.Match[str]) -> str:
        return {"fromTime": _seconds(start), "toTime": _seconds(end), "fromTime_ms": _millis(start),
                "toTime_ms": _millis(end), "interval_s": str(interval_s)}[m.group(1)]

    def variable(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name not in variables:
            raise UnknownVariable(name)
        value = variables[name]
        if m.group(2) == "singlequote":
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return value

    sql = _MACRO.sub(macro, sql)
    sql = _SIMPLE.sub(simple, sql)
    return _VARIABLE.sub(variable, sql)
